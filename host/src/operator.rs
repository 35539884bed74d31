//! `wasm-operator run`: loads the plugin bindings and runs one controller
//! per plugin while this replica leads, with health and metrics endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use futures::future::Shared;
use kube::api::Api;
use kube::{Client, ResourceExt};
use tokio::sync::watch;
use wasm_operator::controller::{self, Settings};
use wasm_operator::crd::ReconcilerPlugin;
use wasm_operator::http::{self, HttpState, Readiness};
use wasm_operator::leader::{LeaderElector, LeaseConfig};
use wasm_operator::metrics::Metrics;
use wasm_operator::registry;
use wasm_operator::runtime::Runtime;

use crate::RunArgs;

/// A shutdown signal every task can hold a copy of.
type Shutdown = Shared<futures::future::BoxFuture<'static, ()>>;

fn signal(mut rx: watch::Receiver<bool>) -> Shutdown {
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared()
}

pub(crate) async fn run(args: RunArgs, runtime: Runtime) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot reach Kubernetes: set KUBECONFIG or run in a cluster")?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::not_ready("plugins are loading"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = signal(stop_rx.clone());

    let listener = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", args.http_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
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
    let leadership = if args.leader_election {
        let identity = args.identity.clone().unwrap_or_else(default_identity);
        let config = LeaseConfig::new(&args.lease_namespace, &args.lease_name, &identity)
            .lease_duration(Duration::from_secs(args.lease_seconds))
            .renew_period(Duration::from_secs((args.lease_seconds / 3).max(1)));
        let elector = LeaderElector::new(client.clone(), config)?;
        let leadership = elector.leadership();
        tokio::spawn(elector.run(stop.clone()));
        tracing::info!(%identity, lease = %format!("{}/{}", args.lease_namespace, args.lease_name), "leader election started");
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
        resync: Duration::from_secs(args.resync_seconds),
        ..Settings::default()
    };
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
        let term = signal(term_rx);
        let controllers =
            start_controllers(&client, &runtime, &settings, &metrics, term.clone()).await?;
        readiness.set_ready();
        tokio::select! {
            _ = leadership.wait_for(|leading| !*leading) => tracing::warn!("lost leadership: stopping controllers"),
            () = stop.clone() => {}
        }
        readiness.set_not_ready("not leading");
        let _ = term_tx.send(true);
        for task in controllers {
            let _ = task.await;
        }
    }
    let _ = http_task.await;
    Ok(())
}

async fn start_controllers(
    client: &Client,
    runtime: &Runtime,
    settings: &Settings,
    metrics: &Arc<Metrics>,
    stop: Shutdown,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let bindings: Api<ReconcilerPlugin> = Api::all(client.clone());
    let list = bindings
        .list(&Default::default())
        .await
        .context("cannot list ReconcilerPlugins: is the CRD installed (crds/)?")?;
    let mut tasks = Vec::new();
    for binding in list.items {
        let name = binding.name_any();
        let loaded = registry::load(client, runtime, &binding).await;
        if let Err(error) = registry::record_status(client, &binding, loaded.as_ref()).await {
            tracing::warn!(binding = %name, %error, "could not record the binding's status");
        }
        match loaded {
            Ok(plugin) => {
                let client = client.clone();
                let settings = settings.clone();
                let metrics = Arc::clone(metrics);
                let stop = stop.clone();
                tasks.push(tokio::spawn(async move {
                    if let Err(error) =
                        controller::run(client, plugin, settings, metrics, stop).await
                    {
                        tracing::error!(binding = %name, %error, "controller failed");
                    }
                }));
            }
            Err(error) => {
                metrics.record_plugin_rejection(&name, error.reason());
                tracing::error!(binding = %name, %error, "plugin binding refused");
            }
        }
    }
    Ok(tasks)
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "wasm-operator".into());
    format!("{host}-{}", std::process::id())
}
