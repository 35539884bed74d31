//! The health, readiness and metrics endpoints, over a real socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wasm_operator::http::{HttpError, HttpState, OPENMETRICS_CONTENT_TYPE, Readiness, serve};
use wasm_operator::metrics::{BindingLabels, Metrics, WriteVerb};

/// A server on a free port of 127.0.0.1, and how to stop it.
struct Running {
    address: SocketAddr,
    state: HttpState,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl Running {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("local address");
        let state = HttpState {
            metrics: Arc::new(Metrics::new()),
            ready: Arc::new(Readiness::not_ready("caches are syncing")),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, state.clone(), async {
            stopped.await.ok();
        }));
        Self {
            address,
            state,
            stop,
            task,
        }
    }

    async fn stop(self) {
        self.stop.send(()).expect("the server is running");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the server stops promptly")
            .expect("the server task does not panic")
            .expect("the server stops without error");
    }
}

/// A response's status code, headers (lowercased names) and body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sends one HTTP/1.1 request that closes the connection, and reads the reply.
async fn request(address: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("send the request");
    let mut raw = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut raw))
        .await
        .expect("the reply comes promptly")
        .expect("read the reply");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

#[tokio::test]
async fn healthz_answers_ok_while_the_server_runs() {
    let server = Running::start().await;
    let reply = request(server.address, "GET", "/healthz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ok\n");
    server.stop().await;
}

#[tokio::test]
async fn readyz_is_unavailable_with_its_reason_until_marked_ready() {
    let server = Running::start().await;
    let reply = request(server.address, "GET", "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "not ready: caches are syncing\n");

    server.state.ready.set_ready();
    let reply = request(server.address, "GET", "/readyz").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, "ready\n");

    server.state.ready.set_not_ready("lost the lease");
    let reply = request(server.address, "GET", "/readyz").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.body, "not ready: lost the lease\n");
    server.stop().await;
}

#[tokio::test]
async fn metrics_are_served_as_openmetrics_text() {
    let server = Running::start().await;
    server
        .state
        .metrics
        .record_write(&BindingLabels::new("postgres", "pg"), WriteVerb::Apply);
    let reply = request(server.address, "GET", "/metrics").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some(OPENMETRICS_CONTENT_TYPE));
    assert!(
        reply.body.contains(
            "wasm_operator_writes_total{binding=\"postgres\",plugin=\"pg\",verb=\"apply\"} 1\n"
        ),
        "{}",
        reply.body
    );
    assert!(reply.body.ends_with("# EOF\n"));
    server.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_not_found_and_other_methods_not_allowed() {
    let server = Running::start().await;
    assert_eq!(request(server.address, "GET", "/").await.status, 404);
    assert_eq!(
        request(server.address, "GET", "/metricsz").await.status,
        404
    );
    let reply = request(server.address, "POST", "/metrics").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_waits_for_an_idle_keep_alive_connection_and_stops_listening() {
    let server = Running::start().await;
    let address = server.address;
    // A keep-alive connection left open must not hold the shutdown up.
    let mut idle = TcpStream::connect(address).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("send the request");
    let mut buffer = [0_u8; 256];
    let read = idle.read(&mut buffer).await.expect("read the reply");
    assert!(buffer[..read].starts_with(b"HTTP/1.1 200"));

    server.stop().await;
    assert!(TcpStream::connect(address).await.is_err());
}
