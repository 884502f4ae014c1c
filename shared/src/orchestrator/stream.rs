//! `GET /api/v1/tasks/{task_id}/events`: a task's events as Server-Sent Events.
//!
//! The stream replays the event log from the start, or after `Last-Event-ID`,
//! then follows new events as they are written, sends heartbeats, and ends
//! after a terminal event (`task_completed`, `task_failed`, `review_requested`).
//! Each message's `id` is the event's sequence number, `event` its name, `data`
//! the envelope. A stream about to outlive its Lambda ends cleanly with a
//! comment; the client reconnects with `Last-Event-ID` and misses nothing.

use super::events::TaskEvent;
use super::store::RunStore;
use crate::audit::{Auditor, PendingAudit};
use crate::auth::Authenticator;
use crate::http::problem::ApiError;
use crate::http::{header_str, request_id};
use crate::ratelimit::{RateStatus, StreamSlot};
use crate::routes::Route;
use crate::tasks::status::{authenticate_reader, may_read, task_id_param};
use crate::tasks::store::TaskStore;
use crate::tasks::{TaskId, TaskStatus};
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame};
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, RequestExt, Response};
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How often the log is read while events flow.
    pub poll_interval: Duration,
    /// While nothing happens the interval doubles up to this.
    pub max_poll_interval: Duration,
    pub heartbeat: Duration,
    /// The `retry:` hint to clients, in milliseconds.
    pub retry_ms: u64,
    /// The longest a stream stays open when there is no Lambda deadline to go by.
    pub max_duration: Duration,
    /// How long before the Lambda deadline the stream closes.
    pub deadline_margin: Duration,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(250),
            max_poll_interval: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
            max_duration: Duration::from_secs(14 * 60),
            deadline_margin: Duration::from_secs(2),
        }
    }
}

/// One SSE message for an event.
pub fn sse_message(event: &TaskEvent) -> String {
    let data = serde_json::to_string(event).unwrap_or_default();
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.sequence, event.event
    )
}

/// `Last-Event-ID` (header, or `last_event_id` in the query for clients that cannot set headers).
pub fn last_event_id(request: &Request) -> Result<u64, ApiError> {
    let raw = header_str(request, "last-event-id")
        .map(str::to_string)
        .or_else(|| {
            request
                .query_string_parameters_ref()
                .and_then(|q| q.first("last_event_id"))
                .map(str::to_string)
        });
    match raw {
        None => Ok(0),
        Some(raw) => raw.trim().parse::<u64>().map_err(|_| {
            ApiError::BadRequest(
                "Last-Event-ID must be the id (a whole number) of an event received".into(),
            )
        }),
    }
}

fn sse_response(body: ChannelBody) -> Response<ChannelBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// Writes the task's events after `after` to `tx` until a terminal event, the deadline, or a gone client.
pub async fn pump(
    runs: RunStore,
    tasks: TaskStore,
    task_id: TaskId,
    mut after: u64,
    config: StreamConfig,
    until: Instant,
    tx: mpsc::Sender<Bytes>,
) {
    let send = |text: String| {
        let tx = tx.clone();
        async move { tx.send(Bytes::from(text)).await.is_ok() }
    };
    if !send(format!("retry: {}\n\n", config.retry_ms)).await {
        return;
    }
    let mut last_write = Instant::now();
    let mut interval = config.poll_interval;
    loop {
        if Instant::now() >= until {
            let _ = send(": stream closing before the function's time limit; reconnect with Last-Event-ID\n\n".into()).await;
            return;
        }
        match runs.events_after(task_id, after, 100).await {
            Ok(events) if !events.is_empty() => {
                for event in &events {
                    if !send(sse_message(event)).await {
                        return;
                    }
                    after = event.sequence;
                    if event.is_terminal() {
                        return;
                    }
                }
                last_write = Instant::now();
                interval = config.poll_interval;
                continue;
            }
            Ok(_) => {
                // Events are written before the task settles: a settled task with nothing new is
                // done. Only its status is read (a projection), and less often while idle.
                if let Ok(Some(status)) = tasks.status(task_id).await
                    && (status.is_terminal() || status == TaskStatus::AwaitingReview)
                {
                    return;
                }
                interval = (interval * 2).min(config.max_poll_interval);
            }
            Err(e) => tracing::warn!(error = %e, "event stream could not read the log; retrying"),
        }
        if last_write.elapsed() >= config.heartbeat {
            if !send(": heartbeat\n\n".into()).await {
                return;
            }
            last_write = Instant::now();
        }
        tokio::time::sleep(interval.min(until.saturating_duration_since(Instant::now()))).await;
    }
}

