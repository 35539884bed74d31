//! `wasm-operator run`: every replica follows every binding and serves its
//! admission webhooks; while this replica leads, it also keeps one
//! controller per binding on the binding's newest good version (see
//! [`crate::binding`]) and registers the webhooks, with health and metrics
//! endpoints, until SIGTERM or SIGINT.
//!
//! Shutdown runs in an order that keeps two replicas from reconciling at
//! once: stop taking work, let reconciles in flight finish (at most the
//! grace period), and only then release the Lease, so a successor takes
//! over at once but never next to a reconcile of ours.
//!
//! The admission webhooks are served by every replica from the start, not
//! only by the leader, from the versions each replica loads itself (read
//! only: no status, no events, no controllers while following); see
//! [`crate::admission`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admission::{
    self, AdmissionState, ApiReads, CaSource, CertificateConfig, CertificateError, Keeper,
    Registrar, RegistrationConfig, ServingCertificate, TlsError,
};
use crate::binding::{
    InService, LiveBinding, ReloadError, Reloader, Shutdown, StartController, StartReport,
    shutdown_signal,
};
use crate::http::{self, HttpState, Readiness};
use crate::leader::{LeaderElector, LeaderError, LeaseConfig};
use crate::metrics::Metrics;
use crate::postgres::ServerDirectory;
use crate::reconcile::{self, Settings};
use crate::runtime::Runtime;

/// Default time reconciles in flight get to finish after SIGTERM or SIGINT;
/// shorter than the 30 s `terminationGracePeriodSeconds` of
/// `deploy/operator.yaml`, with room for the Lease release after it.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// How long releasing the Lease may take at shutdown; past it the
/// successor waits for the Lease to expire instead.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address of /healthz, /readyz and /metrics.
    pub http_addr: SocketAddr,
    /// Reconcile every object at least this often.
    pub resync: Duration,
    /// Elect one leader among replicas through a Lease.
    pub leader_election: bool,
    /// Namespace of the leader-election Lease.
    pub lease_namespace: String,
    /// Name of the leader-election Lease.
    pub lease_name: String,
    /// How long a leader's Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// This replica's identity (default: host name and pid).
    pub identity: Option<String>,
    /// How long reconciles in flight get to finish after SIGTERM or SIGINT
    /// before they are cut (see [`DEFAULT_SHUTDOWN_GRACE`]).
    pub shutdown_grace: Duration,
    /// Address of the admission webhooks (HTTPS).
    pub webhook_addr: SocketAddr,
    /// A directory with `tls.crt` and `tls.key` to serve the webhooks with
    /// (reloaded when they change); without it a certificate is generated.
    pub webhook_cert_dir: Option<PathBuf>,
    /// The Service the API server reaches the webhooks through, named in a
    /// generated certificate.
    pub webhook_service_name: String,
    /// The namespace of that Service.
    pub webhook_service_namespace: String,
    /// The port of that Service the configurations name.
    pub webhook_service_port: u16,
    /// The Secret in the operator's namespace (the Lease namespace) that
    /// holds the shared CA and serving certificate, without a cert dir.
    pub webhook_secret_name: String,
    /// The lifetime of a generated serving certificate (renewed at two
    /// thirds of it).
    pub webhook_cert_lifetime: Duration,
    /// With a cert dir: the cert-manager Certificate (`namespace/name`)
    /// whose CA cert-manager's CA injector puts into the configurations.
    pub webhook_cert_manager_certificate: Option<String>,
}

