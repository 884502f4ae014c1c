//! Rate limits per principal and action, counted in DynamoDB.
//!
//! Fixed windows: the counter of (action, principal, window) is one item, and
//! admission is one conditional `UpdateItem` (`ADD count 1` if `count < capacity`),
//! so N parallel requests against a capacity of L admit exactly L. Each window
//! is its own item, so an expired window is never read again, whether or not
//! TTL has deleted it yet. Responses carry the IETF `RateLimit-Policy` and
//! `RateLimit` headers; a refusal is `429` with `Retry-After`.

use crate::config::{ConfigError, Settings};
use crate::dynamo::StoreError;
use crate::http::problem::ApiError;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use sha2::{Digest, Sha256};

/// One limited action and its budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitPolicy {
    /// The policy's name in headers and metrics: `task_submission`, `review_action`.
    pub action: &'static str,
    pub capacity: u32,
    pub window_seconds: u32,
    /// When the counter table cannot be reached: admit (`true`) or refuse with 503 (`false`).
    pub fail_open: bool,
}

impl RateLimitPolicy {
    /// v1 setting names: `RATE_LIMIT__<ACTION>__CAPACITY`, `__WINDOW_SECONDS`, plus `__FAIL_OPEN`.
    pub fn from_settings(
        settings: &Settings,
        action: &'static str,
        capacity: u32,
        window_seconds: u32,
    ) -> Result<Self, ConfigError> {
        let prefix = format!("RATE_LIMIT__{}", action.to_ascii_uppercase());
        Ok(Self {
            action,
            capacity: settings.bounded_or(
                &format!("{prefix}__CAPACITY"),
                capacity,
                1..=1_000_000,
            )?,
            window_seconds: settings.bounded_or(
                &format!("{prefix}__WINDOW_SECONDS"),
                window_seconds,
                1..=86_400,
            )?,
            fail_open: settings.flag_or(&format!("{prefix}__FAIL_OPEN"), false)?,
        })
    }

    /// Task submission: 6 per 60 s (the v1 defaults).
    pub fn task_submission(settings: &Settings) -> Result<Self, ConfigError> {
        Self::from_settings(settings, "task_submission", 6, 60)
    }

    /// Reviewer actions: 90 per 60 s (the v1 defaults).
    pub fn review_action(settings: &Settings) -> Result<Self, ConfigError> {
        Self::from_settings(settings, "review_action", 90, 60)
    }

    /// Transcript writes (`PUT /api/v1/history/{task_id}/transcript`): 30 per 60 s.
    pub fn transcript_write(settings: &Settings) -> Result<Self, ConfigError> {
        Self::from_settings(settings, "transcript_write", 30, 60)
    }

    /// `RateLimit-Policy: "task_submission";q=6;w=60`
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={}",
            self.action, self.capacity, self.window_seconds
        )
    }
}

/// Where a principal stands after an admitted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateStatus {
    pub policy: RateLimitPolicy,
    /// `None` when the limiter was unreachable and the policy fails open.
    pub remaining: Option<u32>,
    pub reset_seconds: u32,
}

impl RateStatus {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("ratelimit-policy", self.policy.policy_header())];
        if let Some(remaining) = self.remaining {
            headers.push((
                "ratelimit",
                format!(
                    "\"{}\";r={remaining};t={}",
                    self.policy.action, self.reset_seconds
                ),
            ));
        }
        headers
    }
}

#[derive(Clone)]
pub struct RateLimiter {
    client: Client,
    table: String,
    enabled: bool,
    /// The windows' clock (the system's; tests fix it so no window boundary falls mid-test).
    clock: crate::time::Clock,
}

impl RateLimiter {
    pub fn new(sdk: &aws_config::SdkConfig, table: impl Into<String>, enabled: bool) -> Self {
        Self {
            client: Client::new(sdk),
            table: table.into(),
            enabled,
            clock: crate::time::Clock::system(),
        }
    }

