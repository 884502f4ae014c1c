//! `GET /api/v1/reviews/events`: ticket changes as Server-Sent Events, for the
//! console's live queue.
//!
//! Every history item and note item of the reviews table carries its change
//! (`change`, the event's JSON), the UTC day it happened (`change_day`) and a key
//! in time order (`change_key` = `<at: 15 digits of ms>#<ticket_id>#<item>`). The
//! `changes` index (one partition per day, like `by-closed`) holds only those
//! items, so a stream reads the changes after its cursor with one eventually
//! consistent query per poll (0.5 RRU when nothing happened) and no item is
//! written for it: the change rides on the write that records it.
//!
//! A change can reach the index a little after a later one (index propagation,
//! two writers' clocks): each poll reads again from [`LATE_MS`] before the newest
//! change sent and skips what it already sent, so a late change is still sent,
//! once per connection. A reconnect with `Last-Event-ID` starts from that same
//! window, so a change within it may come twice; ids are unique, and clients use
//! them to drop repeats. Events tell the console what to refresh; the list
//! routes stay the record.

use super::changes::{TicketChange, key_millis};
use super::totals::day_of;
use crate::dynamo::StoreError;
use crate::http::problem::ApiError;
use crate::http::{
    RequestContext, SSE_CLOSING, Stream, StreamHandler, StreamWriter, last_event_id_sent,
    sse_headers, sse_too_many_streams, stream_until,
};
use crate::ratelimit::{RateStatus, Slot};
use crate::routes::{self, Route};
use lambda_http::Request;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

/// How far back each poll reads again for changes that reached the index late.
pub const LATE_MS: i64 = 2_000;
/// How many days back a `Last-Event-ID` may reach; an older one starts here.
pub const MAX_RESUME_DAYS: i64 = 7;
use super::changes::DAY_MS;

/// Where a stream starts: after `Last-Event-ID` (header, or `last_event_id` in the
/// query), else at `now` (changes from the connection on; the list routes give the rest).
pub fn start_key(request: &Request, now: i64) -> Result<String, ApiError> {
    let Some(raw) = last_event_id_sent(request) else {
        return Ok(format!("{now:015}"));
    };
    if raw.len() > 200 {
        return Err(ApiError::BadRequest("Last-Event-ID is too long".into()));
    }
    match key_millis(&raw) {
        // An id from the future (another clock, or made up) cannot have been sent: from now.
        Some(at) if at > now + LATE_MS => Ok(format!("{now:015}")),
        Some(at) => {
            let oldest = now - MAX_RESUME_DAYS * DAY_MS;
            Ok(if at < oldest {
                format!("{oldest:015}")
            } else {
                raw
            })
        }
        None => Err(ApiError::BadRequest(
            "Last-Event-ID must be the id of a ticket change received from this stream".into(),
        )),
    }
}

#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// How often the index is read while changes flow.
    pub poll_interval: Duration,
    /// While nothing happens the interval doubles up to this (0.5 RRU per read).
    pub max_poll_interval: Duration,
    pub heartbeat: Duration,
    pub retry_ms: u64,
    pub max_duration: Duration,
    pub deadline_margin: Duration,
    /// Changes read per query.
    pub page: i32,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_millis(500),
            max_poll_interval: Duration::from_secs(1),
            heartbeat: Duration::from_secs(15),
            retry_ms: 2000,
            max_duration: Duration::from_secs(840),
            deadline_margin: Duration::from_secs(2),
            page: 100,
        }
    }
}

impl FeedConfig {
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

/// What a stream has sent: the newest key, and the keys within [`LATE_MS`] of it.
struct Sent {
    newest: String,
    recent: BTreeSet<String>,
}

impl Sent {
    fn floor_ms(&self) -> i64 {
        key_millis(&self.newest).unwrap_or_default() - LATE_MS
    }

