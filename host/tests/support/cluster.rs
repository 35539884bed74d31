//! A test cluster for end-to-end tests: the test API server with CRDs and
//! namespaces, and the real `wasm-operator` binary running against it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

/// The running operator process; killed when dropped.
pub struct Operator {
    child: Child,
    /// Address of its /healthz, /readyz and /metrics endpoints.
    pub http: String,
}

impl Operator {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (no graceful shutdown, no Lease release).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A free loopback `--webhook-addr` for this build of the operator, unless
/// the test chose one: operators of one test run side by side, and the
/// default `0.0.0.0:9443` would be taken by the first. Other builds (a
/// benchmark's baseline) may not know the flag and get none.
/// The test API server with a kubeconfig for the operator.
pub struct Cluster {
    /// The API server.
    pub server: TestApiServer,
    /// Its kubeconfig file.
    pub kubeconfig: PathBuf,
}

impl Cluster {
    /// Starts an API server serving `crds`, with `namespaces` created
    /// (`default` exists already).
    pub async fn start(name: &str, crds: Vec<Value>, namespaces: &[&str]) -> Self {
        Self::start_with(TestApiServer::builder(), name, crds, namespaces).await
    }

    /// Starts an API server as [`Cluster::start`] does, but one that
    /// enforces RBAC: ServiceAccounts get only what the stored roles allow
    /// (the admin client stays unrestricted).
    pub async fn start_enforcing_rbac(name: &str, crds: Vec<Value>, namespaces: &[&str]) -> Self {
        Self::start_with(
            TestApiServer::builder().enforce_rbac(true),
            name,
            crds,
            namespaces,
        )
        .await
    }

    async fn start_with(
        mut builder: test_apiserver::Builder,
        name: &str,
        crds: Vec<Value>,
        namespaces: &[&str],
    ) -> Self {
        for crd in crds {
            builder = builder.crd(crd);
        }
        let server = builder.start().await.unwrap();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("e2e-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig).unwrap();
        let cluster = Self { server, kubeconfig };
        // The operator's own namespace (the default Lease namespace) always
        // exists in a cluster it is installed in: it keeps its webhook
        // certificate Secret there.
        for ns in std::iter::once(&"wasm-operator").chain(namespaces) {
            match Api::<Namespace>::all(cluster.client())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
                )
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => panic!("creating namespace {ns}: {error}"),
            }
        }
        cluster
    }

    /// A cluster serving the example's `Greeting` CRD and the
    /// `ReconcilerPlugin` CRD, with `namespaces` created.
    pub async fn with_greetings(name: &str, namespaces: &[&str]) -> Self {
        let greeting_crd: Value = serde_saphyr::from_str(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../plugins/example/greeting-crd.yaml"
            ))
            .expect("reading the Greeting CRD"),
        )
        .expect("the Greeting CRD is YAML");
        let binding_crd = wasm_operator::crd::all()
            .remove("reconcilerplugins.yaml")
            .expect("the ReconcilerPlugin CRD");
        let crds = vec![greeting_crd, serde_json::to_value(binding_crd).unwrap()];
        Self::start(name, crds, namespaces).await
    }

    /// A cluster serving every CRD the operator installs (`crds/`), with
    /// `namespaces` created.
    pub async fn with_operator_crds(name: &str, namespaces: &[&str]) -> Self {
        let crds = wasm_operator::crd::all()
            .into_values()
            .map(|crd| serde_json::to_value(crd).unwrap())
            .collect();
        Self::start(name, crds, namespaces).await
    }

    /// A client of the API server.
    pub fn client(&self) -> Client {
        self.server.client()
    }

    /// Writes a kubeconfig that authenticates as the ServiceAccount
    /// `namespace/name` (next to the admin one) and returns its path.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let path = self
            .kubeconfig
            .with_file_name(format!("kubeconfig-{namespace}-{name}"));
        self.server
            .write_service_account_kubeconfig(namespace, name, &path)
            .expect("writing the ServiceAccount's kubeconfig");
        path
    }

    /// `--webhook-addr` on a free port for this build of the operator
    /// (unless `extra` names one), with its Service mapped there: the
    /// webhooks the operator registers name the Service, and the API server
    /// reaches it where cluster DNS and kube-proxy would send it.
    fn webhook_args(&self, binary: &std::path::Path, extra: &[&str]) -> Vec<String> {
        let this_build: &std::path::Path = env!("CARGO_BIN_EXE_wasm-operator").as_ref();
        if binary != this_build || extra.iter().any(|a| a.starts_with("--webhook-addr")) {
            return Vec::new();
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        self.server
            .set_service_address("wasm-operator", "wasm-operator-webhook", 443, addr);
        vec!["--webhook-addr".into(), addr.to_string()]
    }

    /// Starts the operator (`wasm-operator run`) with extra arguments.
    pub fn start_operator(&self, extra: &[&str]) -> Operator {
        self.start_operator_binary(env!("CARGO_BIN_EXE_wasm-operator").as_ref(), extra)
    }

    /// Starts another build of the operator, as [`Cluster::start_operator`]
    /// does (the benchmarks compare a baseline build this way).
    pub fn start_operator_binary(&self, binary: &std::path::Path, extra: &[&str]) -> Operator {
        let port = free_port();
        let webhooks = self.webhook_args(binary, extra);
        let child = Command::new(binary)
            .env("KUBECONFIG", &self.kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info,wasm_operator=debug".into()),
            )
            .args([
                "--plugin-cache-dir",
                concat!(env!("CARGO_TARGET_TMPDIR"), "/e2e-plugin-cache"),
            ])
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(&webhooks)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting wasm-operator");
        Operator {
            child,
            http: format!("127.0.0.1:{port}"),
        }
    }
}

