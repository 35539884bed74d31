//! The controller of one binding: its watches and caches, kube-runtime's
//! `Controller` driving [`pipeline::reconcile`] per object, and the retry
//! policy for failed reconciles.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::{FutureExt, StreamExt, TryStreamExt};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::controller::{Action, Config as ControllerConfig};
use kube::runtime::reflector::{self, store::Writer};
use kube::runtime::{Controller, Predicate, WatchStreamExt, predicates, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::budget::EventBudget;
use super::cache::{KindCache, ReadCaches, WrittenObjects, slim};
use super::context::{ChildKind, Context, ServedKind, Settings};
use super::error::ReconcileError;
use super::pipeline;
use super::queue::Queue;
use super::versions::Versions;
use crate::binding::{ControllerStartError, LiveBinding, StartReport};
use crate::events::EventRecorder;
use crate::grants::Grants;
use crate::metrics::{BindingLabels, Metrics};
use crate::postgres::ServerDirectory;
use crate::vocabulary::{OWNER_UID_LABEL, ObjectKind};

/// How long a controller's caches may take to sync before it says which
/// ones it still waits for (and again every as long).
const SLOW_SYNC: Duration = Duration::from_secs(5);

/// Runs the controller of one binding until `shutdown` resolves;
/// reconciles in flight then finish. It says through `report` whether it
/// started, before it reconciles anything: it cannot when a kind of the
/// plugin is not served or its target kind cannot be listed (it then
/// ends, and its binding starts it again later). Versions published on the binding's
/// [`BindingPublisher`](crate::binding::BindingPublisher) are swapped in as
/// they come, and every object is then reconciled again.
///
/// While the version in service only admits (an admission-only plugin),
/// no controller runs and no kind is watched: `run` waits until `shutdown`,
/// or until a version that reconciles is published, and starts with that.
pub async fn run(
    client: Client,
    live: LiveBinding,
    settings: Settings,
    metrics: Arc<Metrics>,
    servers: Arc<ServerDirectory>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
    report: StartReport,
) {
    let mut shutdown = Box::pin(shutdown);
    let Some((mut live, _forwarding)) = until_it_reconciles(live, &mut shutdown).await else {
        return;
    };
    let first = live.current();
    let plugin = first.binding.clone();
    let description = plugin.plugin.description().clone();
    let labels = BindingLabels::new(live.name(), &description.name);
    let grants = &plugin.grants;
    let (target, served) = match discover(&client, &description.target, grants).await {
        // What follows cannot fail: the controller has started.
        Ok(kinds) => {
            report.started();
            kinds
        }
        Err(error) => {
            tracing::error!(binding = %labels.binding, %error, "controller could not start");
            report.failed(error);
            return;
        }
    };
    // One watch cache per kind the plugin writes or reads: the children of
    // a kind it also reads are served from the cache of all its objects.
    let mut children = Vec::new();
    let mut child_streams = Vec::new();
    let mut read_caches = HashMap::new();
    let mut read_streams = Vec::new();
    let mut syncing = Vec::new();
    for (kind, served) in served {
        let reads = grants.may_read(&kind);
        let (cache, stream) = KindCache::watch(
            &client,
            &served.resource,
            served.namespaced,
            &description.name,
            reads,
        );
        syncing.push(cache.sync_progress());
        if reads {
            read_caches.insert(kind.clone(), cache.clone());
        }
        if grants.may_own(&kind) {
            child_streams.push((stream, served.resource.clone()));
            children.push(ChildKind { served, cache });
        } else {
            read_streams.push(stream);
        }
    }
    let reads = Arc::new(ReadCaches::new(read_caches, read_streams));
    if grants.uses_servers()
        && let Err(error) = servers.ready().await
    {
        // Reconciles still run; objects show that no server is usable.
        tracing::warn!(binding = %labels.binding, %error, "PostgreSQL servers are not known yet");
    }
    let concurrency = plugin.concurrency;

    let api: Api<DynamicObject> = Api::all_with(client.clone(), &target.resource);
    let writer = Writer::new(target.resource.clone());
    let reader = writer.as_reader();
    // Status-only changes keep the generation: they must not re-trigger the
    // reconcile that wrote them. Finalizer changes must: adding ours ends a
    // reconcile that waits for the change to come back. Annotation changes
    // must too: they carry requests such as a password rotation.
    let written = WrittenObjects::default();
    let observed = written.clone();
    let queue = Queue::new(metrics.work_queue(live.name()));
    let (forgotten, triggered) = (queue.clone(), queue.clone());
    let budget = EventBudget::default();
    let spent = budget.clone();
    // Set from the watch events rather than awaited on the store: kube's
    // `Store::wait_until_ready` wakes only one of several waiters, and the
    // controller itself already waits on it.
    let target_synced = watch::Sender::new(false);
    syncing.push((description.target.to_string(), target_synced.subscribe()));
    let trigger = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).modify(slim),
    )
    .default_backoff()
    .inspect_ok(move |event| {
        observed.observe(event);
        if matches!(event, watcher::Event::InitDone) {
            target_synced.send_replace(true);
        }
        if let watcher::Event::Delete(object) = event {
            let uid = object.uid().unwrap_or_default();
            forgotten.forget(&uid);
            spent.forget(&uid);
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
    let mut controller = Controller::for_stream_with(trigger, reader, target.resource.clone())
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
        events: EventRecorder::new(client.clone(), &settings.reporter),
        event_budget: budget.clone(),
        client,
        plugin,
        labels: labels.clone(),
        target,
        children,
        reads,
        failures: Arc::default(),
        written,
        queue: queue.clone(),
        settings,
        metrics: Arc::clone(&metrics),
        servers,
    };
    let versions = Versions::new(context, &first);
    tracing::info!(binding = %labels.binding, plugin = %labels.plugin, kind = %description.target, "controller started");
    let binding = labels.binding.to_string();
    let sync = tokio::spawn(report_sync(binding.clone(), syncing));
    let depth = tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            metrics.set_queue_depth(&labels, queue.depth());
        }
    });
    let swaps = versions.swaps(live).inspect(move |()| {
        for object in swapped.state() {
            swap_queue.triggered(&object.uid().unwrap_or_default());
        }
    });
    let in_flight = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&in_flight);
    let reconcile = move |object, versions| {
        let running = InFlight::start(&counted);
        async move {
            let _running = running;
            pipeline::reconcile(object, versions).await
        }
    };
    let shutdown = shutdown.inspect(move |()| {
        let in_flight = in_flight.load(Ordering::SeqCst);
        tracing::info!(%binding, in_flight, "controller stopping: reconciles in flight finish first");
    });
    controller
        .reconcile_all_on(swaps)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, versions)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not complete");
            }
        })
        .await;
    depth.abort();
    sync.abort();
    tracing::info!(binding = %description.name, "controller stopped");
}