    /// Whether `change` is new to this stream; records it if so.
    fn first_time(&mut self, change: &TicketChange) -> bool {
        if change.id.as_str() <= format!("{:015}", self.floor_ms()).as_str()
            || !self.recent.insert(change.id.clone())
        {
            return false;
        }
        if change.id > self.newest {
            self.newest = change.id.clone();
        }
        let floor = format!("{:015}", self.floor_ms());
        self.recent = self.recent.split_off(&floor);
        true
    }
}

/// Pages read per poll at most; more waiting means a poll again at once.
const PAGES_PER_POLL: usize = 10;

/// Reads the changes after the stream's window, day by day up to today, page after page.
/// `Some(true)` when something was sent (or more is waiting), `None` when the client is gone.
async fn poll(
    store: &super::store::ReviewStore,
    sent: &mut Sent,
    page: i32,
    now: i64,
    send: &StreamWriter,
) -> Result<Option<bool>, StoreError> {
    let floor = sent.floor_ms();
    let after = format!("{floor:015}");
    let mut day_start = floor - floor.rem_euclid(DAY_MS);
    let (mut wrote, mut pages) = (false, 0);
    while day_start <= now {
        let mut after = after.clone();
        loop {
            let changes = store
                .changes_after(&day_of(day_start), &after, page)
                .await?;
            for change in &changes {
                if sent.first_time(change) {
                    if !send.send(change.sse_message()).await {
                        return Ok(None);
                    }
                    wrote = true;
                }
            }
            pages += 1;
            match changes.last() {
                Some(last) if changes.len() as i32 >= page => {
                    if pages >= PAGES_PER_POLL {
                        return Ok(Some(true));
                    }
                    after = last.id.clone();
                }
                _ => break,
            }
        }
        day_start += DAY_MS;
    }
    Ok(Some(wrote))
}

/// Writes ticket changes after `start` until the deadline or a gone client.
pub async fn pump(
    store: super::store::ReviewStore,
    start: String,
    config: FeedConfig,
    until: Instant,
    writer: StreamWriter,
    slot: &mut Slot,
) {
    if !writer.send(format!("retry: {}\n\n", config.retry_ms)).await {
        return;
    }
    // The change the client named in `Last-Event-ID` is not sent again.
    let mut sent = Sent {
        recent: BTreeSet::from([start.clone()]),
        newest: start,
    };
    let mut last_write = Instant::now();
    let mut interval = config.poll_interval;
    loop {
        if Instant::now() >= until {
            let _ = writer.send(SSE_CLOSING.into()).await;
            return;
        }
        if let Err(retry_after) = slot.take_when_due().await {
            let _ = writer.send(sse_too_many_streams(retry_after)).await;
            return;
        }
        let now = crate::time::now_millis();
        match poll(&store, &mut sent, config.page, now, &writer).await {
            Ok(None) => return,
            Ok(Some(true)) => {
                last_write = Instant::now();
                interval = config.poll_interval;
            }
            Ok(Some(false)) => interval = (interval * 2).min(config.max_poll_interval),
            Err(e) => tracing::warn!(error = %e, "review events could not be read; retrying"),
        }
        if last_write.elapsed() >= config.heartbeat {
            if !writer.send(": heartbeat\n\n".into()).await {
                return;
            }
            last_write = Instant::now();
        }
        let wake = slot.due().map_or(until, |at| at.min(until));
        tokio::time::sleep(interval.min(wake.saturating_duration_since(Instant::now()))).await;
    }
}

/// `GET /api/v1/reviews/events`.
pub struct ReviewEventsApi {
    pub reads: crate::ratelimit::ReadLimiter,
    /// Concurrent streams per principal (shared with the task event streams).
    pub slots: crate::ratelimit::StreamSlots,
    pub tickets: super::store::ReviewStore,
    pub config: FeedConfig,
}

impl StreamHandler for ReviewEventsApi {
    fn route(&self) -> &'static Route {
        &routes::REVIEW_EVENTS
    }

