//! API semantics checked through the real `kube` client: discovery, lists, watches, writes,
//! server-side apply, CRD schemas, garbage collection, dryRun, events and faults.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::Status;
use kube::discovery::{Discovery, Scope};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use test_apiserver::{Injection, TestApiServer};

fn thing_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": { "name": "things.example.com" },
        "spec": {
            "group": "example.com", "scope": "Namespaced",
            "names": { "plural": "things", "singular": "thing", "kind": "Thing", "shortNames": ["th"] },
            "versions": [{
                "name": "v1", "served": true, "storage": true, "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "required": ["size"], "properties": {
                        "size": { "type": "string" },
                        "version": { "type": "integer", "default": 16, "minimum": 12 },
                        "mode": { "type": "string", "enum": ["fast", "safe"] },
                        "owner": { "type": "string" },
                        "ports": {
                            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": { "type": "object", "properties": { "name": { "type": "string" }, "port": { "type": "integer" } } },
                        },
                    } },
                    "status": { "type": "object", "properties": { "phase": { "type": "string" } } },
                } } },
            }],
        },
    }))
    .expect("valid CRD")
}

async fn server_with_things() -> (TestApiServer, Api<DynamicObject>) {
    let server = TestApiServer::start().await.expect("server starts");
    Api::<CustomResourceDefinition>::all(server.client())
        .create(&PostParams::default(), &thing_crd())
        .await
        .expect("CRD created");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.com", "v1", "Thing"),
        "things",
    );
    let things = Api::namespaced_with(server.client(), "default", &ar);
    (server, things)
}

fn thing(name: &str, spec: Value) -> DynamicObject {
    serde_json::from_value(json!({ "apiVersion": "example.com/v1", "kind": "Thing", "metadata": { "name": name }, "spec": spec })).expect("thing")
}

fn config_map(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(
        json!({ "metadata": { "name": name, "labels": labels }, "data": { "k": "v" } }),
    )
    .expect("config map")
}

fn api_error(result: Result<impl std::fmt::Debug, kube::Error>) -> Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Raw GET returning the body as text.
async fn raw(client: &Client, uri: &str, accept: Option<&str>) -> String {
    let mut request = http::Request::get(uri);
    if let Some(accept) = accept {
        request = request.header(http::header::ACCEPT, accept);
    }
    client
        .request_text(request.body(Vec::new()).expect("request"))
        .await
        .expect("raw request")
}

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

#[tokio::test]
async fn discovery_lists_core_apps_events_leases_and_crd_kinds() {
    let (server, _) = server_with_things().await;
    let discovery = Discovery::new(server.client())
        .run()
        .await
        .expect("discovery");
    let mut kinds = Vec::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            kinds.push(format!("{}/{}", ar.api_version, ar.kind));
            if ar.kind == "Thing" {
                assert_eq!(caps.scope, Scope::Namespaced);
                assert!(
                    caps.subresources
                        .iter()
                        .any(|(sub, _)| sub.plural == "status"),
                    "status subresource listed"
                );
            }
        }
    }
    for expected in [
        "v1/ConfigMap",
        "v1/Secret",
        "v1/Namespace",
        "apps/v1/StatefulSet",
        "events.k8s.io/v1/Event",
        "coordination.k8s.io/v1/Lease",
        "example.com/v1/Thing",
    ] {
        assert!(
            kinds.contains(&expected.to_string()),
            "{expected} missing from {kinds:?}"
        );
    }
    let core = server
        .client()
        .list_core_api_resources("v1")
        .await
        .expect("/api/v1");
    assert_eq!(core.group_version, "v1");
    let version = server.client().apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");
}

