//! HTTPS serving of admission reviews: `POST /validate/<binding>` and
//! `POST /mutate/<binding>`, HTTP/1.1 over rustls.
//!
//! Every replica serves, leader or not; each review is answered by the
//! version of the binding in service on this replica when the review
//! arrives ([`InService`]), so a swap applies from the next review on and
//! reviews in flight finish on the version they started with.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::answer::{Decision, answer};
use super::reads::ApiReads;
use super::review::{AdmissionResponse, ReviewRequest};
use crate::binding::{InService, Shutdown};
use crate::metrics::Metrics;
use crate::runtime::HostServices;

/// The largest review body accepted, as the API server's own request
/// limit (3 MiB); larger ones get 413.
pub const MAX_BODY_BYTES: usize = 3 << 20;

/// How long a client gets to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long connections still open at shutdown may take to finish.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long to wait before accepting again after the listener failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What answering reviews needs.
#[derive(Debug, Clone)]
pub struct AdmissionState {
    /// The version in service of every binding.
    pub in_service: InService,
    /// Where reviews are counted and timed.
    pub metrics: Arc<Metrics>,
    /// What plugins read while deciding (their granted read kinds).
    pub reads: Arc<ApiReads>,
}

/// Serves admission reviews on `listener` with `tls` until `stop` fires,
/// then stops accepting and gives open connections five seconds.
///
/// # Guarantees
/// - A review on `/validate/<binding>` or `/mutate/<binding>` is answered
///   200 with an AdmissionReview carrying its `uid` (see
///   [`answer`](super::answer::answer)); a denial names the binding.
/// - A review on any other path is denied, naming the path.
/// - A body over [`MAX_BODY_BYTES`] gets 413, a body that is not an
///   `admission.k8s.io/v1` AdmissionReview 400, another method 405.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AdmissionState,
    stop: Shutdown,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.clone() => break,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(error) => {
                if !is_connection_error(&error) {
                    tracing::warn!(%error, "accepting a webhook connection failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let (acceptor, state, watcher) = (acceptor.clone(), state.clone(), graceful.watcher());
        tokio::spawn(async move {
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(error)) => {
                        tracing::debug!(%error, "webhook TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
            let service = service_fn(move |request| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(respond(&state, request).await) }
            });
            let connection = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "webhook connections still open after the shutdown grace period were dropped"
        );
    }
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

/// Which decision and binding a path names.
fn route(path: &str) -> Option<(Decision, &str)> {
    let (decision, binding) = if let Some(binding) = path.strip_prefix("/validate/") {
        (Decision::Validate, binding)
    } else {
        (Decision::Mutate, path.strip_prefix("/mutate/")?)
    };
    (!binding.is_empty() && !binding.contains('/')).then_some((decision, binding))
}

/// The one place an HTTP request becomes a response.
async fn respond(state: &AdmissionState, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "POST an AdmissionReview\n");
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return too_large();
    }
    let path = request.uri().path().to_owned();
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(error) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the body: {error}\n"),
            );
        }
    };
    let review = match ReviewRequest::parse(&body) {
        Ok(review) => review,
        Err(message) => return text(StatusCode::BAD_REQUEST, format!("{message}\n")),
    };
    let response = match route(&path) {
        Some((decision, binding)) => {
            answer(
                decision,
                binding,
                state.in_service.get(binding),
                &review,
                &state.metrics,
                &(Arc::clone(&state.reads) as Arc<dyn HostServices>),
            )
            .await
        }
        None => AdmissionResponse::deny(
            &review.uid,
            format!(
                "no admission webhook at {path}: the operator serves /validate/<binding> and /mutate/<binding>"
            ),
            Vec::new(),
        ),
    };
    let mut reply = Response::new(Full::new(Bytes::from(response.to_review_body())));
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    reply
}

fn too_large() -> Response<Full<Bytes>> {
    text(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("an AdmissionReview may take at most {MAX_BODY_BYTES} bytes\n"),
    )
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_decision_and_the_binding() {
        assert_eq!(
            route("/validate/greeting"),
            Some((Decision::Validate, "greeting"))
        );
        assert_eq!(route("/mutate/pg"), Some((Decision::Mutate, "pg")));
        assert_eq!(route("/mutate/"), None);
        assert_eq!(route("/validate/a/b"), None);
        assert_eq!(route("/other/x"), None);
    }
}
