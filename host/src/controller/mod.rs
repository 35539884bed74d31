//! One controller per bound plugin: watches the plugin's kind and its
//! children, asks the plugin for a decision, checks it against the grants,
//! and carries it out (SQL, server-side apply of children, pruning, status,
//! events, finalizer).

mod cache;
mod fresh;
mod grants;
mod live;
mod queue;
mod services;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::events::{Event as KubeEvent, EventType as KubeEventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};

pub use cache::NotSynced;
pub use grants::{EffectiveGrants, Refusal, check_decision, kind_of};
pub use live::{BindingPublisher, LiveBinding, channel};
pub use services::KubeServices;
use services::resolve_kind;

use crate::metrics::{Export, Metrics, Outcome, WriteVerb};
use crate::runtime::{
    CallContext, CallError, Decision, Event, EventType, ObjectKind, Plugin, ReconcileInput, SqlPlan,
};
use crate::servers::{ServerDirectory, ServerError};

/// Label on every child: the plugin that manages it.
pub const PLUGIN_LABEL: &str = "systems.mikemiller.tech/plugin";
/// Label on every child: the uid of its owner, to find children cheaply.
pub const OWNER_UID_LABEL: &str = "systems.mikemiller.tech/owner-uid";
/// Status field naming the digest of the plugin that last reconciled the object.
pub const DIGEST_FIELD: &str = "pluginDigest";

/// A plugin bound to its kind, with the settings and grants it runs under.
#[derive(Debug, Clone)]
pub struct PluginBinding {
    /// The plugin, with the binding's limits.
    pub plugin: Plugin,
    /// What it may read and write.
    pub grants: EffectiveGrants,
    /// The binding's settings.
    pub settings: Value,
    /// Objects reconciled at once.
    pub concurrency: u16,
}

impl PluginBinding {
    /// The finalizer this plugin puts on the objects it reconciles.
    pub fn finalizer(&self) -> String {
        format!(
            "plugins.systems.mikemiller.tech/{}",
            self.plugin.description().name
        )
    }

    /// The server-side apply field manager of this plugin.
    pub fn field_manager(&self) -> String {
        format!("wasm-operator.{}", self.plugin.description().name)
    }
}

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

/// What stopped a reconcile.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The plugin did not produce a decision.
    #[error("plugin {plugin} failed: {source}")]
    Plugin {
        /// The plugin's name.
        plugin: String,
        /// Why.
        #[source]
        source: CallError,
    },
    /// The decision reached outside the plugin's grants; nothing was applied.
    #[error("decision of plugin {plugin} refused: {source}")]
    Refused {
        /// The plugin's name.
        plugin: String,
        /// What was outside the grants.
        #[source]
        source: Refusal,
    },
    /// Running the decision's SQL failed; children and status were not
    /// applied.
    #[error("running the SQL plan failed: {0}")]
    Sql(#[source] ServerError),
    /// A Kubernetes API call failed.
    #[error("Kubernetes API call failed while {action}: {source}")]
    Kube {
        /// What the host was doing.
        action: &'static str,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// Adding or removing the finalizer failed.
    #[error("finalizer handling failed: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<ReconcileError>>),
    /// A watch cache the reconcile reads from has not synced.
    #[error(transparent)]
    Cache(#[from] NotSynced),
}

impl ReconcileError {
    /// A bounded reason for conditions, events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Plugin { source, .. } => source.reason(),
            Self::Refused { .. } => "OutputRefused",
            Self::Sql(ServerError::Sql { .. }) => "SqlFailed",
            Self::Sql(_) => "ServerUnavailable",
            Self::Kube { .. } => "KubernetesApiError",
            Self::Finalizer(_) => "FinalizerError",
            Self::Cache(_) => "CacheNotSynced",
        }
    }
}

impl ReconcileError {
    /// The reason shown in the `Ready` condition and the Warning event: the
    /// plugin's own reason when it returned an error.
    pub fn condition_reason(&self) -> String {
        match self {
            Self::Plugin {
                source: CallError::Guest { reason, .. },
                ..
            } => reason.clone(),
            other => other.reason().to_owned(),
        }
    }
}

