//! The HTTP(S) side: `GET /metrics` (Prometheus text format), `POST /firehose`
//! (Amazon Data Firehose HTTP endpoint deliveries), `GET /-/healthy`.
//!
//! With Firehose enabled the two never share a listener: Firehose's endpoint is
//! public, and the series must not be. A delivery's access key is checked from
//! its headers before any of its body is read; deliveries in flight, open
//! connections and the time to read a body are all bounded.

use crate::firehose::{self, RecentRequests};
use crate::registry::Registry;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_ENCODING, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// Firehose HTTP endpoint buffers are at most 64 MiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub struct Shared {
    pub registry: Arc<Mutex<Registry>>,
    pub recent: Mutex<RecentRequests>,
    /// The Firehose access key; `None` leaves `/firehose` closed.
    pub firehose_key: Option<String>,
    pub limits: Limits,
    /// Deliveries being read or applied right now (at most `limits.deliveries`).
    pub deliveries: tokio::sync::Semaphore,
}

/// What one client can take of the exporter.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deliveries in flight; more are answered `503` (Firehose retries them).
    pub deliveries: usize,
    /// Open connections per listener; more wait to be accepted.
    pub connections: usize,
    /// The longest a delivery's body may take to arrive (`408` after).
    pub body_timeout: std::time::Duration,
    /// The longest a request's headers may take to arrive.
    pub header_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deliveries: 4,
            connections: 256,
            body_timeout: std::time::Duration::from_secs(30),
            header_timeout: std::time::Duration::from_secs(10),
        }
    }
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `/metrics` and `/-/healthy` (an internal address).
    Metrics,
    /// `/firehose` and `/-/healthy` (the public endpoint Firehose delivers to).
    Firehose,
    /// Everything: only when Firehose is off (the local stack).
    Both,
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

pub async fn route(
    shared: Arc<Shared>,
    role: Role,
    request: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let serves = |path: &str| match path {
        "/metrics" => role != Role::Firehose,
        "/firehose" => role != Role::Metrics,
        _ => true,
    };
    if !serves(request.uri().path()) {
        return text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into());
    }
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut body = shared.registry.lock().expect("registry lock").render();
            // Deliveries being read or applied now: at `--max-deliveries`, more are told to retry.
            let in_flight = shared.limits.deliveries - shared.deliveries.available_permits();
            body.push_str(&format!(
                "# HELP neuraforge_exporter_firehose_deliveries_in_flight Firehose deliveries \
                 being read or applied\n\
                 # TYPE neuraforge_exporter_firehose_deliveries_in_flight gauge\n\
                 neuraforge_exporter_firehose_deliveries_in_flight {in_flight}\n"
            ));
            text(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                body,
            )
        }
        (&Method::GET, "/-/healthy") => text(StatusCode::OK, "text/plain", "ok\n".into()),
        (&Method::POST, "/firehose") => firehose_delivery(&shared, request).await,
        (_, "/metrics" | "/firehose" | "/-/healthy") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "method not allowed\n".into(),
        ),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

async fn firehose_delivery(shared: &Shared, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let given_key = header("x-amz-firehose-access-key");
    let request_id = header("x-amz-firehose-request-id");
    let gzipped = header(CONTENT_ENCODING.as_str()).is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    let count = |outcome: &'static str| {
        shared
            .registry
            .lock()
            .expect("registry lock")
            .count_firehose(outcome)
    };
    let refuse = |status: u16, message: &str| firehose::Answer {
        status,
        body: serde_json::json!({"requestId": request_id, "timestamp": firehose::now_millis(), "errorMessage": message}),
    };
    let answer = match &shared.firehose_key {
        None => refuse(404, "the Firehose endpoint is not configured"),
        // The key comes in a header: a wrong one is refused before the body is read.
        Some(key)
            if !given_key
                .as_deref()
                .is_some_and(|k| firehose::constant_time_eq(k.as_bytes(), key.as_bytes())) =>
        {
            count("unauthorized");
            refuse(401, "invalid access key")
        }
        Some(key) => match shared.deliveries.try_acquire() {
            Err(_) => {
                count("busy");
                refuse(503, "too many deliveries in flight; retry")
            }
            Ok(_in_flight) => {
                let body = tokio::time::timeout(
                    shared.limits.body_timeout,
                    Limited::new(request.into_body(), MAX_BODY_BYTES).collect(),
                )
                .await;
                match body {
                    Err(_) => {
                        count("timeout");
                        refuse(408, "the request body did not arrive in time")
                    }
                    Ok(Err(_)) => {
                        count("too_large");
                        refuse(413, "the request body is over 64 MiB")
                    }
                    Ok(Ok(body)) => {
                        let body = body.to_bytes();
                        let mut registry = shared.registry.lock().expect("registry lock");
                        let mut recent = shared.recent.lock().expect("recent lock");
                        firehose::handle(
                            &mut registry,
                            &mut recent,
                            Some(key),
                            given_key.as_deref(),
                            request_id.as_deref(),
                            gzipped,
                            &body,
                        )
                    }
                }
            }
        },
    };
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    text(status, "application/json", answer.body.to_string())
}

/// TLS settings from PEM files (certificate chain, private key).
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Serves until the task is dropped. Each connection is its own task.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    role: Role,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioIo, TokioTimer};
    let open = Arc::new(tokio::sync::Semaphore::new(shared.limits.connections));
    let header_timeout = shared.limits.header_timeout;
    loop {
        // At the connection limit, new connections wait in the listen backlog.
        let permit = Arc::clone(&open).acquire_owned().await?;
        let (stream, peer) = listener.accept().await?;
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(route(shared, role, req).await) }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let result = match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                }
                None => {
                    builder
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
