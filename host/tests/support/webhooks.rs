//! Reviews sent straight to the operator's webhook server over HTTPS, as
//! the API server sends them: the CA of the Secret the operator keeps, a
//! keep-alive connection, and a paced load that records every answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::cluster::{Cluster, Operator, free_port};

/// The operator's namespace in the tests.
pub const OPERATOR_NAMESPACE: &str = "wasm-operator";
/// The webhook Service the configurations point at.
pub const SERVICE: &str = "wasm-operator-webhook";
/// The Secret holding the CA and the serving certificate.
pub const SECRET: &str = "wasm-operator-webhook-tls";

/// Starts the operator (one replica) serving its webhooks on a free
/// loopback address, which the API server reaches through the Service
/// [`SERVICE`] as cluster DNS and kube-proxy would route it; the operator,
/// that address and the CA it serves once its Secret exists.
pub async fn serve(cluster: &Cluster, limit: Duration) -> (Operator, String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    cluster
        .server
        .set_service_address(OPERATOR_NAMESPACE, SERVICE, 443, addr.parse().unwrap());
    let operator = cluster.start_operator(&[
        "--leader-election=false",
        "--webhook-addr",
        &addr,
        "--lease-namespace",
        OPERATOR_NAMESPACE,
    ]);
    let ca = shared_ca(&cluster.client(), limit).await;
    (operator, addr, ca)
}

/// The CA bundle of the Secret the operators share, once it exists.
pub async fn shared_ca(client: &Client, limit: Duration) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), OPERATOR_NAMESPACE);
    super::cluster::eventually("the webhook TLS Secret", limit, || async {
        let secret = secrets.get_opt(SECRET).await.ok()??;
        let ca = secret.data?.get("ca.crt")?.0.clone();
        String::from_utf8(ca).ok()
    })
    .await
}

/// An `admission.k8s.io/v1` AdmissionReview of `operation` on `object`, with
/// the fields the API server sends.
pub fn review(operation: &str, object: &Value, resource: (&str, &str, &str)) -> Vec<u8> {
    let (group, version, plural) = resource;
    let kind = json!({"group": group, "version": version, "kind": object["kind"]});
    let resource = json!({"group": group, "version": version, "resource": plural});
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "bench-uid",
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": object["metadata"]["name"],
            "namespace": object["metadata"]["namespace"],
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }))
    .unwrap()
}

/// One HTTPS connection to the webhook server, kept alive between reviews
/// as the API server's client keeps it.
pub struct Connection {
    tls: TlsStream<TcpStream>,
    host: String,
    buffer: Vec<u8>,
}

impl Connection {
    /// Connects to `addr`, trusting `ca_pem`, verifying the name the
    /// configurations use (`<service>.<namespace>.svc`).
    pub async fn open(addr: &str, ca_pem: &str) -> std::io::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(std::io::Error::other)?)
                .map_err(std::io::Error::other)?;
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::try_from(format!("{SERVICE}.{OPERATOR_NAMESPACE}.svc"))
            .map_err(std::io::Error::other)?;
        let tls = connector.connect(name, tcp).await?;
        Ok(Self {
            tls,
            host: addr.to_owned(),
            buffer: Vec::new(),
        })
    }

    /// POSTs `body` to `path`; the status and the response body.
    pub async fn post(&mut self, path: &str, body: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.tls.write_all(head.as_bytes()).await?;
        self.tls.write_all(body).await?;
        self.tls.flush().await?;
        let end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no status in {head:?}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| std::io::Error::other(format!("no Content-Length in {head:?}")))?;
        while self.buffer.len() < end + 4 + length {
            self.fill().await?;
        }
        let body = self.buffer[end + 4..end + 4 + length].to_vec();
        self.buffer.drain(..end + 4 + length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.tls.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buffer.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// One review of a paced load.
#[derive(Debug)]
pub struct Sample {
    /// When it was due to be sent.
    pub due: Instant,
    /// From when it was due until its answer was read (a late start
    /// counts: no coordinated omission).
    pub latency: Duration,
    /// The `response` of the answer, or why there was none (a connection
    /// error, or a status other than 200).
    pub response: Result<Value, String>,
}

/// Sends `rate` reviews per second for `duration` to `path`, spread over
/// `connections` keep-alive connections; every sample, in no set order.
/// A broken connection is reopened; its review counts as failed.
pub async fn paced(
    addr: &str,
    ca_pem: &str,
    path: &str,
    body: Arc<Vec<u8>>,
    rate: u32,
    duration: Duration,
    connections: usize,
) -> Vec<Sample> {
    let total = (f64::from(rate) * duration.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / f64::from(rate));
    let start = Instant::now() + Duration::from_millis(50);
    let tasks: Vec<_> = (0..connections)
        .map(|lane| {
            let (addr, ca_pem, path, body) = (
                addr.to_owned(),
                ca_pem.to_owned(),
                path.to_owned(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut samples = Vec::new();
                let mut connection = Connection::open(&addr, &ca_pem).await.ok();
                for i in (lane..total).step_by(connections) {
                    let due = start + interval * i as u32;
                    tokio::time::sleep_until(due.into()).await;
                    if connection.is_none() {
                        connection = Connection::open(&addr, &ca_pem).await.ok();
                    }
                    let response = match connection.as_mut() {
                        None => Err("cannot connect".to_owned()),
                        Some(c) => match c.post(&path, &body).await {
                            Ok((200, body)) => serde_json::from_slice::<Value>(&body)
                                .map(|r| r["response"].clone())
                                .map_err(|e| e.to_string()),
                            Ok((status, body)) => {
                                Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
                            }
                            Err(e) => {
                                connection = None;
                                Err(e.to_string())
                            }
                        },
                    };
                    samples.push(Sample {
                        due,
                        latency: due.elapsed(),
                        response,
                    });
                }
                samples
            })
        })
        .collect();
    let mut samples = Vec::with_capacity(total);
    for task in tasks {
        samples.extend(task.await.expect("a load task"));
    }
    samples
}

/// The `q` quantile (0..=1) of `latencies`, sorted here.
pub fn quantile(latencies: &mut [Duration], q: f64) -> Duration {
    latencies.sort_unstable();
    let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
    latencies.get(index).copied().unwrap_or_default()
}