fn kube_error(action: &'static str) -> impl FnOnce(kube::Error) -> ReconcileError {
    move |source| ReconcileError::Kube { action, source }
}

/// The state one plugin's controller shares between reconciles: one per
/// version of the binding (see `live`), all versions sharing everything but
/// the binding.
#[derive(Clone)]
struct Context {
    client: Client,
    binding: PluginBinding,
    target: ApiResource,
    target_namespaced: bool,
    children: Vec<ChildKind>,
    reads: Arc<cache::ReadCaches>,
    recorder: Recorder,
    failures: Arc<Mutex<HashMap<String, u32>>>,
    written: fresh::WrittenObjects,
    queue: queue::Queue,
    settings: Settings,
    metrics: Arc<Metrics>,
    servers: Arc<ServerDirectory>,
}

/// A kind of children the plugin declares, and the cache of its children.
#[derive(Clone)]
struct ChildKind {
    kind: ObjectKind,
    resource: ApiResource,
    namespaced: bool,
    cache: cache::KindCache,
}

/// Runs the controller of one bound plugin until `shutdown` resolves;
/// reconciles in flight then finish. Versions published on the binding's
/// [`BindingPublisher`] are swapped in as they come, and every object is
/// then reconciled again.
///
/// # Errors
/// When the plugin's kinds are not served by the API server.
pub async fn run(
    client: Client,
    mut live: LiveBinding,
    settings: Settings,
    metrics: Arc<Metrics>,
    servers: Arc<ServerDirectory>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), ReconcileError> {
    let binding = live.current();
    let description = binding.plugin.description().clone();
    let (target, target_namespaced) = resolve_kind(&client, &description.target)
        .await
        .map_err(kube_error("discovering the target kind"))?;
    let plugin_name = description.name.clone();
    // One watch cache per kind the plugin writes or reads: the children of
    // a kind it also reads are served from the cache of all its objects.
    let grants = &binding.grants;
    let mut children = Vec::new();
    let mut child_streams = Vec::new();
    let mut read_caches = HashMap::new();
    let mut read_streams = Vec::new();
    for kind in grants.child_kinds.union(&grants.read_kinds) {
        let (resource, namespaced) = resolve_kind(&client, kind)
            .await
            .map_err(kube_error("discovering a kind the plugin writes or reads"))?;
        let reads = grants.read_kinds.contains(kind);
        let (cache, stream) =
            cache::KindCache::watch(&client, &resource, namespaced, &plugin_name, reads);
        if reads {
            read_caches.insert(kind.clone(), cache.clone());
        }
        if grants.child_kinds.contains(kind) {
            child_streams.push((stream, resource.clone()));
            children.push(ChildKind {
                kind: kind.clone(),
                resource,
                namespaced,
                cache,
            });
        } else {
            read_streams.push(stream);
        }
    }
    let reads = Arc::new(cache::ReadCaches::new(read_caches, read_streams));
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: settings.reporter.clone(),
            instance: std::env::var("POD_NAME").ok(),
        },
    );
    if !binding.grants.servers.is_empty()
        && let Err(error) = servers.ready().await
    {
        // Reconciles still run; objects show that no server is usable.
        tracing::warn!(plugin = %description.name, %error, "PostgreSQL servers are not known yet");
    }
    let concurrency = binding.concurrency;

    let api: Api<DynamicObject> = Api::all_with(client.clone(), &target);
    let writer = Writer::new(target.clone());
    let reader = writer.as_reader();
    // Status-only changes keep the generation: they must not re-trigger the
    // reconcile that wrote them. Finalizer changes must: adding ours ends a
    // reconcile that waits for the change to come back. Annotation changes
    // must too: they carry requests such as a password rotation.
    let written = fresh::WrittenObjects::default();
    let observed = written.clone();
    let queue = queue::Queue::default();
    let (forgotten, triggered) = (queue.clone(), queue.clone());
    let trigger = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(cache::slim),
    )
    .default_backoff()
    .inspect_ok(move |event| {
        observed.observe(event);
        if let watcher::Event::Delete(object) = event {
            forgotten.forget(&object.uid().unwrap_or_default());
        }
    })
    .applied_objects()
    .predicate_filter(
        predicates::generation
            .combine(predicates::finalizers)
            .combine(predicates::annotations),
        Default::default(),
    )
    .inspect_ok(move |object| triggered.triggered(&object.uid().unwrap_or_default()));
    let (swapped, swap_queue) = (reader.clone(), queue.clone());
    let mut controller = Controller::for_stream_with(trigger, reader, target.clone())
        .with_config(ControllerConfig::default().concurrency(concurrency));
    // Each child watch fills its cache and triggers the owner's reconcile:
    // what a reconcile reads from the cache is at least as new as what
    // triggered it.
    for (stream, resource) in child_streams {
        let queue = queue.clone();
        let stream = stream.inspect_ok(move |child| {
            if let Some(owner) = child.labels().get(OWNER_UID_LABEL) {
                queue.triggered(owner);
            }
        });
        controller = controller.owns_stream_with(stream, resource);
    }
    let context = Context {
        client,
        binding,
        target,
        target_namespaced,
        children,
        reads,
        recorder,
        failures: Arc::default(),
        written,
        queue: queue.clone(),
        settings,
        metrics,
        servers,
    };
    let versions = live::Versions::new(context, &live);
    tracing::info!(plugin = %plugin_name, kind = %description.target, "controller started");
    let depth = {
        let (metrics, plugin) = (Arc::clone(&versions.context().metrics), plugin_name.clone());
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            loop {
                every.tick().await;
                metrics.set_queue_depth(&plugin, queue.depth());
            }
        })
    };
    let swaps = versions.swaps(live).inspect(move |()| {
        for object in swapped.state() {
            swap_queue.triggered(&object.uid().unwrap_or_default());
        }
    });
    controller
        .reconcile_all_on(swaps)
        .graceful_shutdown_on(shutdown)
        .run(
            |object, versions| versions.reconcile(object),
            |object, error, versions| error_policy(object, error, versions.context()),
            versions,
        )
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
    depth.abort();
    tracing::info!(plugin = %plugin_name, "controller stopped");
    Ok(())
}

