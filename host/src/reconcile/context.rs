//! The state a binding's controller shares between reconciles, and the
//! settings every controller runs with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use kube::api::{Api, DynamicObject};
use kube::core::GroupVersionKind;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};

use super::budget::EventBudget;
use super::cache::{KindCache, ReadCaches, WrittenObjects};
use super::queue::Queue;
use crate::binding::BoundPlugin;
use crate::events::EventRecorder;
use crate::metrics::{BindingLabels, Metrics};
use crate::postgres::ServerDirectory;
use crate::vocabulary::ObjectKind;

/// Settings shared by every plugin controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Reconcile every object this often even without changes (drift repair).
    pub resync: Duration,
    /// The name events are reported under.
    pub reporter: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            resync: Duration::from_secs(300),
            reporter: "wasm-operator".into(),
        }
    }
}

/// A kind served by the API server: its resource and scope, from discovery.
#[derive(Debug, Clone)]
pub(super) struct ServedKind {
    /// The kind as the host names it.
    pub(super) kind: ObjectKind,
    /// Its API resource.
    pub(super) resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub(super) namespaced: bool,
}

impl ServedKind {
    /// Looks `kind` up in discovery.
    ///
    /// # Errors
    /// When the API server does not serve the kind.
    pub(super) async fn discover(client: &Client, kind: &ObjectKind) -> Result<Self, kube::Error> {
        let gvk = GroupVersionKind::gvk(&kind.group, &kind.version, &kind.kind);
        let (resource, caps): (ApiResource, ApiCapabilities) =
            kube::discovery::pinned_kind(client, &gvk).await?;
        Ok(Self {
            kind: kind.clone(),
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        })
    }

    /// The API of this kind's objects in `namespace` (all namespaces for a
    /// cluster-scoped kind).
    pub(super) fn api(&self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(client.clone(), ns, &self.resource),
            _ => Api::all_with(client.clone(), &self.resource),
        }
    }
}

/// A kind of children the plugin declares, and the cache of its children.
#[derive(Clone)]
pub(super) struct ChildKind {
    /// The kind.
    pub(super) served: ServedKind,
    /// Its cache, holding at least this plugin's children.
    pub(super) cache: KindCache,
}

/// The state one binding's controller shares between reconciles: one per
/// version of the binding (see `versions`), all versions sharing
/// everything but the plugin.
#[derive(Clone)]
pub(super) struct Context {
    pub(super) client: Client,
    /// The version in service.
    pub(super) plugin: BoundPlugin,
    /// The labels of this binding's series.
    pub(super) labels: BindingLabels,
    /// The kind the plugin reconciles.
    pub(super) target: ServedKind,
    /// The kinds of children, each with its cache.
    pub(super) children: Vec<ChildKind>,
    /// The caches of the kinds the plugin reads.
    pub(super) reads: Arc<ReadCaches>,
    pub(super) events: EventRecorder,
    /// Events still recorded per object this minute.
    pub(super) event_budget: EventBudget,
    /// Failures in a row, by object uid, for the backoff.
    pub(super) failures: Arc<Mutex<HashMap<String, u32>>>,
    /// The reconciled objects as this controller last wrote them.
    pub(super) written: WrittenObjects,
    pub(super) queue: Queue,
    pub(super) settings: Settings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) servers: Arc<ServerDirectory>,
}

impl Context {
    /// The plugin's name.
    pub(super) fn plugin_name(&self) -> &str {
        self.plugin.plugin_name()
    }

    /// The API of reconciled objects in `namespace`.
    pub(super) fn api_for(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        self.target.api(&self.client, namespace)
    }
}
