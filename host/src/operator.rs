//! `wasm-operator run`: while this replica leads, keeps one controller per
//! binding on the binding's newest good version (see [`crate::binding`]),
//! with health and metrics endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kube::Client;
use tokio::sync::watch;

use crate::binding::{
    LiveBinding, ReloadError, Reloader, Shutdown, StartController, shutdown_signal,
};
use crate::http::{self, HttpState, Readiness};
use crate::leader::{LeaderElector, LeaderError, LeaseConfig};
use crate::metrics::Metrics;
use crate::postgres::ServerDirectory;
use crate::reconcile::{self, Settings};
use crate::runtime::Runtime;

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
}

/// Why the operator stopped before it was asked to.
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
    /// Leader election could not be set up.
    #[error(transparent)]
    Leader(#[from] LeaderError),
    /// The bindings could not be watched.
    #[error(transparent)]
    Reload(#[from] ReloadError),
}

/// Runs the operator until Ctrl-C: reconciles in flight finish first.
///
/// # Errors
/// An [`OperatorError`] when it cannot start.
pub async fn run(config: Config, runtime: Runtime) -> Result<(), OperatorError> {
    let client = Client::try_default().await.map_err(OperatorError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::not_ready("plugins are loading"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = shutdown_signal(stop_rx.clone());

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
        stop.clone(),
    ));

    // Without leader election this replica always leads; the sender is kept
    // for the whole run so the receiver never reports it gone.
    let (_always_leading, always) = watch::channel(true);
    let leadership = if config.leader_election {
        let identity = config.identity.clone().unwrap_or_else(default_identity);
        let lease_seconds = config.lease_duration.as_secs();
        let lease = LeaseConfig::new(&config.lease_namespace, &config.lease_name, &identity)
            .lease_duration(config.lease_duration)
            .renew_period(Duration::from_secs((lease_seconds / 3).max(1)));
        let elector = LeaderElector::new(client.clone(), lease)?;
        let leadership = elector.leadership();
        tokio::spawn(elector.run(stop.clone()));
        tracing::info!(%identity, lease = %format!("{}/{}", config.lease_namespace, config.lease_name), "leader election started");
        leadership
    } else {
        always
    };

    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: reconciles in flight finish first");
        let _ = stop_tx.send(true);
    });

    let settings = Settings {
        resync: config.resync,
        ..Settings::default()
    };
    let servers = ServerDirectory::new(client.clone());
    let runtime = Arc::new(runtime);
    let mut leadership = leadership;
    loop {
        if *stop_rx.borrow() {
            break;
        }
        // Wait to lead (or to stop).
        tokio::select! {
            changed = leadership.wait_for(|leading| *leading) => { if changed.is_err() { break; } }
            () = stop.clone() => break,
        }
        tracing::info!("leading: starting controllers");
        let (term_tx, term_rx) = watch::channel(false);
        let term = shutdown_signal(term_rx);
        let reloader = Reloader::new(
            client.clone(),
            Arc::clone(&runtime),
            Arc::clone(&metrics),
            &settings.reporter,
            controller_starter(&client, &settings, &metrics, &servers),
        );
        let reloading = reloader.start(term).await?;
        readiness.set_ready();
        tokio::select! {
            _ = leadership.wait_for(|leading| !*leading) => tracing::warn!("lost leadership: stopping controllers"),
            () = stop.clone() => {}
        }
        readiness.set_not_ready("not leading");
        let _ = term_tx.send(true);
        let _ = reloading.await;
    }
    let _ = http_task.await;
    Ok(())
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