#[tokio::test]
async fn lists_carry_kind_and_resource_version_and_paginate() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for i in 0..5 {
        cms.create(
            &PostParams::default(),
            &config_map(&format!("cm-{i}"), json!({})),
        )
        .await
        .expect("create");
    }
    let body: Value = serde_json::from_str(
        &raw(
            &server.client(),
            "/api/v1/namespaces/default/configmaps?&limit=500",
            None,
        )
        .await,
    )
    .expect("json");
    assert_eq!(body["kind"], "ConfigMapList");
    assert!(
        !body["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
    let first = cms
        .list(&ListParams::default().limit(2))
        .await
        .expect("page 1");
    assert_eq!(first.items.len(), 2);
    let token = first.metadata.continue_.clone().expect("continue token");
    let second = cms
        .list(&ListParams::default().limit(10).continue_token(&token))
        .await
        .expect("page 2");
    let names: Vec<String> = second.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, vec!["cm-2", "cm-3", "cm-4"]);

    // Pages across namespaces visit every object once, whatever the namespace names sort like.
    let namespaces: Api<Namespace> = Api::all(server.client());
    for ns in ["a", "a-b"] {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).expect("ns");
        namespaces
            .create(&PostParams::default(), &namespace)
            .await
            .expect("namespace");
        let scoped: Api<ConfigMap> = Api::namespaced(server.client(), ns);
        for name in ["x", "z"] {
            scoped
                .create(&PostParams::default(), &config_map(name, json!({})))
                .await
                .expect("create");
        }
    }
    let all: Api<ConfigMap> = Api::all(server.client());
    let (mut seen, mut token) = (Vec::new(), None::<String>);
    loop {
        let mut params = ListParams::default().limit(1);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = all.list(&params).await.expect("page");
        seen.extend(
            page.items
                .iter()
                .map(|cm| format!("{}/{}", cm.namespace().unwrap_or_default(), cm.name_any())),
        );
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    seen.dedup();
    assert_eq!(seen.len(), 9, "{seen:?}");
}

#[tokio::test]
async fn watch_replays_history_after_a_resource_version_and_expires_when_too_old() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let list = cms.list(&ListParams::default()).await.expect("list");
    let rv = list.metadata.resource_version.clone().expect("rv");
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), "a"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    server.faults().compact_history();
    let mut stream = cms
        .watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.try_next().await.expect("event") {
        Some(WatchEvent::Error(e)) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410, got {other:?}"),
    }
    let now = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    server.faults().expire_next_watches(1);
    let mut stream = cms
        .watch(&WatchParams::default(), &now)
        .await
        .expect("watch")
        .boxed();
    assert!(
        matches!(stream.try_next().await.expect("event"), Some(WatchEvent::Error(e)) if e.code == 410)
    );
}

/// A watch of `api` from its current resource version: only what happens next.
async fn watch_from_now<K>(
    api: &Api<K>,
) -> futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let rv = api
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    api.watch(&WatchParams::default(), &rv)
        .await
        .expect("watch")
        .boxed()
}

#[tokio::test]
async fn watch_lag_delays_live_events_of_one_resource_in_order_while_reads_are_current() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut stream = watch_from_now(&cms).await;
    let lag = Duration::from_millis(400);
    server.faults().set_watch_lag("configmaps", lag);
    let started = Instant::now();
    for name in ["a", "b"] {
        cms.create(&PostParams::default(), &config_map(name, json!({})))
            .await
            .expect("create");
    }
    // A read sees the write at once; the watch delivers it late, in order.
    assert!(cms.get_opt("b").await.expect("get").is_some());
    for name in ["a", "b"] {
        match stream.try_next().await.expect("event") {
            Some(WatchEvent::Added(cm)) => assert_eq!(cm.name_any(), name),
            other => panic!("expected ADDED {name}, got {other:?}"),
        }
    }
    assert!(started.elapsed() >= lag, "{:?}", started.elapsed());
    // Other resources are not delayed.
    let secrets: Api<Secret> = Api::namespaced(server.client(), "default");
    let mut secret_events = watch_from_now(&secrets).await;
    let started = Instant::now();
    secrets
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "s"}})).unwrap(),
        )
        .await
        .expect("create");
    assert!(matches!(
        secret_events.try_next().await.expect("event"),
        Some(WatchEvent::Added(_))
    ));
    assert!(started.elapsed() < lag, "{:?}", started.elapsed());
}

