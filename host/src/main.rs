//! The `wasm-operator` command line. Run `wasm-operator --help`.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use wasm_operator::operator;
use wasm_operator::publish::{self, Publication};
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
    /// Work with plugin components: inspect and try them locally, push them
    /// to a cluster.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Prints the least-privilege RBAC (ClusterRole and bindings) the
    /// operator needs: for its own work without BINDINGS, else for the
    /// ReconcilerPlugins in the BINDINGS files, derived from their grants
    /// and their plugins' `describe` (the files under `deploy/`).
    Rbac(RbacArgs),
}

#[derive(Debug, clap::Args)]
struct RbacArgs {
    /// YAML files with ReconcilerPlugin documents (other documents are skipped).
    bindings: Vec<PathBuf>,
    /// Name of the ClusterRole, its binding (and, without BINDINGS, the Role).
    #[arg(long, default_value = "wasm-operator")]
    name: String,
    /// Where the components of ConfigMap sources are, as `<ConfigMap name>.wasm`.
    #[arg(long, default_value = "target/plugins")]
    plugins_dir: PathBuf,
    /// The operator's ServiceAccount, `namespace/name`.
    #[arg(long, default_value = "wasm-operator/wasm-operator")]
    service_account: String,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "WASM_OPERATOR_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    http_addr: std::net::SocketAddr,
    /// Reconcile every object at least this often, in seconds (drift repair;
    /// fractions allowed).
    #[arg(long, env = "WASM_OPERATOR_RESYNC_SECONDS", default_value_t = 300.0)]
    resync_seconds: f64,
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
    /// After SIGTERM or SIGINT, how long reconciles in flight get to finish
    /// before they are cut, in seconds; the Lease is released after them.
    /// Keep it below the Pod's terminationGracePeriodSeconds minus 5 s.
    #[arg(long, env = "WASM_OPERATOR_SHUTDOWN_GRACE_SECONDS", default_value_t = operator::DEFAULT_SHUTDOWN_GRACE.as_secs_f64())]
    shutdown_grace_seconds: f64,
    /// Address of the admission webhooks (HTTPS), served by every replica.
    #[arg(
        long,
        env = "WASM_OPERATOR_WEBHOOK_ADDR",
        default_value = "0.0.0.0:9443"
    )]
    webhook_addr: std::net::SocketAddr,
    /// Directory with tls.crt and tls.key for the webhooks (e.g. a mounted
    /// cert-manager Secret), reloaded when they change; caBundle is then
    /// left to whoever made them (see --webhook-cert-manager-certificate).
    /// Without it the replicas share a CA and serving certificate for the
    /// webhook Service through the Secret --webhook-secret-name.
    #[arg(long, env = "WASM_OPERATOR_WEBHOOK_CERT_DIR")]
    webhook_cert_dir: Option<PathBuf>,
    /// Name of the Service in front of the webhooks.
    #[arg(
        long,
        env = "WASM_OPERATOR_WEBHOOK_SERVICE_NAME",
        default_value = "wasm-operator-webhook"
    )]
    webhook_service_name: String,
    /// Namespace of that Service (default: the Lease namespace).
    #[arg(long, env = "WASM_OPERATOR_WEBHOOK_SERVICE_NAMESPACE")]
    webhook_service_namespace: Option<String>,
    /// Port of that Service, as the webhook configurations name it.
    #[arg(
        long,
        env = "WASM_OPERATOR_WEBHOOK_SERVICE_PORT",
        default_value_t = 443
    )]
    webhook_service_port: u16,
    /// Secret (in the Lease namespace, the operator's) holding the shared
    /// webhook CA and serving certificate; created by the first replica.
    #[arg(
        long,
        env = "WASM_OPERATOR_WEBHOOK_SECRET_NAME",
        default_value = "wasm-operator-webhook-tls"
    )]
    webhook_secret_name: String,
    /// Lifetime of a generated serving certificate, in seconds; the leader
    /// renews it at two thirds of it (the CA lives ten times longer).
    #[arg(long, env = "WASM_OPERATOR_WEBHOOK_CERT_LIFETIME_SECONDS", default_value_t = wasm_operator::admission::certificates::DEFAULT_LIFETIME.as_secs())]
    webhook_cert_lifetime_seconds: u64,
    /// With --webhook-cert-dir: the cert-manager Certificate
    /// (namespace/name) whose CA cert-manager's CA injector puts into the
    /// webhook configurations (annotation cert-manager.io/inject-ca-from).
    #[arg(
        long,
        env = "WASM_OPERATOR_WEBHOOK_CERT_MANAGER_CERTIFICATE",
        requires = "webhook_cert_dir"
    )]
    webhook_cert_manager_certificate: Option<String>,
}

