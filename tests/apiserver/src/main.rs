//! `test-apiserver`: runs the test API server until Ctrl-C, for manual use with kubectl.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use test_apiserver::TestApiServer;

/// Test-only Kubernetes API server (HTTPS, any bearer token accepted).
#[derive(Parser)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, env = "TEST_APISERVER_PORT", default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig for this server here.
    #[arg(long, env = "TEST_APISERVER_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// CRD manifests (YAML or JSON) to register before serving.
    #[arg(long, num_args = 1..)]
    crd: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut builder = TestApiServer::builder().port(args.port);
    for path in &args.crd {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let crd: serde_json::Value =
            serde_saphyr::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        builder = builder.crd(crd);
    }
    let server = builder.start().await.context("starting the server")?;
    if let Some(path) = &args.kubeconfig {
        server
            .write_kubeconfig(path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("kubeconfig written to {}", path.display());
    }
    println!("test-apiserver listening on {}", server.url());
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
