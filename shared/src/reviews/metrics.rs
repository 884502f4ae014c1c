//! Reviewer analytics: `GET /api/v1/reviews/metrics` (the v1 shape) and the
//! backlog gauges the scheduled `review-backlog-metrics` function emits.
//!
//! What each figure costs (none grows with the whole history):
//! - all-time counts, average and median resolution time: the aggregates item,
//!   one read ([`super::totals::Totals`], updated in every ticket transaction);
//! - the live queue (`open`, `in_review`: assignment, aging, SLA): the
//!   `by-status` index, as many items as the backlog holds;
//! - the 24 h and 7 d windows: the `by-closed` index, 8 day partitions.

use super::listing::ClosedTicket;
use super::store::ReviewStore;
use super::totals::{RESOLUTION_BUCKETS_MINUTES, Totals};
use super::{Ticket, TicketStatus};
use crate::dynamo::StoreError;
use crate::http::problem::ApiError;
use crate::http::{ApiHandler, RequestContext, json_response};
use crate::routes::{self, Route};
use crate::telemetry::{QuietGauges, Reading, names, report_gauges};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

const MINUTE_MS: f64 = 60_000.0;
const DAY_MS: i64 = 86_400_000;

/// What the figures are computed from.
#[derive(Debug, Clone, Default)]
pub struct QueueSnapshot {
    pub totals: Totals,
    pub open: Vec<Ticket>,
    pub in_review: Vec<Ticket>,
    /// Tickets closed in the last 7 days.
    pub closed_last_7d: Vec<ClosedTicket>,
    /// When it was read (epoch ms).
    pub now: i64,
}

impl QueueSnapshot {
    pub async fn read(store: &ReviewStore, now: i64) -> Result<Self, StoreError> {
        Ok(Self {
            totals: store.totals().await?,
            open: store.all_with_status(TicketStatus::Open).await?,
            in_review: store.all_with_status(TicketStatus::InReview).await?,
            closed_last_7d: store.closed_between(now - 7 * DAY_MS, now).await?,
            now,
        })
    }

    fn pending(&self) -> impl Iterator<Item = &Ticket> {
        self.open.iter().chain(&self.in_review)
    }

    fn age_ms(&self, ticket: &Ticket) -> i64 {
        (self.now - ticket.created_at).max(0)
    }

    /// Tickets per status: the live statuses from the index, the closed ones from the aggregates.
    pub fn count(&self, status: TicketStatus) -> u64 {
        match status {
            TicketStatus::Open => self.open.len() as u64,
            TicketStatus::InReview => self.in_review.len() as u64,
            closed => {
                let i = TicketStatus::ALL.iter().position(|s| *s == closed);
                i.map_or(0, |i| self.totals.by_status[i])
            }
        }
    }

    pub fn unassigned(&self) -> u64 {
        self.pending().filter(|t| t.assigned_to.is_none()).count() as u64
    }

    pub fn oldest_pending_age_ms(&self) -> i64 {
        self.pending().map(|t| self.age_ms(t)).max().unwrap_or(0)
    }
}

/// Minutes, rounded to two decimals (the v1 convention).
fn minutes(ms: f64) -> f64 {
    (ms / MINUTE_MS * 100.0).round() / 100.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn average(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The exact median (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median resolution time (minutes) estimated from the aggregates'
/// histogram, interpolating linearly inside the bucket that holds the middle
/// rank (as Prometheus' `histogram_quantile` does). Above the last edge the
/// estimate is that edge.
pub fn histogram_median_minutes(buckets: &[u64]) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return 0.0;
    }
    let rank = total as f64 / 2.0;
    let mut below = 0.0;
    let mut lower = 0.0;
    for (i, count) in buckets.iter().enumerate() {
        let Some(upper) = RESOLUTION_BUCKETS_MINUTES.get(i).map(|e| f64::from(*e)) else {
            return lower;
        };
        let count = *count as f64;
        if count > 0.0 && below + count >= rank {
            return lower + (upper - lower) * (rank - below) / count;
        }
        below += count;
        lower = upper;
    }
    lower
}

/// The v1 `GET /api/v1/reviews/metrics` body: the queue's health for reviewers and admins.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReviewMetrics {
    /// When these figures were computed (RFC 3339).
    pub generated_at: String,
    /// Tickets by status (`open`, `in_review`, `resolved`, `dismissed`).
    pub totals: BTreeMap<String, u64>,
    pub assignment: Assignment,
    pub aging: Aging,
    pub resolution: Resolution,
    pub queue_health: QueueHealth,
    pub trends: Trends,
    pub velocity: Velocity,
}

/// Who holds the pending tickets.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Assignment {
    /// Pending tickets per assignee.
    pub by_reviewer: BTreeMap<String, u64>,
    pub unassigned_open: usize,
}

