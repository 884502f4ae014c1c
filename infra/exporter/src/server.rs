//! The HTTP(S) side: `GET /metrics` (Prometheus text format), `POST /firehose`
//! (Amazon Data Firehose HTTP endpoint deliveries), `GET /-/healthy`.

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
}

fn text(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("static headers are valid")
}

pub async fn route(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let body = shared.registry.lock().expect("registry lock").render();
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
    let answer = match &shared.firehose_key {
        None => firehose::Answer {
            status: 404,
            body: serde_json::json!({"requestId": request_id, "errorMessage": "the Firehose endpoint is not configured"}),
        },
        Some(key) => match Limited::new(request.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
        {
            Ok(body) => {
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
            Err(_) => firehose::Answer {
                status: 413,
                body: serde_json::json!({"requestId": request_id, "errorMessage": "the request body is over 64 MiB"}),
            },
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
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> anyhow::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    loop {
        let (stream, peer) = listener.accept().await?;
        let shared = Arc::clone(&shared);
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, std::convert::Infallible>(route(shared, req).await) }
            });
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => {
                        http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await
                    }
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                },
                None => {
                    http1::Builder::new()
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