/// Discovers the kind `target` the plugin reconciles, checks that its
/// objects can be listed, and discovers every kind its `grants` let it
/// write or read: all a controller needs before it can start.
async fn discover(
    client: &Client,
    target: &ObjectKind,
    grants: &Grants,
) -> Result<(ServedKind, Vec<(ObjectKind, ServedKind)>), ControllerStartError> {
    let served = ServedKind::discover(client, target)
        .await
        .map_err(|e| ControllerStartError::new(target, e))?;
    // Served but not listable (RBAC) would leave the watch retrying in
    // silence: say so now instead.
    Api::<DynamicObject>::all_with(client.clone(), &served.resource)
        .list_metadata(&ListParams::default().limit(1))
        .await
        .map_err(|e| ControllerStartError::new(target, e))?;
    let mut kinds = Vec::new();
    for kind in grants.child_kinds.union(&grants.read_kinds) {
        let found = ServedKind::discover(client, kind)
            .await
            .map_err(|e| ControllerStartError::new(kind, e))?;
        kinds.push((kind.clone(), found));
    }
    Ok((served, kinds))
}

/// Returns `live` at once when its version in service reconciles. When it
/// only admits, logs so once and waits, watching nothing, for `shutdown`
/// (`None`) or for a published version that reconciles: then returns a
/// binding that starts with that version and follows the later ones, with
/// the task that forwards them (aborted when dropped).
async fn until_it_reconciles<S>(
    mut live: LiveBinding,
    shutdown: &mut std::pin::Pin<Box<S>>,
) -> Option<(LiveBinding, Option<Forwarding>)>
where
    S: std::future::Future<Output = ()> + Send + Sync,
{
    let current = live.current();
    let description = current.binding.plugin.description();
    if !description.is_admission_only() {
        return Some((live, None));
    }
    let name = live.name().to_owned();
    tracing::info!(binding = %name, plugin = %description.name, kind = %description.target, "admission-only plugin: no controller and no watch of its kind until a version that reconciles is swapped in");
    let mut versions = Box::pin(live.versions());
    loop {
        let published = tokio::select! {
            () = shutdown.as_mut() => return None,
            next = versions.next() => next?,
        };
        if published.binding.plugin.description().is_admission_only() {
            continue;
        }
        let (publisher, live) =
            crate::binding::channel(&name, published.binding, published.changed_at);
        let forward = tokio::spawn(async move {
            while let Some(next) = versions.next().await {
                let changed_at = next.changed_at.unwrap_or_else(std::time::Instant::now);
                publisher.publish(next.binding, changed_at);
            }
        });
        return Some((live, Some(Forwarding(forward))));
    }
}