#[tokio::test]
async fn send_initial_events_end_with_a_marked_bookmark_and_watches_close_at_timeout() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let started = Instant::now();
    let text = raw(
        &server.client(),
        "/api/v1/namespaces/default/configmaps?&watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true&timeoutSeconds=1",
        None,
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1));
    let events = lines(&text);
    assert_eq!(events[0]["type"], "ADDED");
    assert_eq!(events[1]["type"], "BOOKMARK");
    assert_eq!(
        events[1]["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    assert_eq!(events[1]["object"]["kind"], "ConfigMap");
}

#[tokio::test]
async fn bookmarks_arrive_at_the_configured_interval() {
    let server = TestApiServer::start().await.expect("server starts");
    server
        .faults()
        .set_bookmark_interval(Duration::from_millis(100));
    let text = raw(&server.client(), "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=1&allowWatchBookmarks=true&timeoutSeconds=1", None).await;
    let events = lines(&text);
    assert!(
        events.len() >= 3 && events.iter().all(|e| e["type"] == "BOOKMARK"),
        "{events:?}"
    );
    assert!(
        !events[0]["object"]["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .is_empty()
    );
}

#[tokio::test]
async fn label_and_field_selectors_filter_lists_and_watches() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    for (name, labels) in [
        ("a", json!({"app": "a"})),
        ("b", json!({"app": "b", "skip": "1"})),
        ("c", json!({"app": "c"})),
    ] {
        cms.create(&PostParams::default(), &config_map(name, labels))
            .await
            .expect("create");
    }
    let names = |list: kube::core::ObjectList<ConfigMap>| {
        list.items
            .iter()
            .map(ResourceExt::name_any)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app in (a,b),!skip"))
                .await
                .expect("list")
        ),
        vec!["a"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().labels("app!=a"))
                .await
                .expect("list")
        ),
        vec!["b", "c"]
    );
    assert_eq!(
        names(
            cms.list(&ListParams::default().fields("metadata.name=c"))
                .await
                .expect("list")
        ),
        vec!["c"]
    );
    let mut stream = cms
        .watch(&WatchParams::default().labels("app=b"), &rv)
        .await
        .expect("watch")
        .boxed();
    assert!(
        matches!(stream.try_next().await.expect("event"), Some(WatchEvent::Added(cm)) if cm.name_any() == "b")
    );
    // Relabelling b out of the selector shows up as DELETED for this watch.
    cms.patch(
        "b",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .expect("relabel");
    assert!(
        matches!(stream.try_next().await.expect("event"), Some(WatchEvent::Deleted(cm)) if cm.name_any() == "b")
    );
}

#[tokio::test]
async fn metadata_only_lists_and_watches_return_partial_object_metadata() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("a", json!({"x": "y"})))
        .await
        .expect("create");
    let list = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("metadata list");
    assert_eq!(
        list.items[0]
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("x"))
            .map(String::as_str),
        Some("y")
    );
    let body: Value = serde_json::from_str(
        &raw(
            &server.client(),
            "/api/v1/namespaces/default/configmaps",
            Some("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"),
        )
        .await,
    )
    .expect("json");
    assert_eq!(body["kind"], "PartialObjectMetadataList");
    assert_eq!(body["items"][0]["kind"], "PartialObjectMetadata");
    assert!(body["items"][0].get("data").is_none());
    let mut stream = cms
        .watch_metadata(&WatchParams::default(), "0")
        .await
        .expect("watch")
        .boxed();
    assert!(
        matches!(stream.try_next().await.expect("event"), Some(WatchEvent::Added(m)) if m.metadata.name.as_deref() == Some("a"))
    );
}

#[tokio::test]
async fn creates_conflicts_and_missing_objects_use_canonical_reasons() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let dup = api_error(
        cms.create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));
    let mut first = created.clone();
    first.data = Some([("k".to_string(), "1".to_string())].into());
    cms.replace("a", &PostParams::default(), &first)
        .await
        .expect("replace with current rv");
    let stale = api_error(cms.replace("a", &PostParams::default(), &created).await);
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));
    assert!(cms.get_opt("missing").await.expect("get_opt").is_none());
    let missing_ns: Api<ConfigMap> = Api::namespaced(server.client(), "nowhere");
    let err = api_error(
        missing_ns
            .create(&PostParams::default(), &config_map("a", json!({})))
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    let mut generated = config_map("", json!({}));
    generated.metadata.generate_name = Some("gen-".into());
    let generated = cms
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    assert!(generated.name_any().starts_with("gen-") && generated.name_any().len() == 9);
}