/// Why the operator stopped before it was asked to, or could not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The Kubernetes client could not be configured.
    #[error("cannot reach Kubernetes: {0}; set KUBECONFIG or run in a cluster")]
    Client(#[source] kube::Error),
    /// The HTTP endpoints could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The webhooks' serving certificate could not be set up.
    #[error("cannot serve admission webhooks: {0}")]
    WebhookTls(#[from] TlsError),
    /// The shared webhook certificate could not be read or created
    /// (boxed: it is large, and rare).
    #[error("cannot serve admission webhooks: {0}")]
    WebhookCertificate(#[source] Box<CertificateError>),
    /// SIGTERM and SIGINT could not be caught.
    #[error("cannot catch SIGTERM and SIGINT: {0}")]
    Signals(#[source] std::io::Error),
    /// Leader election could not be set up.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The bindings could not be watched.
    #[error(transparent)]
    Reload(#[from] ReloadError),
    /// A second SIGTERM or SIGINT came before reconciles in flight finished.
    #[error("stopped by a second signal: reconciles in flight were cut")]
    Interrupted,
}

/// Runs the operator until SIGTERM or SIGINT.
///
/// # Guarantees
/// On the first SIGTERM or SIGINT: /readyz turns unready, controllers take
/// no new work, reconciles in flight get [`Config::shutdown_grace`] to
/// finish (past it they are cut), then the Lease is released (at most
/// 5 s more) and `run` returns `Ok`. A second signal cuts the wait short
/// and returns at once, leaving the Lease to expire.
///
/// # Errors
/// An [`OperatorError`] when it cannot start, or
/// [`OperatorError::Interrupted`] after a second signal.
pub async fn run(config: Config, runtime: Runtime) -> Result<(), OperatorError> {
    let signals = count_signals(config.shutdown_grace)?;
    let stop = signalled(signals.clone(), 1);
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::not_ready("plugins are loading"));
    // Fires last, once controllers have stopped: ends leader election
    // (releasing the Lease) and the HTTP endpoints.
    let (release_tx, release_rx) = watch::channel(false);
    let release = shutdown_signal(release_rx);

    let listen = |source| OperatorError::Listen {
        addr: config.http_addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .map_err(listen)?;
    tracing::info!(addr = %listener.local_addr().map_err(listen)?, "serving /healthz, /readyz and /metrics");
    let http_task = tokio::spawn(http::serve(
        listener,
        HttpState {
            metrics: Arc::clone(&metrics),
            ready: Arc::clone(&readiness),
        },
        release.clone(),
    ));

    // Without leader election this replica always leads; the sender is kept
    // for the whole run so the receiver never reports it gone.
    let (_always_leading, always) = watch::channel(true);
    let (mut leadership, elector) = if config.leader_election {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let lease_seconds = config.lease_duration.as_secs();
        let lease = LeaseConfig::new(&config.lease_namespace, &config.lease_name, &identity)
            .lease_duration(config.lease_duration)
            .renew_period(Duration::from_secs((lease_seconds / 3).max(1)));
        let elector = LeaderElector::new(client.clone(), lease)?.with_metrics(Arc::clone(&metrics));
        let leadership = elector.leadership();
        let task = tokio::spawn(elector.run(release.clone()));
        tracing::info!(%identity, lease = %format!("{}/{}", config.lease_namespace, config.lease_name), "leader election started");
        (leadership, Some(task))
    } else {
        (always, None)
    };

    let in_service = InService::default();
    let webhooks = Webhooks {
        client: &client,
        in_service: &in_service,
        metrics: &metrics,
        readiness: &readiness,
        leading: &leadership,
        stop: &release,
    };
    let webhook_task = serve_webhooks(&config, webhooks).await?;

    let settings = Settings {
        resync: config.resync,
        ..Settings::default()
    };
    let servers = ServerDirectory::new(client.clone());
    let runtime = Arc::new(runtime);
    // One reloader for the whole run: every replica loads every binding
    // (for admission); controllers run only while this replica leads.
    let (term_tx, term_rx) = watch::channel(false);
    let reloader = Reloader::new(
        client.clone(),
        Arc::clone(&runtime),
        Arc::clone(&metrics),
        &settings.reporter,
        controller_starter(&client, &settings, &metrics, &servers),
        in_service.clone(),
        leadership.clone(),
    );
    let controllers = reloader.start(shutdown_signal(term_rx)).await?;
    readiness.set_ready();
    loop {
        // Wait to lead (or to stop).
        tokio::select! {
            changed = leadership.wait_for(|leading| *leading) => { if changed.is_err() { break; } }
            () = stop.clone() => break,
        }
        tracing::info!("leading: starting controllers");
        tokio::select! {
            _ = leadership.wait_for(|leading| !*leading) => {
                // The reloader stops the controllers; admission goes on.
                tracing::warn!("lost leadership: stopping controllers");
            }
            () = stop.clone() => break,
        }
    }
    readiness.set_not_ready("shutting down");
    let _ = term_tx.send(true);
    let outcome = drain(
        controllers,
        config.shutdown_grace,
        signalled(signals.clone(), 2),
    )
    .await;
    // A second signal asked to stop now: successors wait for the Lease to
    // expire rather than for a release.
    outcome?;
    // Only now may a successor lead: this replica's controllers have
    // stopped, or were cut and the process is about to exit.
    let _ = release_tx.send(true);
    if let Some(elector) = elector {
        await_release(elector).await;
    }
    let _ = http_task.await;
    let _ = webhook_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// What serving the webhooks shares with the rest of the operator.
struct Webhooks<'a> {
    client: &'a Client,
    in_service: &'a InService,
    metrics: &'a Arc<Metrics>,
    readiness: &'a Arc<Readiness>,
    leading: &'a watch::Receiver<bool>,
    stop: &'a Shutdown,
}

/// How often each replica checks that the API server can call it.
const WEBHOOK_READINESS_INTERVAL: Duration = Duration::from_secs(2);

/// Starts serving the admission webhooks until `stop`, with the
/// certificate of `--webhook-cert-dir` (watched for changes) or the one
/// the replicas share through a Secret (renewed by the leader); has the
/// leader register the configurations, and keeps the webhook gate of
/// `/readyz` on whether they trust the certificate this replica serves.
async fn serve_webhooks(
    config: &Config,
    webhooks: Webhooks<'_>,
) -> Result<JoinHandle<()>, OperatorError> {
    let Webhooks {
        client,
        in_service,
        metrics,
        readiness,
        leading,
        stop,
    } = webhooks;
    let (certificate, ca) = match &config.webhook_cert_dir {
        Some(dir) => {
            let certificate = Arc::new(ServingCertificate::from_dir(dir)?);
            let watched = Arc::clone(&certificate);
            let reloads = stop.clone();
            tokio::spawn(async move { watched.watch(reloads).await });
            let ca = match &config.webhook_cert_manager_certificate {
                Some(name) => CaSource::CertManager(name.clone()),
                None => CaSource::External,
            };
            (certificate, ca)
        }
        None => {
            let cert_config = CertificateConfig {
                namespace: config.lease_namespace.clone(),
                secret: config.webhook_secret_name.clone(),
                service: config.webhook_service_name.clone(),
                service_namespace: config.webhook_service_namespace.clone(),
                lifetime: config.webhook_cert_lifetime,
            };
            let issued = admission::certificates::shared(client, &cert_config)
                .await
                .map_err(|e| OperatorError::WebhookCertificate(Box::new(e)))?;
            let certificate = Arc::new(issued.serving()?);
            let (bundle, bundles) = watch::channel(Some(issued.ca_bundle.clone()));
            let keeper = Keeper {
                client: client.clone(),
                config: cert_config,
                serving: Arc::clone(&certificate),
                bundle,
                leading: leading.clone(),
            };
            tokio::spawn(keeper.run(issued, stop.clone()));
            (certificate, CaSource::Bundle(bundles))
        }
    };
    let registrar = Registrar::new(
        client.clone(),
        RegistrationConfig {
            operator_namespace: config.lease_namespace.clone(),
            service: config.webhook_service_name.clone(),
            service_namespace: config.webhook_service_namespace.clone(),
            port: config.webhook_service_port,
            ca,
        },
        in_service.clone(),
        leading.clone(),
    );
    tokio::spawn(registrar.run(stop.clone()));
    tokio::spawn(check_webhooks(
        client.clone(),
        in_service.clone(),
        Arc::clone(&certificate),
        format!(
            "{}.{}.svc",
            config.webhook_service_name, config.webhook_service_namespace
        ),
        Arc::clone(readiness),
        stop.clone(),
    ));
    let tls = certificate.server_config()?;
    let listen = |source| OperatorError::Listen {
        addr: config.webhook_addr,
        source,
    };
    let listener = tokio::net::TcpListener::bind(config.webhook_addr)
        .await
        .map_err(listen)?;
    tracing::info!(
        addr = %listener.local_addr().map_err(listen)?,
        certificate = %config.webhook_cert_dir.as_ref().map_or_else(|| format!("Secret {}/{}", config.lease_namespace, config.webhook_secret_name), |d| d.display().to_string()),
        "serving admission webhooks on /validate/<binding> and /mutate/<binding>"
    );
    let state = AdmissionState {
        in_service: in_service.clone(),
        reads: Arc::new(ApiReads::new(client.clone())),
        metrics: Arc::clone(metrics),
    };
    Ok(tokio::spawn(admission::serve(
        listener,
        tls,
        state,
        stop.clone(),
    )))
}

/// Keeps the webhook gate of `/readyz` on whether the configurations in
/// place trust the certificate this replica serves, until `stop`.
async fn check_webhooks(
    client: Client,
    in_service: InService,
    certificate: Arc<ServingCertificate>,
    server_name: String,
    readiness: Arc<Readiness>,
    stop: Shutdown,
) {
    let mut last: Option<Result<(), String>> = None;
    loop {
        let state =
            admission::check_in_place(&client, &in_service, &certificate, &server_name).await;
        if last.as_ref() != Some(&state) {
            match &state {
                Ok(()) => tracing::info!("webhooks: the API server can call this replica"),
                Err(reason) => tracing::info!(%reason, "webhooks: not ready"),
            }
            last = Some(state.clone());
        }
        readiness.set_webhooks(state);
        tokio::select! {
            () = stop.clone() => return,
            () = tokio::time::sleep(WEBHOOK_READINESS_INTERVAL) => {}
        }
    }
}

/// Waits for the elector, told to stop, to release the Lease.
async fn await_release(elector: JoinHandle<Result<(), LeaderError>>) {
    match tokio::time::timeout(RELEASE_TIMEOUT, elector).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(error))) => tracing::warn!(%error, "successors wait for the Lease to expire"),
        Ok(Err(error)) => tracing::error!(%error, "leader election failed"),
        Err(_) => tracing::warn!(
            timeout_s = RELEASE_TIMEOUT.as_secs(),
            "releasing the Lease timed out; successors wait for it to expire"
        ),
    }
}

/// Counts SIGTERMs and SIGINTs as they come: the first asks for a graceful
/// shutdown (the kubelet sends SIGTERM, a terminal Ctrl-C SIGINT), a second
/// for an immediate one.
fn count_signals(grace: Duration) -> Result<watch::Receiver<u32>, OperatorError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).map_err(OperatorError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(OperatorError::Signals)?;
    let (count, counted) = watch::channel(0_u32);
    tokio::spawn(async move {
        loop {
            let signal = tokio::select! {
                Some(()) = terminate.recv() => "SIGTERM",
                Some(()) = interrupt.recv() => "SIGINT",
                else => return,
            };
            count.send_modify(|n| *n = n.saturating_add(1));
            if *count.borrow() == 1 {
                tracing::info!(
                    signal,
                    grace_s = grace.as_secs_f64(),
                    "shutting down: no new reconciles; those in flight finish first"
                );
            } else {
                tracing::warn!(
                    signal,
                    "second signal: stopping without waiting for reconciles in flight"
                );
            }
        }
    });
    Ok(counted)
}

