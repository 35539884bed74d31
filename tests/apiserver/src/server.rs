//! [`TestApiServer`]: binds HTTPS on a local port, preloads namespaces and CRDs, and hands
//! out a `kube::Client`, a kubeconfig and the fault-injection handle.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::Error;
use crate::admission::Services;
use crate::faults::{FaultState, Faults};
use crate::rbac::{ADMIN_TOKEN, Tokens};
use crate::store::Store;
use crate::tls::Certificates;
use crate::writes::{self, Target, WriteOptions};

/// Shared state behind every request.
pub struct Api {
    /// Objects, history and watches.
    pub store: Store,
    /// Fault-injection settings.
    pub faults: FaultState,
    /// `host:port` clients reach the server at.
    pub address: String,
    /// Where webhooks' `clientConfig.service` entries listen (there is no cluster DNS).
    pub services: Services,
    /// Whether non-admin callers are authorized against the stored RBAC objects.
    pub enforce_rbac: bool,
    /// Bearer tokens minted for ServiceAccounts.
    pub tokens: Tokens,
}

/// Settings for [`TestApiServer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct Builder {
    addr: SocketAddr,
    history_limit: usize,
    crds: Vec<Value>,
    services: Vec<((String, String, u16), SocketAddr)>,
    enforce_rbac: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            history_limit: 10_000,
            crds: Vec::new(),
            services: Vec::new(),
            enforce_rbac: false,
        }
    }
}

impl Builder {
    /// Listen on this port of 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Self {
        self.addr.set_port(port);
        self
    }

    /// Watch events kept per resource for resuming watches (default 10 000); older
    /// resourceVersions get `410 Expired`.
    pub fn history_limit(mut self, limit: usize) -> Self {
        self.history_limit = limit.max(1);
        self
    }

    /// A CustomResourceDefinition (as JSON) to register before serving.
    pub fn crd(mut self, crd: Value) -> Self {
        self.crds.push(crd);
        self
    }

    /// Resolves the Service `name` in `namespace`, port `port`, to `address` when a webhook's
    /// `clientConfig.service` names it (see [`TestApiServer::set_service_address`]).
    pub fn service_address(
        mut self,
        namespace: &str,
        name: &str,
        port: u16,
        address: SocketAddr,
    ) -> Self {
        self.services
            .push(((namespace.into(), name.into(), port), address));
        self
    }

    /// Enforce RBAC (default off): requests with a token from
    /// [`TestApiServer::service_account_token`] (or the kubeconfig/client minted for a
    /// ServiceAccount) are authorized against the stored Roles, ClusterRoles, RoleBindings
    /// and ClusterRoleBindings as the real RBAC authorizer does, and denied with the real
    /// `403 Forbidden` message. The admin client stays unrestricted; tokens the server did
    /// not mint get `401 Unauthorized`.
    pub fn enforce_rbac(mut self, enforce: bool) -> Self {
        self.enforce_rbac = enforce;
        self
    }

    /// Generates certificates, binds, preloads and starts serving.
    ///
    /// # Errors
    /// Certificate, bind, client or preload failures.
    pub async fn start(self) -> Result<TestApiServer, Error> {
        let certs = Certificates::generate()?;
        let tls = tokio_rustls::TlsAcceptor::from(certs.server_config()?);
        let listener = TcpListener::bind(self.addr)
            .await
            .map_err(|e| Error::Bind(self.addr.to_string(), e))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Bind(self.addr.to_string(), e))?;
        let api = Arc::new(Api {
            store: Store::new(self.history_limit),
            faults: FaultState::default(),
            address: local.to_string(),
            services: Mutex::new(self.services.into_iter().collect()),
            enforce_rbac: self.enforce_rbac,
            tokens: Tokens::default(),
        });
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            preload(
                &api,
                "",
                "v1",
                "namespaces",
                json!({ "metadata": { "name": ns } }),
            )
            .await?;
        }
        for crd in self.crds {
            preload(
                &api,
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                crd,
            )
            .await?;
        }
        let (shutdown, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(serve(listener, tls, api.clone(), stopped));
        let url = format!("https://{local}");
        let kubeconfig_yaml = kubeconfig_yaml(&url, &certs.ca_pem, "test-user", ADMIN_TOKEN);
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig_yaml)?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig.clone(),
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        let client = kube::Client::try_from(config)?;
        Ok(TestApiServer {
            api,
            shutdown,
            url,
            ca_pem: certs.ca_pem,
            kubeconfig,
            kubeconfig_yaml,
            client,
            task,
        })
    }
}

async fn preload(
    api: &Api,
    group: &str,
    version: &str,
    plural: &str,
    object: Value,
) -> Result<(), Error> {
    let rt = api
        .store
        .lock()
        .registry
        .get(group, version, plural)
        .expect("built-in type");
    let target = Target {
        rt,
        namespace: String::new(),
        name: String::new(),
        status: false,
    };
    let opts = WriteOptions {
        manager: "test-apiserver".into(),
        ..WriteOptions::default()
    };
    writes::create(api, &target, object, &opts)
        .await
        .map(drop)
        .map_err(Error::Preload)
}