#[tokio::test]
async fn no_op_writes_keep_the_resource_version_and_emit_no_event() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let rv = created.resource_version().expect("rv");
    let same = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "v"}})),
        )
        .await
        .expect("patch");
    assert_eq!(same.resource_version().as_deref(), Some(rv.as_str()));
    let apply = PatchParams::apply("mgr");
    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"}});
    let applied = cms
        .patch("a", &apply, &Patch::Apply(&body))
        .await
        .expect("apply");
    let again = cms
        .patch("a", &apply, &Patch::Apply(&body))
        .await
        .expect("apply again");
    assert_eq!(
        applied.resource_version(),
        again.resource_version(),
        "identical apply is a no-op"
    );
    let uri = format!(
        "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion={}&timeoutSeconds=1",
        again.resource_version().expect("rv")
    );
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "v"}})),
    )
    .await
    .expect("patch");
    assert_eq!(
        raw(&server.client(), &uri, None).await,
        "",
        "no event for a no-op write"
    );
}

#[tokio::test]
async fn generation_and_the_status_subresource_follow_the_apiserver_rules() {
    let (_server, things) = server_with_things().await;
    let created = things
        .create(&PostParams::default(), &thing("t", json!({"size": "1"})))
        .await
        .expect("create");
    assert_eq!(created.metadata.generation, Some(1));
    let with_status = json!({"spec": {"size": "1"}, "status": {"phase": "Ignored"}});
    let main = things
        .patch("t", &PatchParams::default(), &Patch::Merge(&with_status))
        .await
        .expect("main patch");
    assert!(
        main.data.get("status").is_none(),
        "main writes ignore status"
    );
    assert_eq!(main.metadata.generation, Some(1));
    let status = json!({"spec": {"size": "ignored"}, "status": {"phase": "Ready"}});
    let patched = things
        .patch_status("t", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("status patch");
    assert_eq!(patched.data["status"]["phase"], "Ready");
    assert_eq!(
        patched.data["spec"]["size"], "1",
        "status writes ignore spec"
    );
    assert_eq!(patched.metadata.generation, Some(1));
    let labelled = things
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let resized = things
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": "2"}})),
        )
        .await
        .expect("resize");
    assert_eq!(resized.metadata.generation, Some(2));
    assert_eq!(resized.data["status"]["phase"], "Ready");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_the_last_one_is_removed() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut cm = config_map("a", json!({}));
    cm.metadata.finalizers = Some(vec!["x/y".into()]);
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    let pending = cms
        .delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let pending = pending.left().expect("object while finalizers remain");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.generation, Some(2));
    let remove = json!([{"op": "test", "path": "/metadata/finalizers", "value": ["x/y"]}, {"op": "remove", "path": "/metadata/finalizers"}]);
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::<()>::Json(serde_json::from_value(remove).expect("patch")),
    )
    .await
    .expect("remove finalizer");
    assert!(cms.get_opt("a").await.expect("get").is_none());
    cms.create(&PostParams::default(), &config_map("b", json!({})))
        .await
        .expect("create");
    assert!(
        cms.delete("b", &DeleteParams::default())
            .await
            .expect("delete")
            .is_right(),
        "immediate delete answers a Status"
    );
}

#[tokio::test]
async fn json_patch_null_test_passes_on_a_missing_path_and_a_failed_test_is_422() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let add = json!([{"op": "test", "path": "/metadata/finalizers", "value": null}, {"op": "add", "path": "/metadata/finalizers", "value": ["f"]}]);
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(add).expect("patch")),
        )
        .await
        .expect("null test");
    assert_eq!(patched.finalizers(), ["f"]);
    let wrong = json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "g"}]);
    let err = api_error(
        cms.patch(
            "a",
            &PatchParams::default(),
            &Patch::<()>::Json(serde_json::from_value(wrong).expect("patch")),
        )
        .await,
    );
    assert_eq!(err.code, 422);
}