/// Starts streaming a task's events after `after`: the response returns at once
/// and a spawned task writes the stream until a terminal event or the deadline.
#[allow(clippy::too_many_arguments)] // what the stream follows, until when, and who records it
pub fn start_stream(
    runs: &RunStore,
    tasks: &TaskStore,
    config: &StreamConfig,
    task_id: TaskId,
    after: u64,
    deadline: Option<Instant>,
    request_id: &str,
    audit: Option<(Auditor, PendingAudit)>,
    slot: Option<StreamSlot>,
) -> Response<ChannelBody> {
    let until = deadline
        .map(|d| d.checked_sub(config.deadline_margin).unwrap_or(d))
        .unwrap_or_else(|| Instant::now() + config.max_duration);
    let (tx, rx) = mpsc::channel(32);
    let (runs, tasks, config) = (runs.clone(), tasks.clone(), config.clone());
    tokio::spawn(async move {
        // The body stays open (this sender) until the slot is back and the stream recorded:
        // once a response ends, Lambda may freeze the environment mid-write.
        let keep_open = tx.clone();
        pump(runs, tasks, task_id, after, config, until, tx).await;
        if let Some(slot) = slot {
            slot.release().await;
        }
        // A stream is recorded when it ends, not when it starts.
        if let Some((auditor, pending)) = audit
            && let Err(err) = auditor.finish(pending, 200, None).await
        {
            tracing::error!(error = %err, "a finished stream could not be recorded in the audit log");
        }
        drop(keep_open);
    });
    let mut response = sse_response(ChannelBody(rx));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        response
            .headers_mut()
            .insert(crate::http::REQUEST_ID_HEADER, v);
    }
    response
}

pub struct TaskEventsApi {
    pub auth: Authenticator,
    pub reads: crate::ratelimit::ReadLimiter,
    /// Concurrent streams per principal.
    pub slots: crate::ratelimit::StreamSlots,
    pub tasks: TaskStore,
    pub runs: RunStore,
    pub config: StreamConfig,
    pub route: &'static Route,
    pub auditor: Option<Auditor>,
}

impl TaskEventsApi {
    /// Everything that can be refused before the stream starts.
    async fn open(&self, request: &Request) -> Result<Opened, ApiError> {
        let principal = authenticate_reader(&self.auth, request)?;
        let rate = self.reads.admit(&principal.subject)?;
        let task_id = task_id_param(request)?;
        let after = last_event_id(request)?;
        match self.tasks.get(task_id).await? {
            Some(task) if may_read(&principal, &task) => Ok(Opened {
                task_id,
                after,
                headers: rate.iter().flat_map(RateStatus::headers).collect(),
                slot: self
                    .slots
                    .acquire(&principal.subject, crate::time::now_millis())
                    .await?,
            }),
            _ => Err(ApiError::NotFound(crate::tasks::status::TASK_NOT_FOUND)),
        }
    }

    /// Streams the task's events, or answers a problem.
    pub async fn respond(&self, request: Request) -> Response<ChannelBody> {
        respond_streaming(
            self.route,
            self.auditor.as_ref(),
            request,
            &self.runs,
            &self.tasks,
            &self.config,
            |request, _| async move { self.open(&request).await },
        )
        .await
    }
}

/// What a streaming route opened: the task to follow, and from where.
pub struct Opened {
    pub task_id: TaskId,
    /// Stream the events after this sequence number.
    pub after: u64,
    /// Extra response headers (a new task's `Location`, rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
    /// The principal's stream slot, given back when the stream ends.
    pub slot: Option<StreamSlot>,
}

