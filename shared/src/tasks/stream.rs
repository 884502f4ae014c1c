//! `GET /api/v1/tasks/{task_id}/events`: a task's events as Server-Sent Events.
//!
//! The stream replays the event log from the start, or after `Last-Event-ID`,
//! then follows new events as they are written, sends heartbeats, and ends
//! after a terminal event (`task_completed`, `task_failed`, `review_requested`).
//! Each message's `id` is the event's sequence number, `event` its name, `data`
//! the envelope. A stream about to outlive its Lambda ends cleanly with a
//! comment; the client reconnects with `Last-Event-ID` and misses nothing.

use super::events::TaskEvent;
use super::model::{EntryPoint, TaskId, TaskStatus};
use super::runs::Read;
use super::runs::RunStore;
use super::status::{TASK_NOT_FOUND, task_id_param};
use super::store::TaskStore;
use super::submit::SubmitTaskApi;
use crate::access;
use crate::http::problem::ApiError;
use crate::http::{
    RequestContext, SSE_CLOSING, Stream, StreamHandler, StreamWriter, last_event_id_sent,
    sse_headers, sse_too_many_streams, stream_until,
};
use crate::ratelimit::{RateStatus, Slot};
use crate::routes::{self, Route};
use lambda_http::Request;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// How often the log is read while events flow.
    pub poll_interval: Duration,
    /// While nothing happens the interval doubles up to this.
    pub max_poll_interval: Duration,
    /// Events seen within this long mean the run is going: the log is read every
    /// `poll_interval` (and the task's status not at all) until it has been quiet this long.
    pub quiet_after: Duration,
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
            quiet_after: Duration::from_secs(2),
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
            max_duration: Duration::from_secs(840),
            deadline_margin: Duration::from_secs(2),
        }
    }
}

impl StreamConfig {
    /// The defaults, with `STREAMS__MAX_SECONDS`.
    pub fn from_settings(
        settings: &crate::config::Settings,
    ) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            max_duration: crate::http::streaming::max_stream_duration(settings)?,
            ..Self::default()
        })
    }
}

/// How often an idle stream reads the task's status: settling is always preceded by an event, so
/// this only notices a task settled some other way (a review decided without one, say).
const STATUS_RECHECK: Duration = Duration::from_secs(10);

/// One SSE message for an event.
pub fn sse_message(event: &TaskEvent) -> String {
    let data = serde_json::to_string(&event.clone().for_clients()).unwrap_or_default();
    format!(
        "id: {}\nevent: {}\ndata: {data}\n\n",
        event.sequence, event.event
    )
}

/// `Last-Event-ID` (header, or `last_event_id` in the query for clients that cannot set headers).
pub fn last_event_id(request: &Request) -> Result<u64, ApiError> {
    let raw = last_event_id_sent(request);
    match raw {
        None => Ok(0),
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(
                "Last-Event-ID must be the id (a whole number) of an event received".into(),
            )
        }),
    }
}