/// How long pending tickets have waited, in minutes.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Aging {
    pub open_average_minutes: f64,
    pub open_oldest_minutes: f64,
    pub in_review_average_minutes: f64,
}

/// How long closing a ticket took, over all time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Resolution {
    /// `null` until a ticket has closed.
    pub average_minutes: Option<f64>,
    /// Exact while the last 7 days hold every closed ticket, estimated from a histogram after;
    /// `null` until a ticket has closed.
    pub median_minutes: Option<f64>,
    pub completed_last_24h: usize,
}

/// Pressure on the queue now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QueueHealth {
    /// Pending tickets per reviewer active in the last 7 days.
    pub backlog_pressure: f64,
    /// Pending tickets older than `REVIEWS__SLA_MINUTES`.
    pub sla_breaches: usize,
    pub escalations_pending: usize,
}

/// Closed tickets in the last 7 days.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Trends {
    pub resolved_last_7d: usize,
    pub dismissed_last_7d: usize,
    /// `null` when no ticket closed in the last 7 days.
    pub median_resolution_minutes_7d: Option<f64>,
}

/// Reviewers' throughput in the last 7 days.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Velocity {
    /// Tickets closed per reviewer.
    pub per_reviewer_last_7d: BTreeMap<String, u64>,
    /// `null` when no ticket closed in the last 7 days.
    pub median_resolution_minutes_last_7d: Option<f64>,
    pub average_daily_closed_last_7d: f64,
    pub active_reviewers_last_7d: usize,
}

/// The v1 `GET /reviews/metrics` body. `sla_minutes`: a pending ticket older than this breaches.
pub fn report(snapshot: &QueueSnapshot, sla_minutes: u64) -> ReviewMetrics {
    let now = snapshot.now;
    let totals: BTreeMap<String, u64> = TicketStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_string(), snapshot.count(*s)))
        .collect();

    let mut by_reviewer: BTreeMap<&str, u64> = BTreeMap::new();
    for t in snapshot.pending() {
        if let Some(who) = &t.assigned_to {
            *by_reviewer.entry(who).or_default() += 1;
        }
    }
    let ages = |tickets: &[Ticket]| -> Vec<f64> {
        tickets.iter().map(|t| snapshot.age_ms(t) as f64).collect()
    };
    let open_ages = ages(&snapshot.open);

    let resolution_ms = |c: &ClosedTicket| (c.closed_at - c.created_at).max(0) as f64;
    let window = |since: i64| {
        snapshot
            .closed_last_7d
            .iter()
            .filter(move |c| c.closed_at >= since)
    };
    let week: Vec<&ClosedTicket> = window(now - 7 * DAY_MS).collect();
    let week_resolutions: Vec<f64> = week.iter().map(|c| resolution_ms(c)).collect();
    let median_week = (!week_resolutions.is_empty()).then(|| minutes(median(&week_resolutions)));
    let mut per_reviewer: BTreeMap<&str, u64> = BTreeMap::new();
    for c in &week {
        *per_reviewer.entry(c.closed_by.as_str()).or_default() += 1;
    }
    let active: BTreeSet<&str> = per_reviewer.keys().copied().collect();
    let of_status = |status| week.iter().filter(|c| c.status == status).count();

    let pending = snapshot.open.len() + snapshot.in_review.len();
    let sla_ms = sla_minutes as i64 * 60_000;
    let all_time_average = (snapshot.totals.closed > 0)
        .then(|| minutes(snapshot.totals.resolution_ms_sum as f64 / snapshot.totals.closed as f64));
    // Exact while the 7-day window still holds every closed ticket, estimated after that.
    let all_time_median = if snapshot.totals.closed as usize == week.len() {
        median_week
    } else {
        Some(round2(histogram_median_minutes(
            &snapshot.totals.resolution_buckets,
        )))
    };
    ReviewMetrics {
        generated_at: crate::time::rfc3339(now),
        totals,
        assignment: Assignment {
            by_reviewer: by_reviewer
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            unassigned_open: snapshot
                .open
                .iter()
                .filter(|t| t.assigned_to.is_none())
                .count(),
        },
        aging: Aging {
            open_average_minutes: minutes(average(&open_ages)),
            open_oldest_minutes: minutes(open_ages.iter().copied().fold(0.0, f64::max)),
            in_review_average_minutes: minutes(average(&ages(&snapshot.in_review))),
        },
        resolution: Resolution {
            average_minutes: all_time_average,
            median_minutes: all_time_median,
            completed_last_24h: window(now - DAY_MS).count(),
        },
        queue_health: QueueHealth {
            // Pending tickets per reviewer active in the last 7 days (per one when nobody was).
            backlog_pressure: round2(pending as f64 / active.len().max(1) as f64),
            sla_breaches: snapshot
                .pending()
                .filter(|t| snapshot.age_ms(t) > sla_ms)
                .count(),
            escalations_pending: pending,
        },
        trends: Trends {
            resolved_last_7d: of_status(TicketStatus::Resolved),
            dismissed_last_7d: of_status(TicketStatus::Dismissed),
            median_resolution_minutes_7d: median_week,
        },
        velocity: Velocity {
            per_reviewer_last_7d: per_reviewer
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            median_resolution_minutes_last_7d: median_week,
            average_daily_closed_last_7d: round2(week.len() as f64 / 7.0),
            active_reviewers_last_7d: active.len(),
        },
    }
}