#[tokio::test]
async fn strategic_merge_on_a_custom_resource_acts_as_a_merge_patch() {
    let (_server, things) = server_with_things().await;
    things
        .create(
            &PostParams::default(),
            &thing(
                "t",
                json!({"size": "1", "ports": [{"name": "a", "port": 1}]}),
            ),
        )
        .await
        .expect("create");
    let patched = things
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "b", "port": 2}]}})),
        )
        .await
        .expect("strategic");
    assert_eq!(
        patched.data["spec"]["ports"],
        json!([{"name": "b", "port": 2}])
    );
}

#[tokio::test]
async fn server_side_apply_tracks_managers_conflicts_and_list_map_keys() {
    let (_server, things) = server_with_things().await;
    let apply = |manager: &str, force: bool| {
        let p = PatchParams::apply(manager);
        if force { p.force() } else { p }
    };
    let first = json!({"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"size": "1", "owner": "one", "ports": [{"name": "a", "port": 1}]}});
    let created = things
        .patch("t", &apply("one", false), &Patch::Apply(&first))
        .await
        .expect("create on apply");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created
            .metadata
            .managed_fields
            .as_ref()
            .is_some_and(|m| m[0].manager.as_deref() == Some("one"))
    );
    let second = json!({"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"owner": "two", "ports": [{"name": "b", "port": 2}]}});
    let err = api_error(
        things
            .patch("t", &apply("two", false), &Patch::Apply(&second))
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.contains("spec.owner"), "{}", err.message);
    let forced = things
        .patch("t", &apply("two", true), &Patch::Apply(&second))
        .await
        .expect("forced apply");
    assert_eq!(forced.data["spec"]["owner"], "two");
    assert_eq!(
        forced.data["spec"]["ports"],
        json!([{"name": "a", "port": 1}, {"name": "b", "port": 2}])
    );
    // Manager one stops applying `owner` (now two's) and port a: a goes, owner stays.
    let shrunk = json!({"apiVersion": "example.com/v1", "kind": "Thing", "spec": {"size": "1"}});
    let after = things
        .patch("t", &apply("one", false), &Patch::Apply(&shrunk))
        .await
        .expect("shrink");
    assert_eq!(
        after.data["spec"]["ports"],
        json!([{"name": "b", "port": 2}])
    );
    assert_eq!(after.data["spec"]["owner"], "two");
    let status =
        json!({"apiVersion": "example.com/v1", "kind": "Thing", "status": {"phase": "Ready"}});
    let with_status = things
        .patch_status("t", &apply("one", true), &Patch::Apply(&status))
        .await
        .expect("status apply");
    assert_eq!(with_status.data["status"]["phase"], "Ready");
}

#[tokio::test]
async fn crd_schemas_validate_prune_and_default_on_write() {
    let (_server, things) = server_with_things().await;
    let err = api_error(
        things
            .create(
                &PostParams::default(),
                &thing("bad", json!({"version": "x", "mode": "slow"})),
            )
            .await,
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    for field in ["spec.size", "spec.version", "spec.mode"] {
        assert!(
            err.message.contains(field),
            "{field} not named in {}",
            err.message
        );
    }
    let too_old = api_error(
        things
            .create(
                &PostParams::default(),
                &thing("old", json!({"size": "1", "version": 9})),
            )
            .await,
    );
    assert!(
        too_old.message.contains("spec.version"),
        "{}",
        too_old.message
    );
    let created = things
        .create(
            &PostParams::default(),
            &thing("t", json!({"size": "1", "unknown": true})),
        )
        .await
        .expect("create");
    assert!(
        created.data["spec"].get("unknown").is_none(),
        "unknown fields are pruned"
    );
    assert_eq!(created.data["spec"]["version"], 16, "defaults are applied");
}

#[tokio::test]
async fn dry_run_validates_without_persisting() {
    let (_server, things) = server_with_things().await;
    let dry = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let answered = things
        .create(&dry, &thing("t", json!({"size": "1"})))
        .await
        .expect("dry run create");
    assert_eq!(answered.data["spec"]["version"], 16);
    assert!(things.get_opt("t").await.expect("get").is_none());
    assert_eq!(
        api_error(things.create(&dry, &thing("t", json!({}))).await).code,
        422
    );
    things
        .create(&PostParams::default(), &thing("t", json!({"size": "1"})))
        .await
        .expect("create");
    let dry_delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };
    things
        .delete("t", &dry_delete)
        .await
        .expect("dry run delete");
    assert!(things.get_opt("t").await.expect("get").is_some());
}

fn owned_by(name: &str, owner: &ConfigMap, finalizer: Option<&str>) -> ConfigMap {
    let mut cm = config_map(name, json!({}));
    cm.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: owner.name_any(),
            uid: owner.uid().expect("uid"),
            ..Default::default()
        },
    ]);
    cm.metadata.finalizers = finalizer.map(|f| vec![f.to_string()]);
    cm
}

