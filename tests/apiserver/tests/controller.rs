//! Acceptance: a kube-runtime `Controller` with a finalizer, an owned child applied with
//! server-side apply, status, watch faults, and garbage collection on delete.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event, finalizer};
use kube::runtime::watcher;
use kube::{CustomResource, Resource, ResourceExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use test_apiserver::TestApiServer;

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug)]
#[kube(
    group = "example.com",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    schema = "disabled"
)]
struct WidgetSpec {
    size: String,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
struct WidgetStatus {
    ready: bool,
}

const FINALIZER: &str = "widgets.example.com/cleanup";

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": { "name": "widgets.example.com" },
        "spec": {
            "group": "example.com",
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": { "status": {} },
                "schema": { "openAPIV3Schema": { "type": "object", "properties": {
                    "spec": { "type": "object", "properties": { "size": { "type": "string" } } },
                    "status": { "type": "object", "properties": { "ready": { "type": "boolean" } } },
                } } },
            }],
        },
    }))
    .expect("valid CRD")
}

struct Context {
    client: kube::Client,
    reconciles: AtomicUsize,
    cleanups: AtomicUsize,
}

#[derive(Debug, thiserror::Error)]
enum ReconcileError {
    #[error("kube call failed")]
    Kube(#[from] kube::Error),
    #[error("finalizer failed")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
}

async fn reconcile(widget: Arc<Widget>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, Ordering::SeqCst);
    let ns = widget.namespace().unwrap_or_default();
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&widgets, FINALIZER, widget, |event| async {
        match event {
            Event::Apply(widget) => apply(&widget, &ctx).await,
            Event::Cleanup(_) => {
                ctx.cleanups.fetch_add(1, Ordering::SeqCst);
                Ok(Action::await_change())
            }
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

async fn apply(widget: &Widget, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = widget.namespace().unwrap_or_default();
    let params = PatchParams::apply("widget-controller").force();
    let owner = widget.controller_owner_ref(&()).expect("owner ref");
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": format!("{}-child", widget.name_any()), "ownerReferences": [owner] },
        "data": { "size": widget.spec.size },
    });
    let config_maps: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    config_maps
        .patch(
            &format!("{}-child", widget.name_any()),
            &params,
            &Patch::Apply(child),
        )
        .await?;
    let widgets: Api<Widget> = Api::namespaced(ctx.client.clone(), &ns);
    let status =
        json!({ "apiVersion": "example.com/v1", "kind": "Widget", "status": { "ready": true } });
    widgets
        .patch_status(&widget.name_any(), &params, &Patch::Apply(status))
        .await?;
    Ok(Action::await_change())
}

fn error_policy(_: Arc<Widget>, _: &ReconcileError, _: Arc<Context>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn child_size(config_maps: &Api<ConfigMap>) -> Option<String> {
    let cm = config_maps.get_opt("w1-child").await.expect("get child")?;
    cm.data?.get("size").cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_finalizes_applies_child_survives_watch_faults_and_cleans_up() {
    let server = TestApiServer::start().await.expect("server starts");
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &widget_crd())
        .await
        .expect("CRD created");

    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let ctx = Arc::new(Context {
        client: client.clone(),
        reconciles: AtomicUsize::new(0),
        cleanups: AtomicUsize::new(0),
    });
    let controller = Controller::new(widgets.clone(), watcher::Config::default())
        .owns(config_maps.clone(), watcher::Config::default())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|_| async {});
    let controller = tokio::spawn(controller);

    let widget = Widget::new("w1", WidgetSpec { size: "1".into() });
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("widget created");

    eventually("finalizer, child and status", || async {
        let w = widgets.get("w1").await.expect("get widget");
        w.finalizers().iter().any(|f| f == FINALIZER)
            && w.status.as_ref().is_some_and(|s| s.ready)
            && child_size(&config_maps).await.as_deref() == Some("1")
    })
    .await;

    // A change to the child re-triggers the owner, which re-applies it.
    let tamper = json!({ "data": { "size": "tampered" } });
    config_maps
        .patch("w1-child", &PatchParams::default(), &Patch::Merge(&tamper))
        .await
        .expect("tamper");
    eventually("the child to be restored", || async {
        child_size(&config_maps).await.as_deref() == Some("1")
    })
    .await;

    // Identical status writes on every reconcile must not make the controller loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let settled = ctx.reconciles.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ctx.reconciles.load(Ordering::SeqCst),
        settled,
        "controller keeps reconciling on its own writes"
    );

    // Drop every watch and expire the resumes; the change made meanwhile must still arrive.
    server.faults().expire_next_watches(2);
    server.faults().drop_watches();
    let resize = json!({ "spec": { "size": "2" } });
    widgets
        .patch("w1", &PatchParams::default(), &Patch::Merge(&resize))
        .await
        .expect("resize");
    eventually("the resize to reach the child", || async {
        child_size(&config_maps).await.as_deref() == Some("2")
    })
    .await;

    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .expect("delete widget");
    eventually("widget and child to be gone", || async {
        widgets.get_opt("w1").await.expect("get widget").is_none()
            && config_maps
                .get_opt("w1-child")
                .await
                .expect("get child")
                .is_none()
    })
    .await;
    assert_eq!(ctx.cleanups.load(Ordering::SeqCst), 1);
    controller.abort();
}
