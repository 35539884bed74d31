//! `wasm-operator run`: while this replica leads, keeps one controller per
//! binding on the binding's newest good version (see [`crate::binding`]),
//! with health and metrics endpoints, until SIGTERM or SIGINT.
//!
//! Shutdown runs in an order that keeps two replicas from reconciling at
//! once: stop taking work, let reconciles in flight finish (at most the
//! grace period), and only then release the Lease, so a successor takes
//! over at once but never next to a reconcile of ours.
//!
//! The admission webhooks are served by every replica from the start, not
//! only by the leader; see [`crate::admission`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::admission::{self, AdmissionState, ApiReads, ServingCertificate, TlsError};
use crate::binding::{
    InService, LiveBinding, ReloadError, Reloader, Shutdown, StartController, shutdown_signal,
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

    let in_service = InService::default();
    let webhook_task = serve_webhooks(&config, &client, &in_service, &metrics, &release).await?;

    // Without leader election this replica always leads; the sender is kept
    // for the whole run so the receiver never reports it gone.
    let (_always_leading, always) = watch::channel(true);
    let (mut leadership, elector) = if config.leader_election {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let lease_seconds = config.lease_duration.as_secs();
        let lease = LeaseConfig::new(&config.lease_namespace, &config.lease_name, &identity)
            .lease_duration(config.lease_duration)
            .renew_period(Duration::from_secs((lease_seconds / 3).max(1)));
        let elector = LeaderElector::new(client.clone(), lease)?;
        let leadership = elector.leadership();
        let task = tokio::spawn(elector.run(release.clone()));
        tracing::info!(%identity, lease = %format!("{}/{}", config.lease_namespace, config.lease_name), "leader election started");
        (leadership, Some(task))
    } else {
        (always, None)
    };

    let settings = Settings {
        resync: config.resync,
        ..Settings::default()
    };
    let servers = ServerDirectory::new(client.clone());
    let runtime = Arc::new(runtime);
    let outcome = loop {
        // Wait to lead (or to stop).
        tokio::select! {
            changed = leadership.wait_for(|leading| *leading) => { if changed.is_err() { break Ok(()); } }
            () = stop.clone() => break Ok(()),
        }
        tracing::info!("leading: starting controllers");
        let (term_tx, term_rx) = watch::channel(false);
        let reloader = Reloader::new(
            client.clone(),
            Arc::clone(&runtime),
            Arc::clone(&metrics),
            &settings.reporter,
            controller_starter(&client, &settings, &metrics, &servers),
            in_service.clone(),
        );
        let mut controllers = reloader.start(shutdown_signal(term_rx)).await?;
        readiness.set_ready();
        let stopping = tokio::select! {
            _ = leadership.wait_for(|leading| !*leading) => false,
            () = stop.clone() => true,
        };
        if !stopping {
            tracing::warn!("lost leadership: stopping controllers");
            readiness.set_not_ready("not leading");
            let _ = term_tx.send(true);
            // A signal while they stop turns this into the shutdown below.
            tokio::select! {
                _ = &mut controllers => continue,
                () = stop.clone() => {}
            }
        }
        readiness.set_not_ready("shutting down");
        let _ = term_tx.send(true);
        break drain(
            controllers,
            config.shutdown_grace,
            signalled(signals.clone(), 2),
        )
        .await;
    };
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

/// Starts serving the admission webhooks until `stop`, with the
/// certificate of `--webhook-cert-dir` (watched for changes) or a
/// generated one.
async fn serve_webhooks(
    config: &Config,
    client: &Client,
    in_service: &InService,
    metrics: &Arc<Metrics>,
    stop: &Shutdown,
) -> Result<JoinHandle<()>, OperatorError> {
    let certificate = Arc::new(match &config.webhook_cert_dir {
        Some(dir) => ServingCertificate::from_dir(dir)?,
        None => ServingCertificate::generate(
            &config.webhook_service_name,
            &config.webhook_service_namespace,
        )?,
    });
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
        certificate = %config.webhook_cert_dir.as_ref().map_or_else(|| "generated".to_owned(), |d| d.display().to_string()),
        "serving admission webhooks on /validate/<binding> and /mutate/<binding>"
    );
    let watched = Arc::clone(&certificate);
    let reloads = stop.clone();
    tokio::spawn(async move { watched.watch(reloads).await });
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
    Arc::new(move |live: LiveBinding, stop: Shutdown| {
        let name = live.name().to_owned();
        reconcile::run(
            client.clone(),
            live,
            settings.clone(),
            Arc::clone(&metrics),
            Arc::clone(&servers),
            stop,
        )
        .map(move |result| {
            if let Err(error) = result {
                tracing::error!(binding = %name, %error, "controller failed");
            }
        })
        .boxed()
    })
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "wasm-operator".into());
    format!("{host}-{}", std::process::id())
}