#[tracing::instrument(name = "wasm_operator.reconcile", skip_all, fields(plugin = %ctx.binding.plugin.description().name, object = %object.name_any(), namespace = object.namespace().unwrap_or_default(), trace_id = %trace_id()))]
async fn reconcile(
    object: Arc<DynamicObject>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let started = std::time::Instant::now();
    ctx.queue.started(&object.uid().unwrap_or_default());
    let object = ctx.written.overlay(Arc::clone(&object)).unwrap_or(object);
    let api = ctx.api_for(object.namespace().as_deref());
    let finalizer_name = ctx.binding.finalizer();
    let result = finalizer(&api, &finalizer_name, object.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(object) => ctx.apply(&object).await,
            FinalizerEvent::Cleanup(object) => ctx.cleanup(&object).await,
        }
    })
    .await
    .map_err(|e| match e {
        kube::runtime::finalizer::Error::ApplyFailed(inner)
        | kube::runtime::finalizer::Error::CleanupFailed(inner) => inner,
        other => ReconcileError::Finalizer(Box::new(other)),
    });
    let plugin = ctx.plugin_name();
    let kind = ctx.target.kind.as_str();
    let outcome = match &result {
        Ok(_) => Outcome::Success,
        Err(ReconcileError::Refused { .. }) => Outcome::Refused,
        Err(_) => Outcome::Error,
    };
    ctx.metrics
        .record_reconcile(&plugin, kind, outcome, started.elapsed());
    if let Err(error) = &result {
        ctx.metrics
            .record_reconcile_error(&plugin, kind, error.reason());
        match error {
            ReconcileError::Plugin { source, .. } => {
                ctx.metrics.record_call_failure(&plugin, source);
            }
            ReconcileError::Refused { .. } => ctx.metrics.record_refused_output(&plugin),
            _ => {}
        }
    }
    match &result {
        Ok(_) => {
            ctx.failures
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&object.uid().unwrap_or_default());
        }
        Err(error) => ctx.report_failure(&object, error).await,
    }
    result
}