/// The task forwarding versions to a controller that started after its
/// binding was admission-only; it ends with the controller.
struct Forwarding(tokio::task::JoinHandle<()>);

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One reconcile running, counted in the controller's in-flight total
/// while it lives.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn start(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(count))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Logs once every cache in `caches` (`apiVersion/kind`, synced) has its
/// first list, and every [`SLOW_SYNC`] until then which ones it still
/// waits for: a cache that does not sync shows in the log instead of
/// holding reconciles back in silence.
async fn report_sync(binding: String, mut caches: Vec<(String, watch::Receiver<bool>)>) {
    let started = Instant::now();
    loop {
        // A cache whose sender is gone belongs to a controller that stopped.
        caches.retain(|(_, synced)| !*synced.borrow() && synced.has_changed().is_ok());
        if caches.is_empty() {
            tracing::info!(%binding, took_ms = started.elapsed().as_millis() as u64, "caches synced");
            return;
        }
        let deadline = Instant::now() + SLOW_SYNC;
        let mut in_time = true;
        for (_, synced) in &mut caches {
            let waited = tokio::time::timeout_at(deadline, synced.wait_for(|synced| *synced)).await;
            in_time = waited.is_ok();
            if !in_time {
                break;
            }
        }
        if !in_time {
            let waiting_for: Vec<&str> = caches.iter().map(|(kind, _)| kind.as_str()).collect();
            tracing::warn!(%binding, ?waiting_for, waited_s = started.elapsed().as_secs(), "watch caches have not synced yet; check that the API server serves these kinds and that the operator may list and watch them");
        }
    }
}

/// When to try a failed reconcile again: with a growing backoff, or at the
/// next resync when the plugin says retrying cannot help.
fn error_policy(
    object: Arc<DynamicObject>,
    error: &ReconcileError,
    versions: Arc<Versions>,
) -> Action {
    let ctx = Arc::clone(&versions.current().context);
    let mut failures = ctx.failures.lock().unwrap_or_else(|e| e.into_inner());
    let count = failures
        .entry(object.uid().unwrap_or_default())
        .or_insert(0);
    *count = count.saturating_add(1);
    // A plugin that says retrying cannot help (an invalid spec) is asked
    // again on the next change or resync, not on a fast backoff.
    let uid = object.uid().unwrap_or_default();
    let delay = match error {
        ReconcileError::Plugin { source, .. } if !source.is_retryable() => {
            ctx.queue.requeued(&uid, ctx.settings.resync);
            ctx.settings.resync
        }
        _ => {
            let delay = backoff(*count);
            ctx.queue.retried(&uid, delay);
            delay
        }
    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Log output, kept for a test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Captured {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_that_does_not_sync_is_named_in_a_warning_every_5_s_until_it_does() {
        let log = Captured::default();
        let writer = log.clone();
        let _subscriber = tracing::subscriber::set_default(
            tracing_subscriber::fmt()
                .with_writer(move || writer.clone())
                .with_ansi(false)
                .finish(),
        );
        let (config_maps, config_maps_synced) = watch::channel(false);
        let (_secrets, secrets_synced) = watch::channel(true);
        let report = tokio::spawn(report_sync(
            "greeting".into(),
            vec![
                ("v1/ConfigMap".into(), config_maps_synced),
                ("v1/Secret".into(), secrets_synced),
            ],
        ));
        tokio::time::sleep(Duration::from_secs(11)).await;
        let text = log.text();
        assert_eq!(
            text.matches("watch caches have not synced yet").count(),
            2,
            "{text}"
        );
        assert!(
            text.contains("v1/ConfigMap") && !text.contains("v1/Secret"),
            "{text}"
        );
        config_maps.send_replace(true);
        report.await.expect("the report ends once all synced");
        assert!(log.text().contains("caches synced"));
    }

    #[test]
    fn backoff_grows_exponentially_and_is_capped_with_jitter() {
        assert!(backoff(1) <= Duration::from_millis(600));
        assert!(backoff(4) >= Duration::from_millis(3200));
        assert!(backoff(30) <= Duration::from_secs(360));
    }
}
