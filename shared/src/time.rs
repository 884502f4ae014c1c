//! Wall-clock helpers: one timestamp format (RFC 3339, UTC, milliseconds) everywhere.

use aws_sdk_dynamodb::primitives::{DateTime, DateTimeFormat};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// When an invocation will be cut off, as an `Instant` (the context gives epoch milliseconds).
pub fn deadline_instant(context: &lambda_runtime::Context) -> Option<Instant> {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    let left = context.deadline.checked_sub(now_ms)?;
    Some(Instant::now() + Duration::from_millis(left))
}

/// Where "now" comes from: the system clock, or a fixed instant for a test whose
/// outcome depends on where in a time window it runs.
#[derive(Clone)]
pub struct Clock(std::sync::Arc<dyn Fn() -> i64 + Send + Sync>);

impl Clock {
    pub fn system() -> Self {
        Self(std::sync::Arc::new(now_millis))
    }

    pub fn fixed(millis: i64) -> Self {
        Self(std::sync::Arc::new(move || millis))
    }

    /// Milliseconds since the Unix epoch, by this clock.
    pub fn now_millis(&self) -> i64 {
        (self.0)()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now_millis())
    }
}

/// `2026-11-25T01:02:03.456Z` for the given epoch milliseconds.
pub fn rfc3339(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let sub_ms = millis.rem_euclid(1000);
    let whole = DateTime::from_secs(secs)
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default();
    // The SDK formats whole seconds as `...:03Z`; add fixed milliseconds for sortable output.
    format!("{}.{sub_ms:03}Z", whole.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_222_923_456), "2026-11-21T01:02:03.456Z");
    }
}