    /// The same limiter, counting windows by `clock`.
    pub fn with_clock(self, clock: crate::time::Clock) -> Self {
        Self { clock, ..self }
    }

    /// Now, by the limiter's clock (what callers pass to [`RateLimiter::admit`]).
    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// `RATE_LIMITS_TABLE` and `RATE_LIMIT__ENABLED` (default true).
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        Ok(Self::new(
            sdk,
            settings.required("RATE_LIMITS_TABLE")?,
            settings.flag_or("RATE_LIMIT__ENABLED", true)?,
        ))
    }

    /// Counts one request of `principal` against `policy`. `Ok` with the status
    /// when admitted; `429` when over the limit; `503` when the table cannot be
    /// reached and the policy fails closed.
    pub async fn admit(
        &self,
        policy: &RateLimitPolicy,
        principal: &str,
        now_millis: i64,
    ) -> Result<Option<RateStatus>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let window = Window::of(policy, now_millis);
        let key = format!("{}#{}#{}", policy.action, hashed(principal), window.start);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("limit_key", AttributeValue::S(key))
            .update_expression("ADD #count :one SET expires_at = :expires")
            // Kept a window past its end, then TTL deletes it.
            .expression_attribute_values(
                ":expires",
                AttributeValue::N((window.start + 2 * window.length).to_string()),
            );
        Ok(count(policy, &window, update, true).await?.status)
    }

    /// Whether requests are limited at all (`RATE_LIMIT__ENABLED`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }
}

/// What a counter's update found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    /// Where the principal stands (`None` unlimited, or unknown when failing open).
    pub status: Option<RateStatus>,
    /// The window's count with this request, when the update went through.
    pub count: Option<u32>,
}

/// Runs a counter's update: `ADD #count :one` (and whatever else `update` sets), under the
/// capacity when `limited`. The count and status, `429`, or the fail mode's answer.
pub async fn count(
    policy: &RateLimitPolicy,
    window: &Window,
    update: aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
    limited: bool,
) -> Result<Counted, ApiError> {
    let mut update = update
        .expression_attribute_names("#count", "count")
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .return_values(ReturnValue::UpdatedNew);
    if limited {
        update = update
            .condition_expression("attribute_not_exists(#count) OR #count < :capacity")
            .expression_attribute_values(
                ":capacity",
                AttributeValue::N(policy.capacity.to_string()),
            );
    }
    let reset_seconds = window.reset_seconds;
    match update.send().await {
        Ok(output) => {
            let count: Option<u32> = output
                .attributes()
                .and_then(|a| a.get("count"))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok());
            let status = limited.then(|| RateStatus {
                policy: policy.clone(),
                remaining: Some(
                    policy
                        .capacity
                        .saturating_sub(count.unwrap_or(policy.capacity)),
                ),
                reset_seconds,
            });
            Ok(Counted { status, count })
        }
        Err(err) if crate::dynamo::condition_failed(&err) => {
            metrics::counter!(crate::telemetry::names::RATE_LIMITED, "action" => policy.action)
                .increment(1);
            tracing::info!(action = policy.action, "rate limited");
            Err(ApiError::RateLimited {
                policy: policy.policy_header(),
                action: policy.action,
                retry_after_seconds: reset_seconds.max(1),
            })
        }
        Err(err) => {
            let cause = StoreError::from_sdk(err);
            let mode = if policy.fail_open { "open" } else { "closed" };
            metrics::counter!(
                crate::telemetry::names::RATE_LIMITER_ERRORS,
                "action" => policy.action,
                "mode" => mode
            )
            .increment(1);
            tracing::error!(action = policy.action, error = %cause, fail = mode, "rate limiter unavailable");
            match policy.fail_open {
                true => Ok(Counted {
                    status: limited.then(|| RateStatus {
                        policy: policy.clone(),
                        remaining: None,
                        reset_seconds,
                    }),
                    count: None,
                }),
                false => Err(ApiError::Unavailable {
                    retry_after_seconds: 1,
                }),
            }
        }
    }
}