/// `REVIEWS__SLA_MINUTES`: a pending ticket older than this is an SLA breach
/// (default 120, the "oldest ticket older than two hours" alert of v1).
pub fn sla_minutes(settings: &crate::config::Settings) -> Result<u64, crate::config::ConfigError> {
    settings.bounded_or("REVIEWS__SLA_MINUTES", 120, 1..=525_600)
}

/// `GET /api/v1/reviews/metrics`.
pub struct ReviewMetricsApi {
    pub reads: crate::ratelimit::ReadLimiter,
    pub tickets: ReviewStore,
    pub sla_minutes: u64,
}

impl ApiHandler for ReviewMetricsApi {
    fn route(&self) -> &'static Route {
        &routes::REVIEW_METRICS
    }

    async fn handle(
        &self,
        _request: Request,
        cx: &RequestContext,
    ) -> Result<Response<Body>, ApiError> {
        let principal = cx.principal()?;
        let rate = self.reads.admit(&principal.subject)?;
        let snapshot = QueueSnapshot::read(&self.tickets, crate::time::now_millis()).await?;
        let mut response = json_response(StatusCode::OK, &report(&snapshot, self.sla_minutes))?;
        if let Some(rate) = rate {
            rate.apply(response.headers_mut());
        }
        Ok(response)
    }
}

/// The reviewer backlog as gauges, as `review-backlog-metrics` reads them every minute.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Backlog {
    /// `neuraforge_review_tickets` by `status`, including `unassigned`.
    pub tickets: BTreeMap<&'static str, u64>,
    /// `neuraforge_review_tickets_open`: tickets waiting for a decision (open or in review).
    pub open: u64,
    /// `neuraforge_review_ticket_oldest_age_seconds`: the oldest of those (0 when none).
    pub oldest_age_seconds: f64,
    /// `neuraforge_review_tickets_by_reviewer`: pending tickets per assignee.
    pub by_reviewer: BTreeMap<String, u64>,
    /// `neuraforge_review_tickets_by_age`: pending tickets per age band ([`AGE_BANDS`]).
    pub by_age: BTreeMap<&'static str, u64>,
}

/// Age bands of the backlog (upper bounds in minutes; the last is open-ended): bounded labels.
pub const AGE_BANDS: [(&str, i64); 4] = [
    ("0-30m", 30),
    ("30m-2h", 120),
    ("2h-8h", 480),
    ("8h+", i64::MAX),
];

fn age_band(age_ms: i64) -> &'static str {
    AGE_BANDS
        .iter()
        .find(|(_, upper)| age_ms < upper.saturating_mul(60_000))
        .map_or("8h+", |(band, _)| band)
}

impl Backlog {
    pub fn of(snapshot: &QueueSnapshot) -> Self {
        let mut tickets: BTreeMap<&'static str, u64> = TicketStatus::ALL
            .iter()
            .map(|s| (s.as_str(), snapshot.count(*s)))
            .collect();
        tickets.insert("unassigned", snapshot.unassigned());
        let mut by_reviewer: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_age: BTreeMap<&'static str, u64> =
            AGE_BANDS.iter().map(|(band, _)| (*band, 0)).collect();
        for t in snapshot.pending() {
            if let Some(who) = &t.assigned_to {
                *by_reviewer.entry(who.clone()).or_default() += 1;
            }
            *by_age.entry(age_band(snapshot.age_ms(t))).or_default() += 1;
        }
        Backlog {
            by_reviewer,
            by_age,
            open: snapshot.count(TicketStatus::Open) + snapshot.count(TicketStatus::InReview),
            oldest_age_seconds: snapshot.oldest_pending_age_ms() as f64 / 1000.0,
            tickets,
        }
    }