fn error_policy(object: Arc<DynamicObject>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let count = failures
        .entry(object.uid().unwrap_or_default())
        .or_insert(0);
    *count = count.saturating_add(1);
    // A plugin that says retrying cannot help (an invalid spec) is asked
    // again on the next change or resync, not on a fast backoff.
    let delay = match error {
        ReconcileError::Plugin { source, .. } if !source.is_retryable() => ctx.settings.resync,
        _ => backoff(*count),
    };
    ctx.queue.requeued(&object.uid().unwrap_or_default(), delay);
    tracing::warn!(object = %object.name_any(), reason = error.reason(), %error, retry_in_ms = delay.as_millis() as u64, "reconcile failed");
    Action::requeue(delay)
}

/// Exponential backoff from 500 ms to 5 min with ±20 % jitter, so objects
/// that failed together do not retry together.
fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500).saturating_mul(1 << failures.min(10).saturating_sub(1));
    let capped = base.min(Duration::from_secs(300));
    let jitter = (Timestamp::now().subsec_nanosecond() as u64 % 400) as f64 / 1000.0 + 0.8;
    capped.mul_f64(jitter)
}

fn trace_id() -> String {
    let now = Timestamp::now();
    format!("{:x}{:08x}", now.as_second(), now.subsec_nanosecond())
}

