//! The local stand-in for the audit path's CloudWatch Logs subscription and Firehose:
//! follows the functions' output (`.local/functions.log`) and writes its audit lines,
//! exactly as written, into the audit bucket as record objects, one per poll that found
//! any (Firehose writes one per buffer).

use anyhow::Result;
use shared::audit::store::AuditStore;
use std::path::PathBuf;
use std::time::Duration;

/// The line itself if it is an audit line (what the subscription filter
/// `{ $.audit.request_id = * }` passes), else `None`.
pub fn audit_line(line: &str) -> Option<&str> {
    let line = line.trim();
    (line.starts_with('{') && shared::audit::record_of_line(line).is_some()).then_some(line)
}

/// Ships the audit lines appended to `path` every `every` until the task is dropped. Lines
/// whose object could not be written are kept and tried again with the next ones.
pub async fn ship(store: AuditStore, path: PathBuf, every: Duration) -> Result<()> {
    let mut follower = emf_exporter::sources::Follower::new(&path, true);
    let mut ticker = tokio::time::interval(every);
    let mut pending: Vec<String> = Vec::new();
    loop {
        ticker.tick().await;
        if let Err(e) = follower.poll(|l| pending.extend(audit_line(l).map(str::to_string))) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the functions' output");
        }
        if pending.is_empty() {
            continue;
        }
        match store
            .put_records("local", &pending, shared::time::now_millis())
            .await
        {
            Ok(key) => {
                tracing::info!(records = pending.len(), %key, "audit lines shipped");
                pending.clear();
            }
            Err(e) => tracing::warn!(error = %e, "audit lines not shipped yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_audit_lines_are_shipped_as_they_were_written() {
        let line = r#"{"audit":{"time":1,"request_id":"r1","principal":"alice","roles":[],"function":"get-task","route":"/api/v1/tasks/{task_id}","method":"GET","target":null,"body_sha256":"e3","status":200,"outcome":"allowed","source_ip":null,"user_agent":null}}"#;
        assert_eq!(audit_line(&format!("{line}  ")), Some(line));
        assert_eq!(audit_line(r#"{"_aws":{"Timestamp":1},"audit":"no"}"#), None);
        assert_eq!(
            audit_line(r#"{"level":"INFO","fields":{"message":"audit"}}"#),
            None
        );
        assert_eq!(audit_line("plain text"), None);
    }
}
