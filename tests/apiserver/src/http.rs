//! The HTTP layer: parses URLs, queries, headers and bodies, routes to discovery, reads,
//! watches and writes, and turns every [`ApiError`] into a `Status` response.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use serde_json::Value;

use crate::admission;
use crate::collection::{delete_collection, list, watch};
use crate::discovery;
use crate::error::ApiError;
use crate::gc::Propagation;
use crate::openapi;
use crate::patch::PatchKind;
use crate::query::Query;
use crate::registry::ResourceType;
use crate::render::{self, Format};
use crate::server::Api;
use crate::writes::{self, Change, DeleteOptions, Target, WriteOptions};

/// Response body type: a whole JSON document or a watch stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// What a handler answers.
pub enum Reply {
    /// A JSON document with a status code.
    Json(StatusCode, Value),
    /// A JSON document with its own media type.
    Typed(&'static str, Value),
    /// Plain text (health checks).
    Text(&'static str),
    /// A watch stream.
    Stream(tokio::sync::mpsc::Receiver<Bytes>),
    /// An OpenAPI v3 document with its `ETag`, cacheable for good when asked for by hash.
    OpenApi {
        /// The document.
        document: Value,
        /// Its content hash.
        etag: String,
        /// Whether the request named that hash (`?hash=`), so the answer never changes.
        immutable: bool,
    },
    /// `301 Moved Permanently` to this location.
    Redirect(String),
    /// `304 Not Modified`: the client's `If-None-Match` names the current `ETag`.
    NotModified,
}

/// Serves one request.
pub async fn handle(
    api: Arc<Api>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let latency = api.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    tracing::debug!(method = %parts.method, uri = %parts.uri, "request");
    let identity = crate::rbac::authenticate(&parts.headers, &api.tokens, api.enforce_rbac);
    let user_info = identity
        .as_ref()
        .map(|i| i.user_info.clone())
        .unwrap_or(Value::Null);
    let work = async {
        let identity = identity?;
        let query = Query::parse(parts.uri.query().unwrap_or(""));
        if api.enforce_rbac {
            crate::rbac::authorize(&api.store.lock(), &identity, &parts.method, &path, &query)?;
        }
        match api.faults.injected_error(&parts.method, &path) {
            Some(error) => Err(error),
            None => match body.collect().await {
                Ok(collected) => {
                    let request = Req {
                        parts: &parts,
                        body: collected.to_bytes(),
                        query,
                    };
                    route(&api, &request).await
                }
                Err(e) => Err(ApiError::bad_request(format!(
                    "failed to read the request body: {e}"
                ))),
            },
        }
    };
    let (reply, warnings) = admission::with_context(user_info, work).await;
    let mut response = respond(reply);
    for text in warnings {
        // kubectl and client-go print `299 - "<text>"` headers; a text that cannot be a
        // header value (control characters) is left out rather than failing the request.
        let value = format!(
            "299 - \"{}\"",
            text.replace('\\', "\\\\").replace('"', "\\\"")
        );
        if let Ok(value) = header::HeaderValue::from_bytes(value.as_bytes()) {
            response.headers_mut().append(header::WARNING, value);
        }
    }
    Ok(response)
}

fn respond(reply: Result<Reply, ApiError>) -> Response<Body> {
    match reply {
        Ok(Reply::Json(status, value)) => json_response(status, &value),
        Ok(Reply::Typed(content_type, value)) => {
            let mut response = json_response(StatusCode::OK, &value);
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(content_type),
            );
            response
        }
        Ok(Reply::Text(text)) => {
            Response::new(Full::new(Bytes::from_static(text.as_bytes())).boxed())
        }
        Ok(Reply::Stream(rx)) => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok(Frame::data(b)), rx))
            });
            let mut response = Response::new(StreamBody::new(stream).boxed());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            response
        }
        Ok(Reply::OpenApi {
            document,
            etag,
            immutable,
        }) => {
            let mut response = json_response(StatusCode::OK, &document);
            let headers = response.headers_mut();
            if let Ok(value) = header::HeaderValue::from_str(&format!("\"{etag}\"")) {
                headers.insert(header::ETAG, value);
            }
            // kube-openapi's handler: a document asked for by hash never changes, so
            // clients (kubectl's HTTP cache) may keep it; without a hash, revalidate.
            let cache = if immutable {
                "public, immutable"
            } else {
                "no-cache, private"
            };
            headers.insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static(cache),
            );
            if immutable {
                headers.insert(header::VARY, header::HeaderValue::from_static("Accept"));
            }
            response
        }
        Ok(Reply::NotModified) => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        }
        Ok(Reply::Redirect(location)) => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
            if let Ok(value) = header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(error) => {
            tracing::debug!(%error, code = error.code, "request failed");
            json_response(
                StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                &error.to_status(),
            )
        }
    }
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(serde_json::to_vec(value).unwrap_or_default())).boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// A request whose body has been read.
pub struct Req<'a> {
    /// Method, URI and headers.
    pub parts: &'a http::request::Parts,
    /// The whole body.
    pub body: Bytes,
    /// Decoded query parameters.
    pub query: Query,
}