async fn serve(
    listener: TcpListener,
    tls: tokio_rustls::TlsAcceptor,
    api: Arc<Api>,
    stopped: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let tls = tls.clone();
        let api = api.clone();
        let mut stopped = stopped.clone();
        tokio::spawn(async move {
            let Ok(stream) = tls.accept(tcp).await else {
                return;
            };
            let service = service_fn(move |request| crate::http::handle(api.clone(), request));
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // Dropping the connection when the server is dropped closes it, watches included.
            tokio::select! {
                _ = connection => {}
                _ = stopped.wait_for(|stop| *stop) => {}
            }
        });
    }
}

fn kubeconfig_yaml(url: &str, ca_pem: &str, user: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test-apiserver\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\n\
         users:\n- name: {user}\n  user:\n    token: {token}\n\
         contexts:\n- name: test-apiserver\n  context:\n    cluster: test-apiserver\n    user: {user}\n    namespace: default\n\
         current-context: test-apiserver\npreferences: {{}}\n"
    )
}

/// A running test API server. Serving stops when it is dropped.
pub struct TestApiServer {
    api: Arc<Api>,
    shutdown: tokio::sync::watch::Sender<bool>,
    url: String,
    ca_pem: String,
    kubeconfig: kube::config::Kubeconfig,
    kubeconfig_yaml: String,
    client: kube::Client,
    task: JoinHandle<()>,
}

impl TestApiServer {
    /// Starts a server on `127.0.0.1:0` with the built-in kinds and the usual namespaces.
    ///
    /// # Errors
    /// See [`Builder::start`].
    pub async fn start() -> Result<Self, Error> {
        Builder::default().start().await
    }

    /// Settings: port, history size, CRDs to preload.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// PEM of the CA that signed the serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A client for this server (TLS verified against the generated CA, bearer token auth).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// A kubeconfig pointing at this server (context `test-apiserver`, namespace `default`).
    pub fn kubeconfig(&self) -> kube::config::Kubeconfig {
        self.kubeconfig.clone()
    }

    /// Writes the kubeconfig as YAML (for a child process or kubectl).
    ///
    /// # Errors
    /// [`Error::WriteKubeconfig`] on I/O failure.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, &self.kubeconfig_yaml).map_err(|source| Error::WriteKubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A bearer token that authenticates as `system:serviceaccount:<namespace>:<name>`
    /// (groups `system:serviceaccounts`, `system:serviceaccounts:<namespace>`,
    /// `system:authenticated`). The ServiceAccount object need not exist. Its requests are
    /// authorized by RBAC when the server was built with [`Builder::enforce_rbac`].
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        self.api.tokens.mint(namespace, name)
    }

    /// A kubeconfig (YAML) like [`Self::kubeconfig`] but authenticating as the
    /// ServiceAccount (see [`Self::service_account_token`]), with `namespace` as its default
    /// namespace: for running the operator binary as its ServiceAccount.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> String {
        let token = self.service_account_token(namespace, name);
        kubeconfig_yaml(&self.url, &self.ca_pem, name, &token).replace(
            "    namespace: default\n",
            &format!("    namespace: {namespace}\n"),
        )
    }

    /// Writes [`Self::service_account_kubeconfig`] to `path`.
    ///
    /// # Errors
    /// [`Error::WriteKubeconfig`] on I/O failure.
    pub fn write_service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
        path: &Path,
    ) -> Result<(), Error> {
        std::fs::write(path, self.service_account_kubeconfig(namespace, name)).map_err(|source| {
            Error::WriteKubeconfig {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// A `kube::Client` authenticating as the ServiceAccount.
    ///
    /// # Errors
    /// The generated kubeconfig or client could not be built.
    pub async fn service_account_client(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<kube::Client, Error> {
        let kubeconfig =
            kube::config::Kubeconfig::from_yaml(&self.service_account_kubeconfig(namespace, name))?;
        let config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await?;
        Ok(kube::Client::try_from(config)?)
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        Faults::new(self.api.clone())
    }

    /// Resolves the Service `name` in `namespace`, port `port` (443 when a webhook's
    /// `clientConfig.service.port` is unset), to `address` for webhook calls. The call
    /// verifies the webhook's certificate for `<name>.<namespace>.svc` against `caBundle`,
    /// as the real API server does through cluster DNS. An unmapped Service is a call
    /// failure ("no such host").
    pub fn set_service_address(&self, namespace: &str, name: &str, port: u16, address: SocketAddr) {
        self.api
            .services
            .lock()
            .expect("services lock")
            .insert((namespace.into(), name.into(), port), address);
    }
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = self.shutdown.send(true);
        self.api.store.lock().drop_watchers();
    }
}