    /// The gauges' readings.
    pub fn readings(&self) -> Vec<Reading> {
        let mut out: Vec<Reading> = self
            .tickets
            .iter()
            .map(|(status, count)| {
                Reading::new(names::REVIEW_TICKETS, &[("status", status)], *count as f64)
            })
            .collect();
        out.push(Reading::new(
            names::REVIEW_TICKETS_OPEN,
            &[],
            self.open as f64,
        ));
        out.push(Reading::new(
            names::REVIEW_OLDEST_AGE,
            &[],
            self.oldest_age_seconds,
        ));
        for (reviewer, count) in &self.by_reviewer {
            out.push(Reading::new(
                names::REVIEW_TICKETS_BY_REVIEWER,
                &[("reviewer", reviewer)],
                *count as f64,
            ));
        }
        for (band, count) in &self.by_age {
            out.push(Reading::new(
                names::REVIEW_TICKETS_BY_AGE,
                &[("age", band)],
                *count as f64,
            ));
        }
        out
    }
}

/// The scheduled job: read the backlog, report it while there is one (see [`QuietGauges`]).
pub struct BacklogMetrics {
    pub tickets: ReviewStore,
    gauges: QuietGauges,
}

impl BacklogMetrics {
    pub fn new(tickets: ReviewStore) -> Self {
        Self {
            tickets,
            gauges: QuietGauges::default(),
        }
    }
}

/// What a run of [`BacklogMetrics`] read, and whether it sent it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BacklogReport {
    #[serde(flatten)]
    pub backlog: Backlog,
    pub reported: bool,
}

impl crate::runtime::ScheduledJob for BacklogMetrics {
    type Report = BacklogReport;

    async fn run_once(&self) -> Result<Self::Report, lambda_runtime::Error> {
        let now = crate::time::now_millis();
        // Only the live queue and the aggregates: the 7-day window is not needed here.
        let snapshot = QueueSnapshot {
            totals: self.tickets.totals().await?,
            open: self.tickets.all_with_status(TicketStatus::Open).await?,
            in_review: self.tickets.all_with_status(TicketStatus::InReview).await?,
            closed_last_7d: Vec::new(),
            now,
        };
        let backlog = Backlog::of(&snapshot);
        // Tickets waiting are something to report (and so is the first quiet run after).
        let reported = self.gauges.report(backlog.open > 0);
        if reported {
            report_gauges(&backlog.readings());
        }
        tracing::info!(
            open = backlog.open,
            oldest_age_seconds = backlog.oldest_age_seconds,
            reported,
            "review backlog"
        );
        Ok(BacklogReport { backlog, reported })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn the_all_time_median_is_exact_while_every_closed_ticket_is_in_the_window() {
        let now = 10 * DAY_MS;
        let closed = |created_at, closed_at| ClosedTicket {
            status: TicketStatus::Resolved,
            created_at,
            closed_at,
            closed_by: "rita".into(),
        };
        let mut snapshot = QueueSnapshot {
            // 10 s and 50 s: both in the (0, 5] minute bucket, whose estimate would be 2.5.
            closed_last_7d: vec![
                closed(now - 60_000, now - 50_000),
                closed(now - 60_000, now - 10_000),
            ],
            now,
            ..QueueSnapshot::default()
        };
        snapshot.totals.closed = 2;
        snapshot.totals.resolution_buckets[0] = 2;
        assert_eq!(report(&snapshot, 120).resolution.median_minutes, Some(0.5));
        // One more closed before the window: the histogram answers.
        snapshot.totals.closed = 3;
        snapshot.totals.resolution_buckets[0] = 3;
        assert_eq!(report(&snapshot, 120).resolution.median_minutes, Some(2.5));
    }

    #[test]
    fn averages_and_medians_are_null_until_a_ticket_closed() {
        let figures = report(&QueueSnapshot::default(), 120);
        assert_eq!(figures.resolution.average_minutes, None);
        assert_eq!(figures.resolution.median_minutes, None);
        assert_eq!(figures.trends.median_resolution_minutes_7d, None);
        assert_eq!(figures.velocity.median_resolution_minutes_last_7d, None);
        let json = serde_json::to_value(&figures).unwrap();
        assert!(json["resolution"]["median_minutes"].is_null());
        assert_eq!(figures.generated_at, crate::time::rfc3339(0));
    }

    #[test]
    fn the_histogram_median_interpolates_inside_its_bucket() {
        // Edges 5, 15, 30, …: 1 ticket ≤ 5 min, 2 in (5, 15], 1 in (15, 30].
        let mut buckets = [0u64; 11];
        buckets[0] = 1;
        buckets[1] = 2;
        buckets[2] = 1;
        // Rank 2 of 4: one below, then 1 of the 2 in (5, 15] → 5 + 10 × 1/2 = 10.
        assert_eq!(histogram_median_minutes(&buckets), 10.0);
        assert_eq!(histogram_median_minutes(&[0; 11]), 0.0);
        let mut slow = [0u64; 11];
        slow[10] = 3;
        assert_eq!(
            histogram_median_minutes(&slow),
            10080.0,
            "above the last edge: that edge"
        );
    }
}