impl Context {
    fn api_for(&self, namespace: Option<&str>) -> Api<DynamicObject> {
        match (self.target_namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, &self.target),
            _ => Api::all_with(self.client.clone(), &self.target),
        }
    }

    fn child_api(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        match (namespaced, namespace) {
            (true, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, resource),
            _ => Api::all_with(self.client.clone(), resource),
        }
    }

    fn call_context(&self, servers: &BTreeSet<String>) -> CallContext {
        CallContext {
            services: Arc::new(KubeServices {
                reads: Arc::clone(&self.reads),
                servers: Arc::clone(&self.servers),
            }),
            grants: Arc::new(self.binding.grants.for_call(servers.clone())),
        }
    }

    /// The servers the plugin may use for `object`: granted to the binding
    /// and consenting to the object's namespace.
    fn servers_for(&self, object: &DynamicObject) -> BTreeSet<String> {
        if self.binding.grants.servers.is_empty() {
            return BTreeSet::new();
        }
        self.servers
            .usable_by(&self.binding.grants.servers, object.namespace().as_deref())
    }

    fn plugin_name(&self) -> String {
        self.binding.plugin.description().name.clone()
    }

    /// The children of `object`, by the index of their kind, from the
    /// caches (with this controller's own writes).
    async fn existing_children(
        &self,
        object: &DynamicObject,
    ) -> Result<Vec<(usize, Arc<DynamicObject>)>, ReconcileError> {
        let uid = object.uid().unwrap_or_default();
        let mut found = Vec::new();
        for (index, child) in self.children.iter().enumerate() {
            child.cache.synced().await?;
            found.extend(
                child
                    .cache
                    .children_of(&uid)
                    .into_iter()
                    .map(|c| (index, c)),
            );
        }
        Ok(found)
    }

    fn input(
        &self,
        object: &DynamicObject,
        children: &[(usize, Arc<DynamicObject>)],
        servers: &BTreeSet<String>,
    ) -> ReconcileInput {
        ReconcileInput {
            object: serde_json::to_value(object).unwrap_or(Value::Null),
            children: children
                .iter()
                .map(|(_, c)| serde_json::to_value(&**c).unwrap_or(Value::Null))
                .collect(),
            settings: self.binding.settings.clone(),
            servers: servers.iter().cloned().collect(),
        }
    }

    fn plugin_failed(&self) -> impl FnOnce(CallError) -> ReconcileError + '_ {
        |source| ReconcileError::Plugin {
            plugin: self.plugin_name(),
            source,
        }
    }

    fn refused(&self) -> impl FnOnce(Refusal) -> ReconcileError + '_ {
        |source| ReconcileError::Refused {
            plugin: self.plugin_name(),
            source,
        }
    }

    /// Runs a decision's SQL plans in order, stopping at the first failure
    /// (then nothing else of the decision is applied).
    async fn run_sql(&self, plans: &[SqlPlan]) -> Result<(), ReconcileError> {
        for plan in plans.iter().filter(|p| !p.statements.is_empty()) {
            let started = std::time::Instant::now();
            let report = self
                .servers
                .run_plan(plan)
                .await
                .map_err(ReconcileError::Sql)?;
            tracing::info!(
                server = %plan.server,
                database = plan.database.as_deref().unwrap_or("(maintenance)"),
                statements = report.executed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "ran SQL plan"
            );
        }
        Ok(())
    }

    async fn apply(&self, object: &DynamicObject) -> Result<Action, ReconcileError> {
        let children = self.existing_children(object).await?;
        self.reads.synced().await?;
        let servers = self.servers_for(object);
        let input = self.input(object, &children, &servers);
        let timer = self
            .metrics
            .time_plugin_call(&self.plugin_name(), Export::Reconcile);
        let decision = self
            .binding
            .plugin
            .reconcile(&input, self.call_context(&servers))
            .await;
        drop(timer);
        let decision = decision.map_err(self.plugin_failed())?;
        check_decision(
            &self.binding.grants,
            object.namespace().as_deref(),
            &servers,
            &decision,
        )
        .map_err(self.refused())?;
        self.run_sql(&decision.sql).await?;
        self.apply_children(object, &decision, &children).await?;
        self.write_status(object, &decision).await?;
        self.publish(object, &decision.events).await;
        let after = decision.requeue_after.unwrap_or(self.settings.resync);
        self.queue
            .requeued(&object.uid().unwrap_or_default(), after);
        Ok(Action::requeue(after))
    }

    async fn cleanup(&self, object: &DynamicObject) -> Result<Action, ReconcileError> {
        let children = self.existing_children(object).await?;
        self.reads.synced().await?;
        let servers = self.servers_for(object);
        let input = self.input(object, &children, &servers);
        let timer = self
            .metrics
            .time_plugin_call(&self.plugin_name(), Export::Finalize);
        let decision = self
            .binding
            .plugin
            .finalize(&input, self.call_context(&servers))
            .await;
        drop(timer);
        let decision = decision.map_err(self.plugin_failed())?;
        grants::check_finalize(&servers, &decision).map_err(self.refused())?;
        self.run_sql(&decision.sql).await?;
        self.publish(object, &decision.events).await;
        if decision.done {
            Ok(Action::await_change())
        } else {
            // Returning an error keeps the finalizer; the backoff asks again.
            Err(ReconcileError::Plugin {
                plugin: self.plugin_name(),
                source: CallError::Guest {
                    reason: "CleanupPending".into(),
                    message: "the plugin has not finished cleaning up".into(),
                    retryable: true,
                },
            })
        }
    }

    /// Applies the desired children that differ from what exists, and
    /// deletes existing children that are no longer desired.
    async fn apply_children(
        &self,
        owner: &DynamicObject,
        decision: &Decision,
        existing: &[(usize, Arc<DynamicObject>)],
    ) -> Result<(), ReconcileError> {
        let manager = self.binding.field_manager();
        let owner_reference = json!({
            "apiVersion": self.target.api_version,
            "kind": self.target.kind,
            "name": owner.name_any(),
            "uid": owner.uid().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        });
        let mut wanted: BTreeSet<(ObjectKind, String)> = BTreeSet::new();
        for child in &decision.children {
            let kind = kind_of(child);
            let Some(child_kind) = self.children.iter().find(|c| c.kind == kind) else {
                continue; // unreachable: check_decision refused ungranted kinds
            };
            let mut child = child.clone();
            let name = child["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let metadata = child["metadata"]
                .as_object_mut()
                .expect("checked by the runtime");
            if child_kind.namespaced {
                metadata.insert("namespace".into(), json!(owner.namespace()));
            }
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            labels[PLUGIN_LABEL] = json!(self.plugin_name());
            labels[OWNER_UID_LABEL] = json!(owner.uid());
            metadata.insert("ownerReferences".into(), json!([owner_reference]));
            wanted.insert((kind.clone(), name.clone()));
            // Existing children are indexed by their kind's position in
            // `self.children`: compare that rather than re-serializing each.
            let current = existing
                .iter()
                .find(|(i, c)| self.children[*i].kind == kind && c.name_any() == name)
                .map(|(_, c)| c);
            if let Some(current) = current
                && is_subset(
                    &child,
                    &serde_json::to_value(&**current).unwrap_or_default(),
                )
            {
                continue;
            }
            let api = self.child_api(
                &child_kind.resource,
                child_kind.namespaced,
                owner.namespace().as_deref(),
            );
            let written = api
                .patch(
                    &name,
                    &PatchParams::apply(&manager).force(),
                    &Patch::Apply(&child),
                )
                .await
                .map_err(kube_error("applying a child"))?;
            child_kind.cache.applied(current.map(|c| &**c), written);
            self.metrics
                .record_write(&self.plugin_name(), WriteVerb::Apply);
            tracing::info!(kind = %kind, child = %name, "applied child");
        }
        for (index, child) in existing {
            let child_kind = &self.children[*index];
            let kind = &child_kind.kind;
            if wanted.contains(&(kind.clone(), child.name_any())) {
                continue;
            }
            let api = self.child_api(
                &child_kind.resource,
                child_kind.namespaced,
                child.namespace().as_deref(),
            );
            match api
                .delete(&child.name_any(), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                // Gone already (deleted by hand, or garbage-collected).
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(kube_error("deleting a child")(error)),
            }
            child_kind.cache.deleted(child);
            self.metrics
                .record_write(&self.plugin_name(), WriteVerb::Delete);
            tracing::info!(kind = %kind, child = %child.name_any(), "deleted child no longer desired");
        }
        Ok(())
    }

    /// Writes the decided status, with `observedGeneration`, the plugin
    /// digest and a `Ready` condition, unless it is already there.
    async fn write_status(
        &self,
        object: &DynamicObject,
        decision: &Decision,
    ) -> Result<(), ReconcileError> {
        let current = object.data.get("status").cloned().unwrap_or(Value::Null);
        let mut status = decision.status.clone().unwrap_or_else(|| json!({}));
        status["observedGeneration"] = json!(object.metadata.generation);
        status[DIGEST_FIELD] = json!(self.binding.plugin.digest().to_string());
        let conditions = status
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !conditions.iter().any(|c| c["type"] == "Ready") {
            let mut merged = conditions;
            merged.push(condition(
                &current,
                "Ready",
                true,
                "Reconciled",
                "the plugin's decision is applied",
                object.metadata.generation,
            ));
            status["conditions"] = Value::Array(merged);
        }
        if current == status {
            return Ok(());
        }
        let patch = json!({
            "apiVersion": self.target.api_version,
            "kind": self.target.kind,
            "status": status,
        });
        let written = self
            .api_for(object.namespace().as_deref())
            .patch_status(
                &object.name_any(),
                &PatchParams::apply(&self.binding.field_manager()).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(kube_error("writing status"))?;
        self.written.record(Some(object), written);
        self.metrics
            .record_write(&self.plugin_name(), WriteVerb::Status);
        Ok(())
    }

    /// Shows a failed reconcile in the object's status and as a Warning event.
    async fn report_failure(&self, object: &DynamicObject, error: &ReconcileError) {
        let current = object.data.get("status").cloned().unwrap_or(Value::Null);
        let message = error.to_string();
        let reason = error.condition_reason();
        let ready = condition(
            &current,
            "Ready",
            false,
            &reason,
            &message,
            object.metadata.generation,
        );
        let mut conditions: Vec<Value> = current
            .get("conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c["type"] != "Ready")
            .collect();
        conditions.push(ready);
        let patch = json!({"status": {"conditions": conditions, "observedGeneration": object.metadata.generation}});
        if current.get("conditions") != patch["status"].get("conditions") {
            match self
                .api_for(object.namespace().as_deref())
                .patch_status(
                    &object.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(written) => {
                    self.written.record(Some(object), written);
                    self.metrics
                        .record_write(&self.plugin_name(), WriteVerb::Status);
                }
                Err(error) => tracing::warn!(%error, "could not record the failure in status"),
            }
        }
        let event = Event {
            type_: EventType::Warning,
            reason,
            note: message,
            action: "Reconcile".into(),
        };
        self.publish(object, std::slice::from_ref(&event)).await;
    }

    async fn publish(&self, object: &DynamicObject, events: &[Event]) {
        let reference = object.object_ref(&self.target);
        for event in events {
            let event = KubeEvent {
                type_: match event.type_ {
                    EventType::Normal => KubeEventType::Normal,
                    EventType::Warning => KubeEventType::Warning,
                },
                reason: event.reason.clone(),
                note: Some(truncate(&event.note, 1024)),
                action: event.action.clone(),
                secondary: None,
            };
            match self.recorder.publish(&event, &reference).await {
                Ok(()) => self
                    .metrics
                    .record_write(&self.plugin_name(), WriteVerb::Event),
                Err(error) => {
                    tracing::warn!(%error, reason = %event.reason, "could not record an event")
                }
            }
        }
    }
}

/// A condition, keeping `lastTransitionTime` when its status is unchanged so
/// an unchanged decision writes nothing.
fn condition(
    current: &Value,
    type_: &str,
    ok: bool,
    reason: &str,
    message: &str,
    generation: Option<i64>,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let previous = current
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == type_));
    let since = match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(
            Timestamp::now()
                .round(jiff_second())
                .unwrap_or(Timestamp::now())
                .to_string()
        ),
    };
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": truncate(message, 2048),
        "lastTransitionTime": since,
        "observedGeneration": generation,
    })
}