#[tokio::test]
async fn garbage_collection_follows_owner_references_recursively_and_honours_finalizers() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();
    let root = cms
        .create(&pp, &config_map("root", json!({})))
        .await
        .expect("root");
    let child = cms
        .create(&pp, &owned_by("child", &root, None))
        .await
        .expect("child");
    cms.create(&pp, &owned_by("grandchild", &child, None))
        .await
        .expect("grandchild");
    cms.create(&pp, &owned_by("held", &root, Some("x/hold")))
        .await
        .expect("held");
    cms.delete("root", &DeleteParams::background())
        .await
        .expect("delete root");
    assert!(cms.get_opt("child").await.expect("get").is_none());
    assert!(cms.get_opt("grandchild").await.expect("get").is_none());
    let held = cms
        .get("held")
        .await
        .expect("held stays while its finalizer does");
    assert!(held.metadata.deletion_timestamp.is_some());

    let parent = cms
        .create(&pp, &config_map("parent", json!({})))
        .await
        .expect("parent");
    cms.create(&pp, &owned_by("orphan", &parent, None))
        .await
        .expect("orphan");
    cms.delete("parent", &DeleteParams::orphan())
        .await
        .expect("delete parent");
    let orphan = cms.get("orphan").await.expect("orphan kept");
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test]
async fn deleting_a_namespace_deletes_its_content() {
    let server = TestApiServer::start().await.expect("server starts");
    let namespaces: Api<Namespace> = Api::all(server.client());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "team"}})).expect("ns"),
        )
        .await
        .expect("ns");
    let secrets: Api<Secret> = Api::namespaced(server.client(), "team");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "s"}, "stringData": {"password": "hunter2"}}),
    )
    .expect("secret");
    let created = secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    assert_eq!(created.data.expect("data")["password"].0, b"hunter2");
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete ns");
    assert!(namespaces.get_opt("team").await.expect("get").is_none());
    assert!(secrets.get_opt("s").await.expect("get").is_none());
}

#[tokio::test]
async fn recorder_events_and_leases_are_stored() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let cm = cms
        .create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    let recorder = Recorder::new(server.client(), "test-controller".into());
    let reference = ObjectReference {
        kind: Some("ConfigMap".into()),
        name: cm.metadata.name.clone(),
        namespace: Some("default".into()),
        uid: cm.metadata.uid.clone(),
        api_version: Some("v1".into()),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: "Synced".into(),
        note: Some("all good".into()),
        action: "Sync".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &reference)
        .await
        .expect("first publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("second publish (series patch)");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(server.client(), "default");
    let list = events.list(&ListParams::default()).await.expect("events");
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].series.as_ref().map(|s| s.count), Some(2));

    let leases: Api<Lease> = Api::namespaced(server.client(), "default");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})).expect("lease");
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("lease");
    let mut taken = created.clone();
    taken.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &taken)
        .await
        .expect("take over");
    assert_eq!(
        api_error(
            leases
                .replace("leader", &PostParams::default(), &created)
                .await
        )
        .code,
        409,
        "stale lease update conflicts"
    );
}