/// The fixed window a request falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Epoch seconds the window began.
    pub start: u64,
    pub length: u64,
    /// Seconds until the next window.
    pub reset_seconds: u32,
}

impl Window {
    pub fn of(policy: &RateLimitPolicy, now_millis: i64) -> Self {
        let now = now_millis.max(0) as u64 / 1000;
        let length = u64::from(policy.window_seconds);
        let start = now - now % length;
        Self {
            start,
            length,
            reset_seconds: (start + length - now) as u32,
        }
    }
}

/// A principal as counters key it: hashed, so keys stay short and hold no identifiers.
pub fn hashed(principal: &str) -> String {
    hex::encode(&Sha256::digest(principal.as_bytes())[..12])
}

/// Read limits (task, run, events, review list/get/metrics, dossiers): a token bucket
/// per principal in this execution environment, with no DynamoDB write per read
/// (the read path's cost budget cannot afford one). Approximate by design: each
/// concurrent environment keeps its own buckets, so a principal spread over N
/// environments may read up to N times the policy; API Gateway's stage and route
/// throttling bounds the whole. Same headers and `429` as the other limits.
#[derive(Clone)]
pub struct ReadLimiter {
    inner: Option<std::sync::Arc<ReadBuckets>>,
}

struct ReadBuckets {
    policy: RateLimitPolicy,
    buckets: std::sync::Mutex<std::collections::HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: std::time::Instant,
}

/// Principals remembered per environment; past this the longest idle is forgotten first
/// (its bucket has refilled the most).
const MAX_READ_PRINCIPALS: usize = 10_000;

impl ReadLimiter {
    /// `RATE_LIMIT__READ__CAPACITY` (300) per `RATE_LIMIT__READ__WINDOW_SECONDS` (60);
    /// off with `RATE_LIMIT__ENABLED=false`.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        if !settings.flag_or("RATE_LIMIT__ENABLED", true)? {
            return Ok(Self::disabled());
        }
        let policy = RateLimitPolicy::from_settings(settings, "read", 300, 60)?;
        Ok(Self {
            inner: Some(std::sync::Arc::new(ReadBuckets {
                policy,
                buckets: Default::default(),
            })),
        })
    }

    pub fn disabled() -> Self {
        Self { inner: None }
    }

    /// Takes one token of `subject`'s bucket, or refuses with `429`.
    pub fn admit(&self, subject: &str) -> Result<Option<RateStatus>, ApiError> {
        self.admit_at(subject, std::time::Instant::now())
    }

    pub fn admit_at(
        &self,
        subject: &str,
        now: std::time::Instant,
    ) -> Result<Option<RateStatus>, ApiError> {
        let Some(inner) = &self.inner else {
            return Ok(None);
        };
        let policy = &inner.policy;
        let capacity = f64::from(policy.capacity);
        let per_second = capacity / f64::from(policy.window_seconds);
        let mut buckets = inner
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_READ_PRINCIPALS && !buckets.contains_key(subject) {
            // Forget the longest-idle principal: its bucket has refilled the most.
            if let Some(oldest) = buckets
                .iter()
                .min_by_key(|(_, b)| b.updated)
                .map(|(k, _)| k.clone())
            {
                buckets.remove(&oldest);
            }
        }
        let bucket = buckets.entry(subject.to_string()).or_insert(Bucket {
            tokens: capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            let to_full = ((capacity - bucket.tokens) / per_second).ceil() as u32;
            return Ok(Some(RateStatus {
                policy: policy.clone(),
                remaining: Some(bucket.tokens.floor() as u32),
                reset_seconds: to_full,
            }));
        }
        let retry_after = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0) as u32;
        metrics::counter!(crate::telemetry::names::RATE_LIMITED, "action" => policy.action)
            .increment(1);
        tracing::info!(
            action = policy.action,
            retry_after,
            "read refused by the rate limit"
        );
        Err(ApiError::RateLimited {
            policy: policy.policy_header(),
            action: policy.action,
            retry_after_seconds: retry_after,
        })
    }
}

