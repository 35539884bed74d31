//! What every test of the node starts with: the test API server, a namespace, and a node.

#![allow(dead_code)] // each test binary uses its own part of the support module

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::Value;
use test_apiserver::TestApiServer;
use test_node::{Config, TestNode};

/// A node on its own API server; the node is dropped (its processes killed) first.
pub struct Cluster {
    pub node: TestNode,
    pub client: Client,
    pub dir: PathBuf,
    pub server: TestApiServer,
}

impl Cluster {
    /// Starts an API server and a node working in a fresh directory named after the test.
    pub async fn start(name: &str) -> Self {
        Self::start_with(name, Config::default()).await
    }

    /// [`Cluster::start`] with the node's `config`.
    pub async fn start_with(name: &str, config: Config) -> Self {
        let server = TestApiServer::start()
            .await
            .expect("starting the API server");
        let client = server.client();
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("test-node-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let node = TestNode::start(client.clone(), &dir, config)
            .await
            .expect("starting the node");
        Self {
            node,
            client,
            dir,
            server,
        }
    }

    /// The Pods of `default`.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates an object of `default` from its JSON.
    pub async fn create<K>(&self, object: Value) -> K
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::<K>::namespaced(self.client.clone(), "default")
            .create(
                &PostParams::default(),
                &serde_json::from_value(object).expect("a valid object"),
            )
            .await
            .expect("creating an object")
    }

    /// Waits until the Pod `name` satisfies `check` and returns it.
    pub async fn pod_when(&self, name: &str, what: &str, check: impl Fn(&Pod) -> bool) -> Pod {
        let pods = self.pods();
        eventually(what, Duration::from_secs(60), || async {
            pods.get_opt(name).await.ok().flatten().filter(|p| check(p))
        })
        .await
    }
}

/// The condition `kind` of `pod` is `True`.
pub fn condition(pod: &Pod, kind: &str) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// An image the node can run: the official PostgreSQL image of the first major version
/// installed here.
pub fn image() -> String {
    let install = test_postgres::installs()
        .ok()
        .and_then(|all| all.into_iter().next())
        .expect("a PostgreSQL install (run scripts/install-postgres.sh)");
    format!("postgres:{}", install.major)
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