/// The pipeline of a streaming route: the method check, `open` (everything
/// that can still be refused, answered as a problem), then the stream.
pub async fn respond_streaming<F, Fut>(
    route: &'static Route,
    auditor: Option<&Auditor>,
    request: Request,
    runs: &RunStore,
    tasks: &TaskStore,
    config: &StreamConfig,
    open: F,
) -> Response<ChannelBody>
where
    F: FnOnce(Request, String) -> Fut,
    Fut: std::future::Future<Output = Result<Opened, ApiError>>,
{
    let started = Instant::now();
    let id = request_id(&request);
    let method = request.method().as_str().to_string();
    let path = request.raw_http_path().to_string();
    let deadline = request
        .lambda_context_ref()
        .and_then(crate::events::deadline_instant);
    let pending = auditor.map(|a| a.begin(route, &request, &id));
    let opened = match crate::http::refused_unread(route, &request) {
        Some(refused) => Err(refused),
        None => open(request, id.clone()).await,
    };
    let response = match opened {
        Ok(opened) => {
            let audit = auditor.cloned().zip(pending);
            let mut response = start_stream(
                runs,
                tasks,
                config,
                opened.task_id,
                opened.after,
                deadline,
                &id,
                audit,
                opened.slot,
            );
            for (name, value) in opened.headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, v);
                }
            }
            response
        }
        Err(err) => {
            tracing::info!(
                problem = err.slug(),
                status = err.status().as_u16(),
                "stream refused"
            );
            let problem = err.to_response(&id, &path);
            let recorded = match (auditor, pending) {
                (Some(a), Some(p)) => a.finish(p, problem.status().as_u16(), None).await,
                _ => Ok(()),
            };
            match recorded {
                Ok(()) => ChannelBody::once(problem),
                Err(_) => ChannelBody::once(
                    ApiError::Unavailable {
                        retry_after_seconds: 1,
                    }
                    .to_response(&id, &path),
                ),
            }
        }
    };
    let mut response = response;
    crate::http::protect(response.headers_mut());
    crate::telemetry::record_http_request(
        route,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// `POST /api/v1/submit_task/stream`: submits a task (exactly as `submit_task`
/// does) and streams its events in the same response.
pub struct SubmitStreamApi {
    pub submit: crate::tasks::submit::SubmitTaskApi,
    pub runs: RunStore,
    pub config: StreamConfig,
    pub auditor: Option<Auditor>,
}

impl SubmitStreamApi {
    pub async fn respond(&self, request: Request) -> Response<ChannelBody> {
        let route = &crate::routes::SUBMIT_TASK_STREAM;
        respond_streaming(
            route,
            self.auditor.as_ref(),
            request,
            &self.runs,
            &self.submit.store,
            &self.config,
            |request, id| async move {
                let accepted = self
                    .submit
                    .accept(&request, &id, "submit_task_stream")
                    .await?;
                let mut headers = vec![("location", format!("/api/v1/tasks/{}", accepted.task_id))];
                headers.extend(
                    accepted
                        .rate
                        .iter()
                        .flat_map(crate::ratelimit::RateStatus::headers),
                );
                // One stream per submission, which the submission limit already bounds.
                Ok(Opened {
                    task_id: accepted.task_id,
                    after: 0,
                    headers,
                    slot: None,
                })
            },
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sse_message_carries_id_event_and_one_line_of_data() {
        let e = TaskEvent::new(
            TaskId::new(),
            Some("r".into()),
            7,
            "agent_started",
            serde_json::json!({"agent": "a\nb"}),
            0,
        );
        let m = sse_message(&e);
        assert!(m.starts_with("id: 7\nevent: agent_started\ndata: {"));
        assert!(m.ends_with("}\n\n"));
        assert_eq!(
            m.matches('\n').count(),
            4,
            "the JSON stays on one line: {m}"
        );
    }

    fn with_header(value: &str) -> Request {
        lambda_http::http::Request::builder()
            .header("last-event-id", value)
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn last_event_id_must_be_a_sequence_number() {
        assert_eq!(
            last_event_id(&lambda_http::http::Request::new(Body::Empty)).unwrap(),
            0
        );
        assert_eq!(last_event_id(&with_header("12")).unwrap(), 12);
        for bad in ["-1", "abc", "1.5", ""] {
            assert!(
                matches!(
                    last_event_id(&with_header(bad)),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }
}