impl RateStatus {
    /// Adds the `RateLimit-Policy` and `RateLimit` headers to a response.
    pub fn apply(&self, headers: &mut lambda_http::http::HeaderMap) {
        for (name, value) in self.headers() {
            if let Ok(v) = lambda_http::http::HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        }
    }
}

/// Concurrent event streams per principal (`STREAMS__MAX_PER_PRINCIPAL`, 5): a
/// counter in the rate-limits table. A stream takes a slot once it has been open
/// `STREAMS__SLOT_AFTER_SECONDS` (5): the cap protects the Lambda concurrency a held
/// stream occupies, and most streams (a task followed to its end) close before then
/// without writing anything. Until then a principal's streams are bounded by the read
/// limit, and opening one is refused at once when the counter is already at the cap
/// (an eventually consistent read). A stream that cannot take its slot closes with a
/// retry hint. Every taking pushes `expires_at` to the longest a stream can live
/// ([`STREAM_LIFETIME_LIMIT`]): once that has passed, every stream the counter counted
/// has ended, even one whose environment died before it could give its slot back, so
/// the counter starts over (and TTL deletes an idle item). A long stream writes twice,
/// a short one never.
#[derive(Clone)]
pub struct StreamSlots {
    client: Client,
    table: String,
    enabled: bool,
    pub max_per_principal: u32,
    /// How long a stream is open before it takes a slot.
    pub hold_after: std::time::Duration,
}

/// Lambda's own limit on a function's run: no stream outlives it.
pub const STREAM_LIFETIME_LIMIT: u64 = 15 * 60;

/// A held stream slot; give it back with [`StreamSlot::release`] when the stream ends.
pub struct StreamSlot {
    client: Client,
    table: String,
    key: String,
}

impl StreamSlots {
    pub fn from_settings(
        sdk: &aws_config::SdkConfig,
        settings: &Settings,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            client: Client::new(sdk),
            table: settings.required("RATE_LIMITS_TABLE")?,
            enabled: settings.flag_or("RATE_LIMIT__ENABLED", true)?,
            max_per_principal: settings.bounded_or("STREAMS__MAX_PER_PRINCIPAL", 5, 1..=1000)?,
            hold_after: std::time::Duration::from_secs(settings.bounded_or(
                "STREAMS__SLOT_AFTER_SECONDS",
                5,
                0..=60,
            )?),
        })
    }

    /// The same slots, taken by streams once they have been open `hold_after`.
    pub fn taken_after(self, hold_after: std::time::Duration) -> Self {
        Self { hold_after, ..self }
    }

    /// Whether streams are counted at all (`RATE_LIMIT__ENABLED`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn key(principal: &str) -> String {
        let who = hex::encode(&Sha256::digest(principal.as_bytes())[..12]);
        format!("streams#{who}")
    }

    fn refusal(&self) -> ApiError {
        metrics::counter!(crate::telemetry::names::RATE_LIMITED, "action" => "stream").increment(1);
        tracing::info!(
            max = self.max_per_principal,
            "stream refused: too many open"
        );
        ApiError::RateLimited {
            policy: format!("\"stream\";q={}", self.max_per_principal),
            action: "stream",
            retry_after_seconds: STREAM_RETRY_AFTER_SECONDS,
        }
    }

    /// Refuses with `429` when `principal` already holds every slot (an eventually
    /// consistent read: the stream's own taking, later, is the exact check).
    pub async fn check(&self, principal: &str, now_millis: i64) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let counter = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("limit_key", AttributeValue::S(Self::key(principal)))
            .projection_expression("streams, expires_at")
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        let number = |name: &str| {
            counter
                .item()
                .and_then(|i| i.get(name))
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse::<i64>().ok())
        };
        let held = number("streams").unwrap_or(0);
        let live = number("expires_at").is_some_and(|at| at >= now_millis.max(0) / 1000);
        if live && held >= i64::from(self.max_per_principal) {
            return Err(self.refusal());
        }
        Ok(())
    }

    /// Takes a slot for `principal`, or refuses with `429` (`Retry-After`) at the cap.
    pub async fn acquire(
        &self,
        principal: &str,
        now_millis: i64,
    ) -> Result<Option<StreamSlot>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let now = now_millis.max(0) / 1000;
        let key = Self::key(principal);
        let until = AttributeValue::N((now + STREAM_LIFETIME_LIMIT as i64).to_string());
        let taken = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("limit_key", AttributeValue::S(key.clone()))
            .update_expression("ADD streams :one SET expires_at = :until")
            .condition_expression("attribute_not_exists(streams) OR streams < :max")
            .expression_attribute_values(":one", AttributeValue::N("1".into()))
            .expression_attribute_values(":until", until.clone())
            .expression_attribute_values(
                ":max",
                AttributeValue::N(self.max_per_principal.to_string()),
            )
            .send()
            .await;
        let full = match taken {
            Ok(_) => false,
            Err(err) if crate::dynamo::condition_failed(&err) => true,
            Err(err) => return Err(StoreError::from_sdk(err).into()),
        };
        if full {
            // Counted streams older than any stream can be have all ended: start over.
            let reset = self
                .client
                .update_item()
                .table_name(&self.table)
                .key("limit_key", AttributeValue::S(key.clone()))
                .update_expression("SET streams = :one, expires_at = :until")
                .condition_expression("expires_at < :now")
                .expression_attribute_values(":one", AttributeValue::N("1".into()))
                .expression_attribute_values(":until", until)
                .expression_attribute_values(":now", AttributeValue::N(now.to_string()))
                .send()
                .await;
            match reset {
                Ok(_) => {}
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    return Err(self.refusal());
                }
                Err(err) => return Err(StoreError::from_sdk(err).into()),
            }
        }
        Ok(Some(StreamSlot {
            client: self.client.clone(),
            table: self.table.clone(),
            key,
        }))
    }
}