impl Req<'_> {
    /// A header as text (empty when missing).
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// Response shape from `Accept` (and `includeObject` for Tables).
    pub fn format(&self) -> Format {
        Format::negotiate(self.header(header::ACCEPT), self.query.get("includeObject"))
    }

    /// The body as JSON (or YAML, or protobuf for the kinds kubectl creates; 415 for
    /// other kinds in protobuf).
    pub fn json_body(&self) -> Result<Value, ApiError> {
        let content_type = self.header(header::CONTENT_TYPE);
        if content_type.contains("protobuf") {
            return crate::protobuf::decode(&self.body, content_type);
        }
        if self.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).or_else(|json_error| {
            let text = std::str::from_utf8(&self.body)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            serde_saphyr::from_str::<Value>(text).map_err(|_| {
                ApiError::bad_request(format!("failed to decode the request body: {json_error}"))
            })
        })
    }

    /// The body of a write of `rt`, checked as its `fieldValidation` directive asks.
    pub fn object_body(&self, rt: &ResourceType) -> Result<Value, ApiError> {
        let body = self.json_body()?;
        crate::field_validation::check(rt, &body, self.query.get("fieldValidation"))?;
        Ok(body)
    }

    /// Write options from the query and User-Agent.
    pub fn write_options(&self) -> WriteOptions {
        let manager = self
            .query
            .get("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| {
                let agent = self.header(header::USER_AGENT);
                let name = agent.split('/').next().unwrap_or("").trim();
                if name.is_empty() {
                    "unknown".into()
                } else {
                    name.to_string()
                }
            });
        WriteOptions {
            dry_run: self.query.get("dryRun") == Some("All"),
            manager,
            field_manager: self.query.get("fieldManager").map(str::to_string),
            force: self.query.get("force") == Some("true"),
        }
    }
}

async fn route(api: &Arc<Api>, request: &Req<'_>) -> Result<Reply, ApiError> {
    let path = request.parts.uri.path();
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let get = request.parts.method == Method::GET;
    let ok = |v: Option<Value>| {
        v.map(|v| Reply::Json(StatusCode::OK, v))
            .ok_or_else(|| ApiError::no_route(path))
    };
    match segments.as_slice() {
        ["version"] if get => ok(Some(discovery::version())),
        ["healthz" | "readyz" | "livez"] if get => Ok(Reply::Text("ok")),
        ["openapi", "v3"] if get => ok(Some(openapi::discovery(&api.store.lock().registry))),
        ["openapi", "v3", "api", version] if get => openapi_document(api, request, "", version),
        ["openapi", "v3", "apis", group, version] if get => {
            openapi_document(api, request, group, version)
        }
        ["api" | "apis"]
            if get
                && request
                    .header(header::ACCEPT)
                    .contains("as=APIGroupDiscoveryList") =>
        {
            let core = segments[0] == "api";
            Ok(Reply::Typed(
                discovery::AGGREGATED,
                discovery::aggregated(&api.store.lock().registry, core),
            ))
        }
        ["api"] if get => ok(Some(discovery::core_versions(&api.address))),
        ["apis"] if get => ok(Some(discovery::groups(&api.store.lock().registry))),
        ["api", "v1"] if get => ok(discovery::resources(&api.store.lock().registry, "", "v1")),
        ["apis", group] if get => ok(discovery::group(&api.store.lock().registry, group)),
        ["apis", group, version] if get => ok(discovery::resources(
            &api.store.lock().registry,
            group,
            version,
        )),
        ["api", "v1", rest @ ..] => resource(api, request, "", "v1", rest).await,
        ["apis", group, version, rest @ ..] => resource(api, request, group, version, rest).await,
        _ => Err(ApiError::no_route(path)),
    }
}

/// One group version's OpenAPI v3 document. A `?hash=` other than the current one is
/// redirected to the current one, as kube-openapi's handler does, so a client holding an
/// old discovery document still gets the schema it now has.
fn openapi_document(
    api: &Api,
    request: &Req<'_>,
    group: &str,
    version: &str,
) -> Result<Reply, ApiError> {
    let path = request.parts.uri.path();
    let document = openapi::group_version(&api.store.lock().registry, group, version)
        .ok_or_else(|| ApiError::no_route(path))?;
    let etag = openapi::hash(&document);
    match request.query.get("hash") {
        Some(asked) if !asked.is_empty() && asked != etag => {
            Ok(Reply::Redirect(format!("{path}?hash={etag}")))
        }
        // kubectl's HTTP cache revalidates what it holds (`http.ServeContent` answers 304).
        _ if request.header(header::IF_NONE_MATCH).trim_matches('"') == etag => {
            Ok(Reply::NotModified)
        }
        asked => Ok(Reply::OpenApi {
            immutable: asked.is_some_and(|a| !a.is_empty()),
            document,
            etag,
        }),
    }
}

