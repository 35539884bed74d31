//! The operator's own HTTP endpoints: liveness (`/healthz`), readiness
//! (`/readyz`) and Prometheus metrics (`/metrics`).
//!
//! Plain HTTP/1.1 on hyper, no TLS: these endpoints are scraped and probed
//! from inside the cluster and carry nothing secret.

use std::borrow::Cow;
use std::convert::Infallible;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::metrics::Metrics;

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// How long connections still open at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long to wait before accepting again after the listener failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Consecutive accept failures after which serving gives up.
const MAX_ACCEPT_FAILURES: u32 = 50;

/// What went wrong serving HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The listener kept failing to accept connections (e.g. out of file
    /// descriptors) for about five seconds.
    #[error("the HTTP listener failed {MAX_ACCEPT_FAILURES} times in a row")]
    Accept {
        /// The last failure.
        #[source]
        source: io::Error,
    },
}

/// Whether the operator is ready to serve, and if not, why.
///
/// Two gates: the operator's own state, and whether the API server can
/// call this replica's webhooks (the certificate it serves chains to the
/// `caBundle` in place). The flags and their reasons change together under
/// one lock, so `/readyz` never shows a reason that does not belong to the
/// current state.
#[derive(Debug)]
pub struct Readiness {
    not_ready: Mutex<Option<Cow<'static, str>>>,
    webhooks: Mutex<Option<String>>,
}

impl Readiness {
    /// Starts not ready, for `reason`.
    pub fn not_ready(reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            not_ready: Mutex::new(Some(reason.into())),
            webhooks: Mutex::new(None),
        }
    }

    /// Sets the webhook gate: `Err` with why the API server cannot call
    /// this replica's webhooks yet, `Ok` once it can.
    pub fn set_webhooks(&self, state: Result<(), String>) {
        *self.webhooks.lock().unwrap_or_else(PoisonError::into_inner) = state.err();
    }

    /// Marks the operator ready.
    pub fn set_ready(&self) {
        *self.lock() = None;
    }

    /// Marks the operator not ready, for `reason` (shown by `/readyz`).
    pub fn set_not_ready(&self, reason: impl Into<Cow<'static, str>>) {
        *self.lock() = Some(reason.into());
    }

    /// `Ok` when ready, else why not.
    ///
    /// # Errors
    /// The reason given when the operator was last marked not ready.
    pub fn check(&self) -> Result<(), String> {
        if let Some(reason) = &*self.lock() {
            return Err(reason.to_string());
        }
        match &*self.webhooks.lock().unwrap_or_else(PoisonError::into_inner) {
            None => Ok(()),
            Some(reason) => Err(reason.clone()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cow<'static, str>>> {
        // The guarded value is always whole, so a panic elsewhere cannot leave it torn.
        self.not_ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the endpoints report on.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Encoded on `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Reported on `/readyz`.
    pub ready: Arc<Readiness>,
}

/// Serves the endpoints on `listener` until `shutdown` completes, then
/// stops accepting and lets open connections finish.
///
/// # Guarantees
/// - `GET /healthz` answers 200 `ok` as long as this runs.
/// - `GET /readyz` answers 200 `ready` when [`Readiness`] is set, else 503
///   with the reason.
/// - `GET /metrics` answers the [`Metrics`] as OpenMetrics text.
/// - Other paths answer 404; other methods on these paths 405.
/// - After `shutdown`, connections still open get up to five seconds to
///   finish (keep-alive connections are closed once idle).
///
/// # Errors
/// [`HttpError::Accept`] when accepting fails repeatedly for a reason that
/// is not about one connection.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()>,
) -> Result<(), HttpError> {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut failures = 0;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                failures = 0;
                stream
            }
            Err(error) if is_connection_error(&error) => continue,
            Err(source) => {
                failures += 1;
                if failures >= MAX_ACCEPT_FAILURES {
                    return Err(HttpError::Accept { source });
                }
                tracing::warn!(error = %source, "accepting an HTTP connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let state = state.clone();
        let service = service_fn(move |request| {
            let response = respond(&state, &request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "HTTP connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the shutdown grace period were dropped");
    }
    Ok(())
}

/// Errors about one connection, after which the listener is fine.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// The one place a request becomes a response.
fn respond(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    match (request.method(), path) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => match state.ready.check() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(reason) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {reason}\n"),
            ),
        },
        (&Method::GET, "/metrics") => with_content_type(
            StatusCode::OK,
            state.metrics.encode(),
            OPENMETRICS_CONTENT_TYPE,
        ),
        (_, "/healthz" | "/readyz" | "/metrics") => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed\n");
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            response
        }
        _ => text(StatusCode::NOT_FOUND, format!("no endpoint at {path}\n")),
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    with_content_type(status, body, TEXT_CONTENT_TYPE)
}

fn with_content_type(
    status: StatusCode,
    body: impl Into<Bytes>,
    content_type: &'static str,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