/// Writes the task's events after `after` to `tx` until a terminal event, the deadline, or a gone
/// client; takes the stream's `slot` when it is due, and closes when the principal has none left.
#[allow(clippy::too_many_arguments)]
pub async fn pump(
    runs: RunStore,
    tasks: TaskStore,
    task_id: TaskId,
    mut after: u64,
    config: StreamConfig,
    until: Instant,
    writer: StreamWriter,
    slot: &mut Slot,
) {
    let send = |text: String| {
        let writer = writer.clone();
        async move { writer.send(text).await }
    };
    if !send(format!("retry: {}\n\n", config.retry_ms)).await {
        return;
    }
    let mut last_write = Instant::now();
    let mut last_event: Option<Instant> = None;
    let mut interval = config.poll_interval;
    // When the task's status was last read, and the last event sent by then.
    let mut status_read: Option<(u64, Instant)> = None;
    loop {
        if Instant::now() >= until {
            let _ = send(SSE_CLOSING.into()).await;
            return;
        }
        if let Err(retry_after) = slot.take_when_due().await {
            let _ = send(sse_too_many_streams(retry_after)).await;
            return;
        }
        match runs.events_after(task_id, after, 100, Read::Recent).await {
            Ok(events) if !events.is_empty() => {
                for (i, event) in events.iter().enumerate() {
                    if !send(sse_message(event)).await {
                        return;
                    }
                    after = event.sequence;
                    // The end, unless the log goes on (a review resumed the task, or an
                    // operator reopened it).
                    if event.is_terminal() && i + 1 == events.len() {
                        return;
                    }
                }
                last_write = Instant::now();
                last_event = Some(last_write);
                interval = config.poll_interval;
            }
            // The run is going: read again soon, and only the log (at most 2 RRU a second).
            Ok(_) if last_event.is_some_and(|at| at.elapsed() < config.quiet_after) => {
                interval = config.poll_interval;
            }
            Ok(_) => {
                // Events are written before the task settles: a settled task with nothing new is
                // done. Its status alone is read (a projection): once the log has gone quiet after
                // new events (or at the start), then every `STATUS_RECHECK` while nothing happens.
                let due = status_read.is_none_or(|(read_after, at): (u64, Instant)| {
                    read_after != after || at.elapsed() >= STATUS_RECHECK
                });
                if due {
                    status_read = Some((after, Instant::now()));
                    if let Ok(Some(status)) = tasks.status(task_id).await
                        && (status.is_terminal() || status == TaskStatus::AwaitingReview)
                    {
                        return;
                    }
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
        let wake = slot.due().map_or(until, |at| at.min(until));
        tokio::time::sleep(interval.min(wake.saturating_duration_since(Instant::now()))).await;
    }
}

/// A stream of one task's events after `after`, until a terminal event or
/// shortly before the invocation's deadline; a held `slot` is given back when it ends.
struct EventStream {
    runs: RunStore,
    tasks: TaskStore,
    config: StreamConfig,
    task_id: TaskId,
    after: u64,
    slot: Slot,
}

impl EventStream {
    fn into_stream(self, cx: &RequestContext, mut headers: Vec<(&'static str, String)>) -> Stream {
        let until = stream_until(cx, self.config.deadline_margin, self.config.max_duration);
        headers.extend(sse_headers());
        Stream {
            headers,
            write: Box::new(move |writer| {
                Box::pin(async move {
                    let EventStream {
                        runs,
                        tasks,
                        config,
                        task_id,
                        after,
                        mut slot,
                    } = self;
                    pump(
                        runs, tasks, task_id, after, config, until, writer, &mut slot,
                    )
                    .await;
                    slot.release().await;
                })
            }),
        }
    }
}

/// `GET /api/v1/tasks/{task_id}/events`.
pub struct TaskEventsApi {
    pub reads: crate::ratelimit::ReadLimiter,
    /// Concurrent streams per principal.
    pub slots: crate::ratelimit::StreamSlots,
    pub tasks: TaskStore,
    pub runs: RunStore,
    pub config: StreamConfig,
}

impl StreamHandler for TaskEventsApi {
    fn route(&self) -> &'static Route {
        &routes::TASK_EVENTS
    }

    async fn open(&self, request: Request, cx: &RequestContext) -> Result<Stream, ApiError> {
        let (principal, rate) = access::admitted_reader(cx, &self.reads)?;
        let task_id = task_id_param(&request)?;
        let after = last_event_id(&request)?;
        match self.tasks.get_readable(task_id, principal).await? {
            Some(_) => {
                self.slots
                    .check(&principal.subject, crate::time::now_millis())
                    .await?;
                let slot = self.slots.pending_for(&principal.subject);
                let headers = rate.iter().flat_map(RateStatus::headers).collect();
                let stream = EventStream {
                    runs: self.runs.clone(),
                    tasks: self.tasks.clone(),
                    config: self.config.clone(),
                    task_id,
                    after,
                    slot,
                };
                Ok(stream.into_stream(cx, headers))
            }
            _ => Err(ApiError::NotFound(TASK_NOT_FOUND)),
        }
    }
}

/// `POST /api/v1/submit_task/stream`: submits a task (exactly as `submit_task`
/// does) and streams its events in the same response.
pub struct SubmitStreamApi {
    pub submit: SubmitTaskApi,
    pub runs: RunStore,
    pub config: StreamConfig,
}

impl StreamHandler for SubmitStreamApi {
    fn route(&self) -> &'static Route {
        &routes::SUBMIT_TASK_STREAM
    }

    async fn open(&self, request: Request, cx: &RequestContext) -> Result<Stream, ApiError> {
        let accepted = self
            .submit
            .accept(&request, cx, EntryPoint::SubmitTaskStream)
            .await?;
        let mut headers = vec![("location", format!("/api/v1/tasks/{}", accepted.task_id))];
        headers.extend(accepted.rate.iter().flat_map(RateStatus::headers));
        // One stream per submission, which the submission limit already bounds.
        let stream = EventStream {
            runs: self.runs.clone(),
            tasks: self.submit.store.clone(),
            config: self.config.clone(),
            task_id: accepted.task_id,
            after: 0,
            slot: Slot::Uncounted,
        };
        Ok(stream.into_stream(cx, headers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::Body;

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
    fn last_event_id_must_be_a_sequence_number_or_empty() {
        assert_eq!(
            last_event_id(&lambda_http::http::Request::new(Body::Empty)).unwrap(),
            0
        );
        assert_eq!(last_event_id(&with_header("12")).unwrap(), 12);
        // Empty is absent, as the SSE specification has it.
        assert_eq!(last_event_id(&with_header("")).unwrap(), 0);
        for bad in ["-1", "abc", "1.5"] {
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