/// The `events.k8s.io/v1` Events of `namespace`, as the operator records them.
pub fn events(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        namespace,
        &ApiResource::from_gvk(&GroupVersionKind::gvk("events.k8s.io", "v1", "Event")),
    )
}

/// Polls until `check` returns `Some`, or fails the test after `limit`.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The operator's metrics text; panics when it cannot be scraped.
pub async fn scrape(addr: &str) -> String {
    try_scrape(addr)
        .await
        .unwrap_or_else(|| panic!("cannot scrape {addr}/metrics"))
}

/// The operator's metrics text, or `None` while it does not serve them yet.
pub async fn try_scrape(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: operator\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    Some(body)
}

/// The sum of the samples whose line starts with `series`.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(series))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

impl Operator {
    /// Sends the process a signal (`TERM`, `INT`), as the kubelet or a
    /// terminal would.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -s {signal} {} failed", self.pid());
    }

    /// Waits for the process to exit by itself; fails the test after `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("polling the operator") {
                return status;
            }
            assert!(
                started.elapsed() < limit,
                "the operator did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The log of an operator started with [`Cluster::start_operator_logged`]:
/// its JSON lines as they arrive, each with its arrival time.
#[derive(Clone, Default)]
pub struct OperatorLog {
    lines: std::sync::Arc<std::sync::Mutex<Vec<(Instant, Value)>>>,
    closed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl OperatorLog {
    /// Waits until every line of an operator that exited has been read.
    pub fn wait_closed(&self) {
        while !self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The lines so far with a field (at any depth) whose text contains `text`.
    pub fn containing(&self, text: &str) -> Vec<Value> {
        fn has(value: &Value, text: &str) -> bool {
            match value {
                Value::String(s) => s.contains(text),
                Value::Array(items) => items.iter().any(|v| has(v, text)),
                Value::Object(fields) => fields.values().any(|v| has(v, text)),
                _ => false,
            }
        }
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| has(line, text))
            .map(|(_, line)| line.clone())
            .collect()
    }

    /// The lines so far whose `message` is `message`, with their arrival.
    pub fn find(&self, message: &str) -> Vec<(Instant, Value)> {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, line)| line["fields"]["message"] == message)
            .cloned()
            .collect()
    }
}

impl Cluster {
    /// Starts the operator as [`Cluster::start_operator`] does, logging
    /// JSON lines that the test can read (they are echoed to stderr too).
    pub fn start_operator_logged(&self, extra: &[&str]) -> (Operator, OperatorLog) {
        self.start_operator_logged_as(&self.kubeconfig, extra)
    }

    /// Starts the operator as [`Cluster::start_operator_logged`] does, with
    /// the credentials of `kubeconfig` (e.g. a ServiceAccount's, see
    /// [`Cluster::service_account_kubeconfig`]).
    pub fn start_operator_logged_as(
        &self,
        kubeconfig: &std::path::Path,
        extra: &[&str],
    ) -> (Operator, OperatorLog) {
        use std::io::BufRead;
        let port = free_port();
        let binary: &std::path::Path = env!("CARGO_BIN_EXE_wasm-operator").as_ref();
        let webhooks = self.webhook_args(binary, extra);
        let mut child = Command::new(binary)
            .env("KUBECONFIG", kubeconfig)
            .env(
                "RUST_LOG",
                std::env::var("E2E_LOG").unwrap_or_else(|_| "info,wasm_operator=debug".into()),
            )
            .args([
                "--log-json",
                "--plugin-cache-dir",
                concat!(env!("CARGO_TARGET_TMPDIR"), "/e2e-plugin-cache"),
            ])
            .args(["run", "--http-addr", &format!("127.0.0.1:{port}")])
            .args(&webhooks)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting wasm-operator");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = OperatorLog::default();
        let (lines, closed) = (
            std::sync::Arc::clone(&log.lines),
            std::sync::Arc::clone(&log.closed),
        );
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("{line}");
                if let Ok(value) = serde_json::from_str(&line) {
                    lines.lock().unwrap().push((Instant::now(), value));
                }
            }
            closed.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        let operator = Operator {
            child,
            http: format!("127.0.0.1:{port}"),
        };
        (operator, log)
    }
}
