//! `wasm-operator run`: while this replica leads, keeps one controller per
//! plugin binding on the binding's newest good version (see
//! [`wasm_operator::reload`]), with health and metrics endpoints.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use futures::FutureExt;
use kube::Client;
use tokio::sync::watch;
use wasm_operator::controller::{self, LiveBinding, Settings};
use wasm_operator::http::{self, HttpState, Readiness};
use wasm_operator::leader::{LeaderElector, LeaseConfig};
use wasm_operator::metrics::Metrics;
use wasm_operator::reload::{Reloader, Shutdown, StartController, shutdown_signal};
use wasm_operator::runtime::Runtime;
use wasm_operator::servers::ServerDirectory;

use crate::RunArgs;

pub(crate) async fn run(args: RunArgs, runtime: Runtime) -> anyhow::Result<()> {
    let client = Client::try_default()
        .await
        .context("cannot reach Kubernetes: set KUBECONFIG or run in a cluster")?;
    let metrics = Arc::new(Metrics::new());
    let readiness = Arc::new(Readiness::not_ready("plugins are loading"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop = shutdown_signal(stop_rx.clone());

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
        resync: Duration::from_secs_f64(args.resync_seconds.max(0.01)),
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
        controller::run(
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
