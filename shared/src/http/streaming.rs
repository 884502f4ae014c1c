//! Streaming responses (Lambda response streaming): a body fed through a channel,
//! the trait a streaming route implements, and the task that writes the stream.

use super::context::RequestContext;
use super::problem::ApiError;
use crate::audit::{AuditLog, PendingAudit};
use crate::routes::Route;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::sync::mpsc;

/// A response body fed through a channel: the handler returns at once, a task writes the stream.
pub struct ChannelBody(mpsc::Receiver<Bytes>);

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|b| Ok(Frame::data(b))))
    }
}

impl ChannelBody {
    /// A body that is one chunk: a buffered response (a problem) in streaming form.
    pub fn once(response: Response<Body>) -> Response<ChannelBody> {
        let (parts, body) = response.into_parts();
        let (tx, rx) = mpsc::channel(1);
        let _ = tx.try_send(Bytes::copy_from_slice(body.as_ref()));
        Response::from_parts(parts, ChannelBody(rx))
    }
}

/// Where a stream's writer sends its chunks.
#[derive(Clone)]
pub struct StreamWriter(mpsc::Sender<Bytes>);

impl StreamWriter {
    /// Sends one chunk; `false` once the client is gone.
    pub async fn send(&self, text: String) -> bool {
        self.0.send(Bytes::from(text)).await.is_ok()
    }
}

/// The writing half of a stream: given the writer, it writes until the stream should end.
pub type WriteStream =
    Box<dyn FnOnce(StreamWriter) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A stream a route opened: the headers of its `200` and what writes its body.
pub struct Stream {
    pub headers: Vec<(&'static str, String)>,
    pub write: WriteStream,
}

/// The headers of a Server-Sent Events stream.
pub fn sse_headers() -> Vec<(&'static str, String)> {
    vec![
        ("content-type", "text/event-stream".into()),
        ("cache-control", "no-cache".into()),
        ("x-accel-buffering", "no".into()),
    ]
}

/// `Last-Event-ID` as the client sent it: the header, or `last_event_id` in the query for
/// clients that cannot set headers. Empty is absent, as the SSE specification has it.
pub fn last_event_id_sent(request: &Request) -> Option<String> {
    super::header_str(request, "last-event-id")
        .map(str::to_string)
        .or_else(|| super::query_param(request, "last_event_id"))
        .map(|raw| raw.trim().to_string())
        .filter(|id| !id.is_empty())
}

/// The comment an event stream ends with shortly before its function's time limit.
pub const SSE_CLOSING: &str =
    ": stream closing before the function's time limit; reconnect with Last-Event-ID\n\n";

/// The last words of a stream whose principal holds every stream slot.
pub fn sse_too_many_streams(retry_after_seconds: u32) -> String {
    format!(
        ": too many open streams; reconnect with Last-Event-ID later\nretry: {}\n\n",
        u64::from(retry_after_seconds) * 1000
    )
}

/// When a stream must end: after `max_duration`, or `margin` before the invocation's
/// deadline when that comes first.
pub fn stream_until(
    cx: &RequestContext,
    margin: std::time::Duration,
    max_duration: std::time::Duration,
) -> std::time::Instant {
    let longest = std::time::Instant::now() + max_duration;
    cx.deadline
        .map(|d| d.checked_sub(margin).unwrap_or(d))
        .map_or(longest, |d| d.min(longest))
}

/// `STREAMS__MAX_SECONDS`: the longest a stream stays open (default 840 s, inside the
/// functions' 15-minute limit); clients reconnect with `Last-Event-ID`.
pub fn max_stream_duration(
    settings: &crate::config::Settings,
) -> Result<std::time::Duration, crate::config::ConfigError> {
    Ok(std::time::Duration::from_secs(settings.bounded_or(
        "STREAMS__MAX_SECONDS",
        840,
        1..=900,
    )?))
}

/// A streaming route's handler.
pub trait StreamHandler: Send + Sync + 'static {
    fn route(&self) -> &'static Route;

    /// Everything that can be refused before the stream starts, then the stream.
    fn open(
        &self,
        request: Request,
        cx: &RequestContext,
    ) -> impl Future<Output = Result<Stream, ApiError>> + Send;
}

/// The `200` of an opened stream. A spawned task writes the body, then records the
/// request in the audit log; the body stays open until then, because once a response
/// ends Lambda may freeze the environment mid-write.
pub(super) fn start(
    stream: Stream,
    ended: Option<(AuditLog, PendingAudit, crate::audit::Notes)>,
) -> Response<ChannelBody> {
    let (tx, rx) = mpsc::channel(32);
    let keep_open = tx.clone();
    tokio::spawn(async move {
        (stream.write)(StreamWriter(tx)).await;
        if let Some((log, pending, notes)) = ended
            && let Err(err) = log.finish(pending, 200, notes)
        {
            tracing::error!(error = %err, "a finished stream could not be recorded in the audit log");
        }
        drop(keep_open);
    });
    let mut response = Response::new(ChannelBody(rx));
    *response.status_mut() = StatusCode::OK;
    for (name, value) in stream.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_started_stream_carries_its_headers_and_what_its_writer_sends() {
        let stream = Stream {
            headers: vec![("content-type", "text/event-stream".into())],
            write: Box::new(|w: StreamWriter| {
                Box::pin(async move {
                    w.send("a".into()).await;
                    w.send("b".into()).await;
                })
            }),
        };
        let response = start(stream, None);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut body = response.into_body();
        let mut text = Vec::new();
        while let Some(Ok(frame)) =
            std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            text.extend_from_slice(&frame.into_data().unwrap());
        }
        assert_eq!(text, b"ab");
    }
}