/// When a refused stream may try again: streams end, or close before their time limit.
pub const STREAM_RETRY_AFTER_SECONDS: u32 = 10;

impl StreamSlot {
    /// Gives the slot back (never below zero). A failure only delays the slot's return
    /// until the counter's expiry.
    pub async fn release(self) {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("limit_key", AttributeValue::S(self.key))
            .update_expression("ADD streams :minus_one")
            .condition_expression("streams > :zero")
            .expression_attribute_values(":minus_one", AttributeValue::N("-1".into()))
            .expression_attribute_values(":zero", AttributeValue::N("0".into()))
            .send()
            .await;
        if let Err(err) = result
            && !err
                .as_service_error()
                .is_some_and(|e| e.is_conditional_check_failed_exception())
        {
            tracing::warn!(
                error = %crate::aws::describe_error(&err),
                "stream slot not released; it frees at the counter's expiry"
            );
        }
    }
}

/// A stream's place under its principal's cap (see [`StreamSlots`]).
pub enum Slot {
    /// Not counted yet: taken at `at`, when the stream has been open long enough to matter.
    Pending {
        slots: StreamSlots,
        subject: String,
        at: std::time::Instant,
    },
    Held(StreamSlot),
    /// Not counted (the submit stream, which the submission limit bounds, or limits off).
    Uncounted,
}

