//! The `wasm-operator` command line. Run `wasm-operator --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
mod operator;

use wasm_operator::runtime::{
    CallContext, Decision, EventType, Plugin, ReconcileInput, Runtime, RuntimeConfig,
};

/// A Kubernetes operator whose reconcile decisions are made by sandboxed
/// WebAssembly components.
#[derive(Debug, Parser)]
#[command(name = "wasm-operator", version, about)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, env = "WASM_OPERATOR_LOG_JSON", global = true)]
    log_json: bool,
    /// Where precompiled plugins are cached.
    #[arg(long, env = "WASM_OPERATOR_PLUGIN_CACHE_DIR", global = true)]
    plugin_cache_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the operator against the cluster of the current kubeconfig (or
    /// the in-cluster service account).
    Run(RunArgs),
    /// Prints the operator's CRDs as YAML (the files under `crds/`).
    Crd,
    /// Work with plugin components locally.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "WASM_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Reconcile every object at least this often, in seconds (drift repair).
    #[arg(long, env = "WASM_OPERATOR_RESYNC_SECONDS", default_value_t = 300)]
    resync_seconds: u64,
    /// Elect one leader among replicas through a Lease; only the leader reconciles.
    #[arg(long, env = "WASM_OPERATOR_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(
        long,
        env = "WASM_OPERATOR_LEASE_NAMESPACE",
        default_value = "wasm-operator"
    )]
    lease_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "WASM_OPERATOR_LEASE_NAME",
        default_value = "wasm-operator"
    )]
    lease_name: String,
    /// How long a leader's Lease stays valid without renewal, in seconds.
    #[arg(long, env = "WASM_OPERATOR_LEASE_SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// This replica's identity (default: $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Loads a component with the operator's checks and prints its description.
    Inspect {
        /// The `.wasm` component.
        file: PathBuf,
    },
    /// Runs one reconcile of a JSON object through a plugin and prints the decision.
    Reconcile {
        /// The `.wasm` component.
        file: PathBuf,
        /// The object to reconcile, as a JSON file.
        #[arg(long)]
        object: PathBuf,
        /// The binding's settings, as JSON.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let runtime = Runtime::new(&RuntimeConfig {
        cache_dir: cli.plugin_cache_dir,
        disable_pooling: false,
    })?;
    match cli.command {
        Command::Run(args) => operator::run(args, runtime).await?,
        Command::Crd => {
            for (file, crd) in wasm_operator::crd::all() {
                println!("# crds/{file}");
                println!("{}---", wasm_operator::crd::to_yaml(&crd)?);
            }
        }
        Command::Plugin(PluginCommand::Inspect { file }) => {
            let plugin = load(&runtime, &file).await?;
            let d = plugin.description();
            let kinds = |k: &[wasm_operator::runtime::ObjectKind]| {
                k.iter().map(ToString::to_string).collect::<Vec<_>>()
            };
            let report = json!({
                "name": d.name,
                "version": d.version,
                "digest": plugin.digest().to_string(),
                "witVersion": d.wit_version,
                "target": d.target.to_string(),
                "childKinds": kinds(&d.child_kinds),
                "readKinds": kinds(&d.read_kinds),
                "sql": d.wants_sql,
                "admission": d.offers_admission,
                "settingsSchema": d.settings_schema,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Plugin(PluginCommand::Reconcile {
            file,
            object,
            settings,
        }) => {
            let plugin = load(&runtime, &file).await?;
            let text = std::fs::read_to_string(&object)
                .with_context(|| format!("reading {}", object.display()))?;
            let object: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", object.display()))?;
            let settings: Value =
                serde_json::from_str(&settings).context("--settings is not JSON")?;
            let input = ReconcileInput {
                object,
                settings,
                ..ReconcileInput::default()
            };
            let decision = plugin.reconcile(&input, CallContext::none()).await?;
            println!(
                "{}",
                serde_json::to_string_pretty(&decision_json(&decision))?
            );
        }
    }
    Ok(())
}

async fn load(runtime: &Runtime, file: &PathBuf) -> anyhow::Result<Plugin> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    runtime
        .load(&bytes)
        .await
        .with_context(|| format!("loading {}", file.display()))
}

fn decision_json(decision: &Decision) -> Value {
    json!({
        "children": decision.children,
        "status": decision.status,
        "sql": decision.sql.iter().map(|plan| json!({
            "server": plan.server,
            "database": plan.database,
            "statements": plan.statements.iter().map(ToString::to_string).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "events": decision.events.iter().map(|e| json!({
            "type": match e.type_ { EventType::Normal => "Normal", EventType::Warning => "Warning" },
            "reason": e.reason,
            "note": e.note,
            "action": e.action,
        })).collect::<Vec<_>>(),
        "requeueAfterMs": decision.requeue_after.map(|d| d.as_millis() as u64),
    })
}