#[tokio::test]
async fn injected_errors_and_latency_apply_to_matching_requests() {
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("a", json!({})))
        .await
        .expect("create");
    server.faults().inject(
        Injection::status(500)
            .method(http::Method::PATCH)
            .path_contains("/configmaps/a")
            .times(1),
    );
    let patch = Patch::Merge(json!({"data": {"k": "w"}}));
    assert_eq!(
        api_error(cms.patch("a", &PatchParams::default(), &patch).await).code,
        500
    );
    cms.patch("a", &PatchParams::default(), &patch)
        .await
        .expect("second try passes");
    server.faults().inject(Injection::status(409).times(1));
    assert_eq!(api_error(cms.get("a").await).reason, "Conflict");
    server.faults().set_latency(Duration::from_millis(300));
    let started = Instant::now();
    cms.get("a").await.expect("get");
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_and_its_discovery_entry() {
    let (server, things) = server_with_things().await;
    things
        .create(&PostParams::default(), &thing("t", json!({"size": "1"})))
        .await
        .expect("create");
    let crds: Api<CustomResourceDefinition> = Api::all(server.client());
    let crd = crds.get("things.example.com").await.expect("crd");
    let established = crd.status.and_then(|s| s.conditions).unwrap_or_default();
    assert!(
        established
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
    );
    crds.delete("things.example.com", &DeleteParams::default())
        .await
        .expect("delete crd");
    assert_eq!(
        api_error(things.list(&ListParams::default()).await).code,
        404
    );
    let discovery = Discovery::new(server.client())
        .run()
        .await
        .expect("discovery");
    assert!(!discovery.has_group("example.com"));
}

#[tokio::test]
async fn dropping_the_server_closes_open_connections() {
    let server = TestApiServer::start().await.expect("server starts");
    let client = server.client();
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.list(&ListParams::default())
        .await
        .expect("list while running");
    drop(server);
    let result = tokio::time::timeout(Duration::from_secs(5), cms.list(&ListParams::default()))
        .await
        .expect("fails fast");
    assert!(result.is_err(), "a dropped server must not keep serving");
}

#[tokio::test]
async fn a_streaming_list_watcher_sees_the_initial_state_end_then_changes() {
    use kube::runtime::watcher::{self, Event};
    let server = TestApiServer::start().await.expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    cms.create(&PostParams::default(), &config_map("before", json!({})))
        .await
        .expect("create");
    let mut stream =
        watcher::watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut next = async || {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .expect("event in time");
        event.expect("watcher ok").expect("stream open")
    };
    assert!(matches!(next().await, Event::Init));
    assert!(matches!(next().await, Event::InitApply(cm) if cm.name_any() == "before"));
    assert!(
        matches!(next().await, Event::InitDone),
        "the initial-events-end bookmark ends the initial state"
    );
    cms.create(&PostParams::default(), &config_map("after", json!({})))
        .await
        .expect("create");
    assert!(matches!(next().await, Event::Apply(cm) if cm.name_any() == "after"));
}

/// The real server labels every namespace with its own name, whatever the
/// client sends, so that webhook namespaceSelectors can leave one out.
#[tokio::test]
async fn namespaces_carry_their_name_as_the_metadata_name_label() {
    let server = TestApiServer::start().await.expect("server starts");
    let namespaces: Api<Namespace> = Api::all(server.client());
    let mut ns: Namespace = serde_json::from_value(json!({
        "metadata": {"name": "team-a", "labels": {"kubernetes.io/metadata.name": "kube-system"}}
    }))
    .unwrap();
    let created = namespaces
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(created.labels()["kubernetes.io/metadata.name"], "team-a");
    ns.metadata.labels = None;
    ns.metadata.resource_version = created.metadata.resource_version.clone();
    let replaced = namespaces
        .replace("team-a", &PostParams::default(), &ns)
        .await
        .unwrap();
    assert_eq!(replaced.labels()["kubernetes.io/metadata.name"], "team-a");
}