impl Slot {
    pub fn due(&self) -> Option<std::time::Instant> {
        match self {
            Slot::Pending { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// Takes the slot once it is due. `Err(retry after, seconds)`: the principal holds
    /// every slot, so the stream must close.
    pub async fn take_when_due(&mut self) -> Result<(), u32> {
        if self.due().is_none_or(|at| std::time::Instant::now() < at) {
            return Ok(());
        }
        let Slot::Pending { slots, subject, .. } = std::mem::replace(self, Slot::Uncounted) else {
            return Ok(());
        };
        match slots.acquire(&subject, crate::time::now_millis()).await {
            Ok(Some(held)) => *self = Slot::Held(held),
            Ok(None) => {}
            Err(ApiError::RateLimited {
                retry_after_seconds,
                ..
            }) => return Err(retry_after_seconds),
            // The cap is a guard, not the stream's purpose: an unreachable counter does not end it.
            Err(e) => tracing::warn!(error = %e, "stream slot not taken; streaming on uncounted"),
        }
        Ok(())
    }

    /// Gives a held slot back.
    pub async fn release(self) {
        if let Slot::Held(held) = self {
            held.release().await;
        }
    }
}

impl StreamSlots {
    /// The slot a stream of `subject` takes once it has been open `hold_after`
    /// (uncounted when limits are off).
    pub fn pending_for(&self, subject: &str) -> Slot {
        match self.enabled() {
            true => Slot::Pending {
                slots: self.clone(),
                subject: subject.to_string(),
                at: std::time::Instant::now() + self.hold_after,
            },
            false => Slot::Uncounted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_v1_settings_and_defaults_apply() {
        let none = Settings::new(|_| None);
        let p = RateLimitPolicy::task_submission(&none).unwrap();
        assert_eq!((p.capacity, p.window_seconds, p.fail_open), (6, 60, false));
        let set = Settings::new(|k| match k {
            "RATE_LIMIT__TASK_SUBMISSION__CAPACITY" => Some("10".into()),
            "RATE_LIMIT__TASK_SUBMISSION__WINDOW_SECONDS" => Some("30".into()),
            "RATE_LIMIT__TASK_SUBMISSION__FAIL_OPEN" => Some("true".into()),
            _ => None,
        });
        let p = RateLimitPolicy::task_submission(&set).unwrap();
        assert_eq!((p.capacity, p.window_seconds, p.fail_open), (10, 30, true));
    }

    #[test]
    fn headers_follow_the_ietf_draft() {
        let status = RateStatus {
            policy: RateLimitPolicy::task_submission(&Settings::new(|_| None)).unwrap(),
            remaining: Some(4),
            reset_seconds: 17,
        };
        assert_eq!(
            status.headers(),
            vec![
                (
                    "ratelimit-policy",
                    "\"task_submission\";q=6;w=60".to_string()
                ),
                ("ratelimit", "\"task_submission\";r=4;t=17".to_string())
            ]
        );
    }
}

#[cfg(test)]
mod read_tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn limiter(capacity: &str, window: &str) -> ReadLimiter {
        let (c, w) = (capacity.to_string(), window.to_string());
        ReadLimiter::from_settings(&Settings::new(move |k| match k {
            "RATE_LIMIT__READ__CAPACITY" => Some(c.clone()),
            "RATE_LIMIT__READ__WINDOW_SECONDS" => Some(w.clone()),
            _ => None,
        }))
        .unwrap()
    }

    #[test]
    fn a_principal_reads_its_burst_then_waits_for_the_refill() {
        let reads = limiter("3", "60");
        let t0 = Instant::now();
        for left in [2, 1, 0] {
            let status = reads.admit_at("olga", t0).unwrap().unwrap();
            assert_eq!(status.remaining, Some(left));
        }
        match reads.admit_at("olga", t0) {
            Err(ApiError::RateLimited {
                retry_after_seconds,
                action,
                ..
            }) => assert_eq!((action, retry_after_seconds), ("read", 20)),
            other => panic!("expected 429, got {other:?}"),
        }
        // Others are not affected; one token is back after a third of the window.
        assert!(reads.admit_at("rita", t0).is_ok());
        assert!(reads.admit_at("olga", t0 + Duration::from_secs(20)).is_ok());
        assert!(
            reads
                .admit_at("olga", t0 + Duration::from_secs(20))
                .is_err()
        );
    }

    #[test]
    fn switched_off_it_admits_everything_without_headers() {
        let off = ReadLimiter::from_settings(&Settings::new(|k| {
            (k == "RATE_LIMIT__ENABLED").then(|| "false".to_string())
        }))
        .unwrap();
        for _ in 0..1000 {
            assert_eq!(off.admit("olga").unwrap(), None);
        }
    }
}