/// Fires once `signals` has counted `n` signals.
fn signalled(mut signals: watch::Receiver<u32>, n: u32) -> Shutdown {
    async move {
        let _ = signals.wait_for(|count| *count >= n).await;
    }
    .boxed()
    .shared()
}

/// Waits for stopping controllers to finish their reconciles in flight, at
/// most `grace` or until `cut` fires; past that, cuts them.
async fn drain(
    mut controllers: JoinHandle<()>,
    grace: Duration,
    cut: Shutdown,
) -> Result<(), OperatorError> {
    let started = Instant::now();
    let interrupted = tokio::select! {
        _ = &mut controllers => {
            tracing::info!(took_ms = started.elapsed().as_millis() as u64, "controllers stopped; no reconcile is in flight");
            return Ok(());
        }
        () = tokio::time::sleep(grace) => {
            tracing::warn!(grace_s = grace.as_secs_f64(), "the shutdown grace period ran out: cutting reconciles still in flight");
            false
        }
        () = cut => true,
    };
    controllers.abort();
    if interrupted {
        Err(OperatorError::Interrupted)
    } else {
        Ok(())
    }
}

/// How the reloader runs the controller of a binding with a version in service.
fn controller_starter(
    client: &Client,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    servers: &Arc<ServerDirectory>,
) -> StartController {
    let (client, settings, metrics, servers) = (
        client.clone(),
        settings.clone(),
        Arc::clone(metrics),
        Arc::clone(servers),
    );
    Arc::new(
        move |live: LiveBinding, stop: Shutdown, report: StartReport| {
            reconcile::run(
                client.clone(),
                live,
                settings.clone(),
                Arc::clone(&metrics),
                Arc::clone(&servers),
                stop,
                report,
            )
            .boxed()
        },
    )
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "wasm-operator".into());
    format!("{host}-{}", std::process::id())
}