fn jiff_second() -> k8s_openapi::jiff::Unit {
    k8s_openapi::jiff::Unit::Second
}

/// `text` cut to at most `max` bytes (on a character boundary), marked with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Whether every field of `desired` has the same value in `actual`.
fn is_subset(desired: &Value, actual: &Value) -> bool {
    match (desired, actual) {
        (Value::Object(d), Value::Object(a)) => d.iter().all(|(k, v)| {
            a.get(k).is_some_and(|av| is_subset(v, av)) || (v.is_null() && !a.contains_key(k))
        }),
        (Value::Array(d), Value::Array(a)) => {
            d.len() == a.len() && d.iter().zip(a).all(|(d, a)| is_subset(d, a))
        }
        _ => desired == actual,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_that_already_has_every_desired_field_needs_no_write() {
        let desired = json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "data": {"k": "v"}});
        let actual = json!({"metadata": {"name": "a", "uid": "u", "labels": {"x": "1", "y": "2"}}, "data": {"k": "v"}});
        assert!(is_subset(&desired, &actual));
        let changed = json!({"metadata": {"name": "a"}, "data": {"k": "w"}});
        assert!(!is_subset(&changed, &actual));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped_with_jitter() {
        assert!(backoff(1) <= Duration::from_millis(600));
        assert!(backoff(4) >= Duration::from_millis(3200));
        assert!(backoff(30) <= Duration::from_secs(360));
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let current = json!({"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        let again = condition(&current, "Ready", true, "Reconciled", "ok", Some(2));
        assert_eq!(again["lastTransitionTime"], "2020-01-01T00:00:00Z");
        let flipped = condition(&current, "Ready", false, "Trap", "boom", Some(2));
        assert_ne!(flipped["lastTransitionTime"], "2020-01-01T00:00:00Z");
    }
}
