//! Collection endpoints: lists with selectors and pagination, watches and deletecollection.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use http::StatusCode;
use serde_json::Value;

use crate::error::ApiError;
use crate::events;
use crate::http::{Reply, Req, delete_options};
use crate::meta;
use crate::render::{self, Format};
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::Api;
use crate::store::ObjKey;
use crate::watch::{self, WatchRequest};
use crate::writes::{self, Target};

fn selectors(request: &Req<'_>) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))?,
        FieldSelector::parse(request.query.get("fieldSelector").unwrap_or(""))?,
    ))
}

fn scope(target: &Target) -> Option<&str> {
    (target.rt.namespaced && !target.namespace.is_empty()).then_some(target.namespace.as_str())
}

/// Matching objects after the `continue` key, at most `limit` of them; also the list
/// resourceVersion and whether more remain. Only the returned page is cloned.
fn matching(
    api: &Api,
    request: &Req<'_>,
    target: &Target,
    after: Option<&ObjKey>,
    limit: Option<usize>,
) -> Result<(Vec<Value>, u64, bool), ApiError> {
    let (labels, fields) = selectors(request)?;
    let state = api.store.lock();
    let mut page = state
        .list(&target.gr(), scope(target))
        .filter(|o| after.is_none_or(|a| meta::key(o) > *a))
        .filter(|o| {
            fields.matches(&events::to_view(&target.rt, o)) && labels.matches(&meta::labels(o))
        });
    let objects: Vec<Value> = page
        .by_ref()
        .take(limit.unwrap_or(usize::MAX))
        .cloned()
        .collect();
    let more = page.next().is_some();
    Ok((objects, state.resource_version(), more))
}

/// Lists a collection, one page at a time when `limit` is set.
pub fn list(api: &Api, request: &Req<'_>, target: &Target) -> Result<Reply, ApiError> {
    let after = match request.query.get("continue").filter(|t| !t.is_empty()) {
        Some(token) => Some(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .ok()
                .and_then(|b| serde_json::from_slice::<ObjKey>(&b).ok())
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?,
        ),
        None => None,
    };
    let limit = request
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let (objects, rv, more) = matching(api, request, target, after.as_ref(), limit)?;
    let cont = objects.last().filter(|_| more).map(|last| {
        let key = serde_json::to_vec(&meta::key(last)).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
    });
    Ok(Reply::Json(
        StatusCode::OK,
        render::list(&target.rt, &objects, rv, cont.as_deref(), request.format()),
    ))
}

/// Starts a watch from the query parameters.
pub fn watch(api: &Arc<Api>, request: &Req<'_>, target: &Target) -> Result<Reply, ApiError> {
    let (labels, fields) = selectors(request)?;
    let rv = request.query.get("resourceVersion").unwrap_or("");
    let send_initial = request.query.get("sendInitialEvents");
    let since = match rv {
        "" | "0" if send_initial == Some("false") => Some(api.store.lock().resource_version()),
        "" | "0" => None,
        n => Some(
            n.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {n}")))?,
        ),
    };
    let timeout = request
        .query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .unwrap_or(1800);
    let rx = watch::start(
        api,
        WatchRequest {
            rt: target.rt.clone(),
            namespace: scope(target).map(str::to_string),
            since,
            send_initial_events: send_initial == Some("true"),
            bookmarks: request.query.flag("allowWatchBookmarks"),
            timeout: Duration::from_secs(timeout),
            labels,
            fields,
            format: request.format(),
        },
    );
    Ok(Reply::Stream(rx))
}

/// Deletes every matching object.
pub async fn delete_collection(
    api: &Api,
    request: &Req<'_>,
    target: &Target,
) -> Result<Reply, ApiError> {
    let (objects, _, _) = matching(api, request, target, None, None)?;
    let opts = delete_options(request)?;
    let mut deleted = Vec::new();
    for object in objects {
        let one = Target {
            name: meta::name(&object).to_string(),
            namespace: meta::namespace(&object).to_string(),
            ..target.clone()
        };
        match writes::delete(api, &one, &opts).await {
            Ok(_) => deleted.push(object),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let rv = api.store.lock().resource_version();
    Ok(Reply::Json(
        StatusCode::OK,
        render::list(&target.rt, &deleted, rv, None, Format::Full),
    ))
}