    async fn open(&self, request: Request, cx: &RequestContext) -> Result<Stream, ApiError> {
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let now = crate::time::now_millis();
        let start = start_key(&request, now)?;
        self.slots.check(&principal.subject, now).await?;
        let mut slot = self.slots.pending_for(&principal.subject);
        let until = stream_until(cx, self.config.deadline_margin, self.config.max_duration);
        let mut headers: Vec<(&'static str, String)> =
            rate.iter().flat_map(RateStatus::headers).collect();
        headers.extend(sse_headers());
        let (tickets, config) = (self.tickets.clone(), self.config.clone());
        Ok(Stream {
            headers,
            write: Box::new(move |writer| {
                Box::pin(async move {
                    pump(tickets, start, config, until, writer, &mut slot).await;
                    slot.release().await;
                })
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::TicketStatus;
    use super::super::changes::ChangeKind;
    use super::*;
    use crate::tasks::TaskId;
    use lambda_http::Body;

    fn change(at: i64, ticket: &str) -> TicketChange {
        TicketChange::new(
            ChangeKind::Opened,
            ticket,
            "history#000001",
            Some(TaskId::new()),
            Some(TicketStatus::Open),
            None,
            "system",
            at,
        )
    }

    #[test]
    fn change_keys_sort_by_time_and_carry_it() {
        let a = change(1_796_000_000_000, "t-2");
        let b = change(1_796_000_000_001, "t-1");
        assert!(a.id < b.id);
        assert_eq!(key_millis(&a.id), Some(1_796_000_000_000));
        assert_eq!(key_millis("001796000000000"), Some(1_796_000_000_000));
        for bad in ["", "12", "abc", "00179600000000x#t", "001796000000000x"] {
            assert_eq!(key_millis(bad), None, "{bad:?}");
        }
        let message = a.sse_message();
        assert!(message.starts_with(&format!("id: {}\nevent: opened\ndata: {{", a.id)));
        assert_eq!(message.matches('\n').count(), 4);
    }

    fn with_header(value: &str) -> Request {
        lambda_http::http::Request::builder()
            .header("last-event-id", value)
            .body(Body::Empty)
            .unwrap()
    }

    #[test]
    fn a_stream_starts_now_after_a_received_id_or_at_most_a_week_back_and_never_in_the_future() {
        let now = 1_796_000_000_000;
        let fresh = lambda_http::http::Request::new(Body::Empty);
        assert_eq!(start_key(&fresh, now).unwrap(), format!("{now:015}"));
        let id = change(now - 5_000, "t").id;
        assert_eq!(start_key(&with_header(&id), now).unwrap(), id);
        let old = change(now - 30 * DAY_MS, "t").id;
        assert_eq!(
            start_key(&with_header(&old), now).unwrap(),
            format!("{:015}", now - MAX_RESUME_DAYS * DAY_MS)
        );
        // One from the future cannot have been received: the stream starts now.
        let future = change(now + 60_000, "t").id;
        assert_eq!(
            start_key(&with_header(&future), now).unwrap(),
            format!("{now:015}")
        );
        for bad in ["12", "abc", "000000000000001x"] {
            assert!(
                matches!(
                    start_key(&with_header(bad), now),
                    Err(ApiError::BadRequest(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_late_change_is_sent_once_and_one_older_than_the_window_is_not() {
        let now = 1_796_000_000_000;
        let mut sent = Sent {
            newest: format!("{now:015}"),
            recent: BTreeSet::new(),
        };
        let newer = change(now + 1_000, "a");
        let late = change(now + 500, "b");
        let ancient = change(now - 10_000, "c");
        assert!(sent.first_time(&newer));
        assert!(!sent.first_time(&newer), "a repeat");
        assert!(sent.first_time(&late), "late, but within the window");
        assert!(!sent.first_time(&late));
        assert!(!sent.first_time(&ancient), "before the stream's window");
        assert_eq!(sent.newest, newer.id);
    }
}