async fn resource(
    api: &Arc<Api>,
    request: &Req<'_>,
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<Reply, ApiError> {
    let path = request.parts.uri.path();
    let lookup = |plural: &str| api.store.lock().registry.get(group, version, plural);
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && lookup(rest[2]).is_some_and(|rt| rt.namespaced);
    let (namespace, rest) = if namespaced_path {
        (rest[1].to_string(), &rest[2..])
    } else {
        (String::new(), rest)
    };
    let Some(plural) = rest.first() else {
        return Err(ApiError::no_route(path));
    };
    let rt = lookup(plural).ok_or_else(|| ApiError::no_route(path))?;
    let status = match rest.get(2) {
        None => false,
        Some(&"status") if rt.status => true,
        Some(_) => return Err(ApiError::no_route(path)),
    };
    if rest.len() > 3 {
        return Err(ApiError::no_route(path));
    }
    let target = Target {
        rt: rt.clone(),
        namespace,
        name: rest.get(1).map(|s| (*s).to_string()).unwrap_or_default(),
        status,
    };
    let method = &request.parts.method;
    if target.name.is_empty() {
        return match *method {
            Method::GET if request.query.flag("watch") => watch(api, request, &target),
            Method::GET => list(api, request, &target),
            Method::POST => {
                let created = writes::create(
                    api,
                    &target,
                    request.object_body(&rt)?,
                    &request.write_options(),
                )
                .await?;
                Ok(Reply::Json(
                    StatusCode::CREATED,
                    render::object(&rt, &created, Format::Full),
                ))
            }
            Method::DELETE => delete_collection(api, request, &target).await,
            _ => Err(ApiError::method_not_allowed(method.as_str())),
        };
    }
    match *method {
        Method::GET => {
            let object = api.store.lock().get(&target.gr(), &target.key()).cloned();
            let object =
                object.ok_or_else(|| ApiError::not_found(&rt.plural, &rt.group, &target.name))?;
            Ok(Reply::Json(
                StatusCode::OK,
                render::object(&rt, &object, request.format()),
            ))
        }
        Method::PUT => {
            let change = Change::Replace(request.object_body(&rt)?);
            let (object, _) =
                writes::update(api, &target, &change, &request.write_options()).await?;
            Ok(Reply::Json(
                StatusCode::OK,
                render::object(&rt, &object, Format::Full),
            ))
        }
        Method::PATCH => {
            let content_type = request.header(header::CONTENT_TYPE);
            let kind = PatchKind::from_content_type(content_type)
                .ok_or_else(|| ApiError::unsupported_media_type(content_type))?;
            let body = request.object_body(&rt)?;
            let change = if kind == PatchKind::Apply {
                Change::Apply(body)
            } else {
                Change::Patch(kind, body)
            };
            let mut opts = request.write_options();
            if kind == PatchKind::Apply && request.query.get("fieldManager").is_none() {
                return Err(ApiError::bad_request(
                    "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
                ));
            }
            if kind != PatchKind::Apply {
                opts.force = false;
            }
            let (object, created) = writes::update(api, &target, &change, &opts).await?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(Reply::Json(
                code,
                render::object(&rt, &object, Format::Full),
            ))
        }
        Method::DELETE if !status => {
            let object = writes::delete(api, &target, &delete_options(request)?).await?;
            let shown = if object["kind"] == "Status" {
                object
            } else {
                render::object(&rt, &object, Format::Full)
            };
            Ok(Reply::Json(StatusCode::OK, shown))
        }
        _ => Err(ApiError::method_not_allowed(method.as_str())),
    }
}

/// DeleteOptions from the body and query.
pub fn delete_options(request: &Req<'_>) -> Result<DeleteOptions, ApiError> {
    let body = request.json_body()?;
    let policy = body
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or_else(|| request.query.get("propagationPolicy"));
    let orphan = policy == Some("Orphan")
        || body.get("orphanDependents").and_then(Value::as_bool) == Some(true);
    let dry_run = request.query.get("dryRun") == Some("All")
        || body
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let mut options = match &body {
        Value::Object(fields) => Value::Object(fields.clone()),
        _ => serde_json::json!({}),
    };
    options["apiVersion"] = serde_json::json!("meta.k8s.io/v1");
    options["kind"] = serde_json::json!("DeleteOptions");
    if dry_run {
        options["dryRun"] = serde_json::json!(["All"]);
    }
    if let Some(policy) = policy {
        options["propagationPolicy"] = serde_json::json!(policy);
    }
    Ok(DeleteOptions {
        options,
        dry_run,
        propagation: if orphan {
            Propagation::Orphan
        } else {
            Propagation::Background
        },
        uid: body
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}