impl From<RunArgs> for operator::Config {
    fn from(args: RunArgs) -> Self {
        let webhook_service_namespace = args
            .webhook_service_namespace
            .unwrap_or_else(|| args.lease_namespace.clone());
        Self {
            http_addr: args.http_addr,
            resync: std::time::Duration::from_secs_f64(args.resync_seconds.max(0.01)),
            leader_election: args.leader_election,
            lease_namespace: args.lease_namespace,
            lease_name: args.lease_name,
            lease_duration: std::time::Duration::from_secs(args.lease_seconds),
            identity: args.identity,
            shutdown_grace: std::time::Duration::try_from_secs_f64(
                args.shutdown_grace_seconds.max(0.0),
            )
            .unwrap_or(std::time::Duration::MAX),
            webhook_addr: args.webhook_addr,
            webhook_cert_dir: args.webhook_cert_dir,
            webhook_service_name: args.webhook_service_name,
            webhook_service_namespace,
            webhook_service_port: args.webhook_service_port,
            webhook_secret_name: args.webhook_secret_name,
            webhook_cert_lifetime: std::time::Duration::from_secs(
                args.webhook_cert_lifetime_seconds.max(3),
            ),
            webhook_cert_manager_certificate: args.webhook_cert_manager_certificate,
        }
    }
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
        /// The binding's settings, as JSON, checked against the plugin's
        /// settings schema as the operator and `push` check them.
        #[arg(long, default_value = "{}")]
        settings: String,
    },
    /// Publishes a component in a ConfigMap (created or updated), after the
    /// operator's checks, run locally; with --bind, also binds it. Running
    /// operators swap it in.
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
struct PushArgs {
    /// The `.wasm` component.
    file: PathBuf,
    /// Name of the ConfigMap (and, with --bind, of the ReconcilerPlugin).
    #[arg(long)]
    name: String,
    /// Namespace of the ConfigMap; created when missing.
    #[arg(long, default_value = "wasm-operator")]
    namespace: String,
    /// Key of the ConfigMap's binaryData holding the component.
    #[arg(long, default_value = "plugin.wasm")]
    key: String,
    /// Also create or update the ReconcilerPlugin NAME so that it loads from this key.
    #[arg(long)]
    bind: bool,
    /// With --bind: pin the binding to this component's sha256.
    #[arg(long, requires = "bind")]
    pin: bool,
    /// The binding's settings as JSON, checked against the plugin's
    /// settings schema (and set in the binding with --bind).
    #[arg(long)]
    settings: Option<String>,
    /// With --bind: grant the binding exactly the reads and children the
    /// plugin requests in describe.
    #[arg(long, requires = "bind")]
    grant_requested: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_json);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", cli::report::one_line(&error));
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
        Command::Run(args) => operator::run(args.into(), runtime).await?,
        Command::Crd => {
            for (file, crd) in wasm_operator::crd::all() {
                println!("# crds/{file}");
                println!("{}---", wasm_operator::crd::to_yaml(&crd)?);
            }
        }
        Command::Plugin(PluginCommand::Inspect { file }) => {
            let plugin = load(&runtime, &file).await?;
            let d = plugin.description();
            let kinds = |k: &[wasm_operator::vocabulary::ObjectKind]| {
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
            let settings: Value =
                serde_json::from_str(&settings).context("--settings is not JSON")?;
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            // The checks `push` and the operator make, settings included.
            let plugin = publish::check(&runtime, &bytes, Some(&settings))
                .await
                .with_context(|| format!("refusing to reconcile with {}", file.display()))?;
            let text = std::fs::read_to_string(&object)
                .with_context(|| format!("reading {}", object.display()))?;
            let object: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", object.display()))?;
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
        Command::Plugin(PluginCommand::Push(args)) => push(&runtime, args).await?,
        Command::Rbac(args) => {
            let (namespace, name) = args.service_account.split_once('/').ok_or_else(|| {
                anyhow::anyhow!(
                    "--service-account {:?}: expected namespace/name",
                    args.service_account
                )
            })?;
            let account = wasm_operator::rbac::ServiceAccount {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            };
            let yaml = wasm_operator::rbac::manifests(
                &runtime,
                &args.bindings,
                &args.plugins_dir,
                &args.name,
                &account,
            )
            .await?;
            print!("{yaml}");
        }
    }
    Ok(())
}

/// Checks the component locally first: nothing reaches the cluster unless
/// the operator would load it.
async fn push(runtime: &Runtime, args: PushArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let settings: Option<Value> = args
        .settings
        .as_deref()
        .map(serde_json::from_str)
        .transpose()
        .context("--settings is not JSON")?;
    let plugin = publish::check(runtime, &bytes, settings.as_ref())
        .await
        .with_context(|| format!("refusing to push {}", args.file.display()))?;
    let client = kube::Client::try_default()
        .await
        .context("cannot reach Kubernetes: set KUBECONFIG or run in a cluster")?;
    let namespace = cli::namespace::ensure(&client, &args.namespace).await?;
    if namespace == cli::namespace::Ensured::Created {
        eprintln!("created namespace {}", args.namespace);
    }
    let publication = Publication {
        name: args.name,
        namespace: args.namespace,
        key: args.key,
        bind: args.bind,
        pin: args.pin,
        settings,
        grant_requested: args.grant_requested,
    };
    let published = publish::publish(&client, &plugin, &bytes, &publication)
        .await
        .with_context(|| format!("pushing {}", args.file.display()))?;
    let d = plugin.description();
    let report = json!({
        "plugin": d.name,
        "version": d.version,
        "target": d.target.to_string(),
        "digest": published.digest.to_string(),
        "configMap": format!("{}/{}", publication.namespace, publication.name),
        "namespaceCreated": namespace == cli::namespace::Ensured::Created,
        "key": publication.key,
        "bindings": published.bindings,
    });
    println!("{}", serde_json::to_string_pretty(&report)?);
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
        "children": decision.children.iter().map(|c| &c.object).collect::<Vec<_>>(),
        "status": decision.status,
        "sql": decision.sql.iter().map(|plan| json!({
            "server": plan.server.to_string(),
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
