//! Each submitter's ledger: the submission limit's counter and the list of the submitter's
//! tasks in one item per (submitter, window), so a submission writes it once.
//!
//! `SubmissionsTable`, key `submitter` (the hashed `sub`) and `page` (the window's start in
//! seconds × 1000 + a page number). Page 0 of a window holds the window's `count`, which
//! the conditional `ADD` keeps exact under concurrency as every rate limit here, and the
//! ids of the first [`MAX_LISTED`] tasks it admitted, appended in the same update. A window
//! that admits more (a capacity above [`MAX_LISTED`], or limits off) lists the rest on
//! pages 1, 2, … with a second write, so no item outgrows a write unit by much. v1's
//! `history/recent` reads the ledger newest first (pages descending, each page's list
//! backwards) and the tasks it names; an id whose submission was refused after it was
//! counted, or whose task expired, names nothing and is skipped. Items expire with the
//! tasks' retention (plus the time a task may wait for review).

use super::model::TaskId;
use crate::config::{ConfigError, Settings};
use crate::dynamo::{Item, StoreError, n, s};
use crate::http::problem::ApiError;
use crate::ratelimit::{RateLimitPolicy, RateStatus, Window, count, hashed};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;

/// Task ids page 0 of a window lists in the counter's own write.
pub const MAX_LISTED: u32 = 20;
/// Page numbers per window in the `page` key.
const PAGES_PER_WINDOW: u64 = 1000;
/// How long past the tasks' retention a ledger item is kept (a task awaiting review has no
/// expiry until it is decided).
const EXTRA_KEEP_SECONDS: u64 = 30 * 86_400;

#[derive(Clone)]
pub struct SubmissionLedger {
    client: Client,
    table: String,
    /// `RATE_LIMIT__ENABLED`: off, the ledger still lists every submission, unconditionally.
    limited: bool,
    keep_seconds: u64,
    /// The windows' clock (the system's; tests fix it so no window boundary falls mid-test).
    clock: crate::time::Clock,
}

/// When the window of a ledger page began, in epoch milliseconds.
pub fn window_start_millis(page: i64) -> i64 {
    page / PAGES_PER_WINDOW as i64 * 1000
}

/// Where a listing stopped: the page and the last task returned from it.
pub type LedgerCursor = (i64, TaskId);

impl SubmissionLedger {
    pub fn new(
        sdk: &aws_config::SdkConfig,
        table: impl Into<String>,
        limited: bool,
        retention: &super::model::Retention,
    ) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
            limited,
            keep_seconds: u64::from(retention.days) * 86_400 + EXTRA_KEEP_SECONDS,
            clock: crate::time::Clock::system(),
        }
    }

    /// The same ledger, counting windows by `clock`.
    pub fn with_clock(self, clock: crate::time::Clock) -> Self {
        Self { clock, ..self }
    }

    /// Now, by the ledger's clock (what callers pass to [`SubmissionLedger::admit`]).
    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `SUBMISSIONS_TABLE`, `RATE_LIMIT__ENABLED` (default true), `TASKS__RETENTION_DAYS`.
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(
            sdk,
            settings.required("SUBMISSIONS_TABLE")?,
            settings.flag_or("RATE_LIMIT__ENABLED", true)?,
            &super::model::Retention::from_settings(settings)?,
        ))
    }

    fn key(principal: &str, window: &Window, page: u64) -> Item {
        Item::from([
            ("submitter".to_string(), s(&hashed(principal))),
            (
                "page".to_string(),
                n(window.start * PAGES_PER_WINDOW + page.min(PAGES_PER_WINDOW - 1)),
            ),
        ])
    }

    /// Counts a submission of `principal` against `policy` and lists `task_id` in the
    /// principal's ledger: one write while the window's first [`MAX_LISTED`] fit in its
    /// counter item, two past them. `429` over the limit; a store failure answers as the
    /// policy's fail mode says (failing open, the task is accepted but not listed).
    pub async fn admit(
        &self,
        policy: &RateLimitPolicy,
        principal: &str,
        task_id: TaskId,
        now_millis: i64,
    ) -> Result<Option<RateStatus>, ApiError> {
        let window = Window::of(policy, now_millis);
        let listed_with_count = self.limited && policy.capacity <= MAX_LISTED;
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(principal, &window, 0)))
            .expression_attribute_values(":keep", n(window.start + self.keep_seconds));
        update = match listed_with_count {
            true => update
                .update_expression(
                    "ADD #count :one SET expires_at = :keep, \
                     tasks = list_append(if_not_exists(tasks, :none), :task)",
                )
                .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
                .expression_attribute_values(
                    ":task",
                    AttributeValue::L(vec![s(&task_id.to_string())]),
                ),
            false => update.update_expression("ADD #count :one SET expires_at = :keep"),
        };
        let counted = count(policy, &window, update, self.limited).await?;
        if !listed_with_count && let Some(admitted) = counted.count {
            // The overflow page this admission's number falls on.
            let page = 1 + u64::from(admitted.saturating_sub(1) / MAX_LISTED);
            self.list(principal, &window, page, task_id)
                .await
                .map_err(|_| ApiError::Unavailable {
                    retry_after_seconds: 1,
                })?;
        }
        Ok(counted.status)
    }

    async fn list(
        &self,
        principal: &str,
        window: &Window,
        page: u64,
        task_id: TaskId,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(principal, window, page)))
            .update_expression(
                "SET expires_at = :keep, tasks = list_append(if_not_exists(tasks, :none), :task)",
            )
            .expression_attribute_values(":keep", n(window.start + self.keep_seconds))
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":task", AttributeValue::L(vec![s(&task_id.to_string())]))
            .send()
            .await
            .map(|_| ())
            .map_err(StoreError::from_sdk)
    }

    /// Up to `limit` of the entries `principal`'s ledger lists (page, task id), newest
    /// first, after `after`; and whether more follow. An idempotent replay lists its task
    /// again: the reader keeps the entry of the window the task was created in.
    pub async fn recent(
        &self,
        principal: &str,
        limit: usize,
        after: Option<LedgerCursor>,
    ) -> Result<(Vec<(i64, TaskId)>, bool), StoreError> {
        let mut out: Vec<(i64, TaskId)> = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(match after {
                    Some(_) => "submitter = :who AND page <= :page",
                    None => "submitter = :who",
                })
                .expression_attribute_values(":who", s(&hashed(principal)))
                .scan_index_forward(false)
                .limit(10)
                .set_exclusive_start_key(start);
            if let Some((page, _)) = after {
                query = query.expression_attribute_values(":page", n(page));
            }
            let result = query.send().await.map_err(StoreError::from_sdk)?;
            for item in result.items() {
                let page = crate::dynamo::get_n(item, "page").unwrap_or(0);
                let mut ids: Vec<TaskId> = item
                    .get("tasks")
                    .and_then(|v| v.as_l().ok())
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_s().ok().and_then(|raw| TaskId::parse(raw)))
                    .collect();
                ids.reverse();
                // Resuming inside the cursor's page: past the id it ended at.
                if let Some((cursor_page, cursor_id)) = after
                    && page == cursor_page
                {
                    let resume = ids
                        .iter()
                        .position(|id| *id == cursor_id)
                        .map_or(0, |i| i + 1);
                    ids.drain(..resume);
                }
                for id in ids {
                    if out.len() == limit {
                        return Ok((out, true));
                    }
                    out.push((page, id));
                }
            }
            start = result.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok((out, false));
            }
        }
    }
}
