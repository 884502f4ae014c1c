//! Verifying the audit log against its signed digests: what verification proves.
//!
//! The digests are numbered 1, 2, 3… without a gap, each names the hash of the one
//! before and begins where it ended, hashes to what it says, and carries the signing
//! key's HMAC (so a rewritten digest, even one whose hashes were all recomputed, fails);
//! the newest is the one the anchor names, or newer (so deleting the newest digests
//! shows). Every object a digest sealed is still there with exactly the lines it sealed:
//! a line it lists but the object lacks was deleted, one the object has but it does not
//! list was inserted, one whose hash differs was altered; an object S3 received within a
//! sealed period that its digest does not list was put there after sealing. Objects
//! received after the newest digest's period are not sealed yet, and reported as such.
//!
//! History older than the retention period (`AuditRetentionDays`) is removed by the bucket's
//! lifecycle rule: given that horizon, the chain may begin at a later digest, and objects
//! of digests whose period began before it may be gone. Nothing younger may be missing.

use super::seal::{AnchorEntry, Digest, SealedObject, hmac_sha256, line_hash};
use super::store::RecordObject;
use super::{GENESIS, record_of_line};
use std::collections::BTreeMap;

/// What verification found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub digests: usize,
    /// Records (lines) the digests sealed.
    pub sealed: usize,
    /// Records received after the newest digest's period.
    pub unsealed: usize,
}

/// The first thing wrong with the log, or what was found intact. `digests` in order of
/// number; `expired_before`: the retention horizon (epoch ms), before which history may
/// have expired (`None`: none may have).
pub fn verify_log(
    objects: &[RecordObject],
    digests: &[Digest],
    key: &[u8],
    anchor: Option<&AnchorEntry>,
    expired_before: Option<i64>,
) -> Result<Report, String> {
    let may_have_expired = |t: i64| expired_before.is_some_and(|h| t < h);
    verify_chain(digests, key, anchor, &may_have_expired)?;
    let by_key: BTreeMap<&str, &RecordObject> =
        objects.iter().map(|o| (o.key.as_str(), o)).collect();
    let mut sealed_keys = std::collections::BTreeSet::new();
    let mut sealed = 0;
    for d in digests {
        for s in &d.objects {
            let Some(object) = by_key.get(s.key.as_str()) else {
                if may_have_expired(s.delivered) {
                    continue;
                }
                return Err(format!(
                    "{} is missing (sealed in digest {}): its {} record(s) were deleted",
                    s.key,
                    d.number,
                    s.lines.len()
                ));
            };
            compare(d.number, s, object)?;
            sealed_keys.insert(s.key.as_str());
            sealed += s.lines.len();
        }
    }
    let sealed_until = digests.last().map_or(i64::MIN, |d| d.until);
    let mut unsealed = 0;
    for o in objects
        .iter()
        .filter(|o| !sealed_keys.contains(o.key.as_str()))
    {
        if o.delivered < sealed_until {
            let covering = digests
                .iter()
                .find(|d| (d.from..d.until).contains(&o.delivered));
            // Older than the oldest digest kept: its digest expired before it did.
            if covering.is_none() && may_have_expired(o.delivered) {
                continue;
            }
            let number = covering.map_or(1, |d| d.number);
            return Err(format!(
                "{} was inserted after sealing (received within digest {number}'s period, \
                 which does not list it)",
                o.key
            ));
        }
        unsealed += o.lines.len();
    }
    Ok(Report {
        digests: digests.len(),
        sealed,
        unsealed,
    })
}

/// The digests among themselves and against the anchor.
fn verify_chain(
    digests: &[Digest],
    key: &[u8],
    anchor: Option<&AnchorEntry>,
    may_have_expired: &dyn Fn(i64) -> bool,
) -> Result<(), String> {
    // The chain begins at digest 1, or later when what came before may have expired.
    let (mut prev, mut until, first) = match digests.first() {
        Some(d) if d.number > 1 && may_have_expired(d.from) => (d.prev.clone(), d.from, d.number),
        _ => (GENESIS.to_string(), 0, 1),
    };
    for (i, d) in digests.iter().enumerate() {
        let expected = first + i as u64;
        if d.number != expected {
            return Err(format!("digest {expected} is missing"));
        }
        if d.prev != prev || d.from != until {
            return Err(format!(
                "digest {} does not follow digest {}",
                d.number,
                d.number - 1
            ));
        }
        if d.compute_hash() != d.hash {
            return Err(format!("digest {} was altered", d.number));
        }
        if hmac_sha256(key, d.hash.as_bytes()) != d.signature {
            return Err(format!(
                "digest {} is not signed by the audit key",
                d.number
            ));
        }
        (prev, until) = (d.hash.clone(), d.until);
    }
    if let Some(anchor) = anchor {
        let newest = digests.last().map_or(0, |d| d.number);
        // Every digest expired: the newest with them.
        if digests.is_empty() && may_have_expired(anchor.until) {
            return Ok(());
        }
        if anchor.number > newest {
            return Err(format!(
                "digest {} is missing (the anchor names digest {})",
                newest + 1,
                anchor.number
            ));
        }
        let named = digests.iter().find(|d| d.number == anchor.number);
        if named.is_some_and(|d| d.hash != anchor.hash) {
            return Err(format!(
                "digest {} is not the one the anchor names",
                anchor.number
            ));
        }
    }
    Ok(())
}

/// An object's lines against what its digest sealed, in order.
fn compare(digest: u64, sealed: &SealedObject, object: &RecordObject) -> Result<(), String> {
    let hashes: Vec<String> = object.lines.iter().map(|l| line_hash(l)).collect();
    let request = |i: usize| {
        record_of_line(&object.lines[i]).map_or_else(
            || "unreadable".to_string(),
            |r| format!("request {}", r.request_id),
        )
    };
    let key = &object.key;
    for i in 0..sealed.lines.len().max(hashes.len()) {
        let missing = || {
            format!(
                "{key}: line {} is missing (sealed in digest {digest})",
                i + 1
            )
        };
        let inserted = || {
            format!(
                "{key}: line {} ({}) was inserted after sealing",
                i + 1,
                request(i)
            )
        };
        match (sealed.lines.get(i), hashes.get(i)) {
            (Some(e), Some(h)) if e == h => {}
            (Some(_), None) => return Err(missing()),
            (None, _) => return Err(inserted()),
            (Some(e), Some(h)) => {
                if same_lines(&sealed.lines[i..], &hashes[i..]) {
                    return Err(format!(
                        "{key}: line {} ({}) was moved: the lines were re-ordered after sealing",
                        i + 1,
                        request(i)
                    ));
                }
                if sealed.lines.get(i + 1) == Some(h) {
                    return Err(missing());
                }
                if hashes.get(i + 1) == Some(e) {
                    return Err(inserted());
                }
                return Err(format!(
                    "{key}: line {} ({}) was altered",
                    i + 1,
                    request(i)
                ));
            }
        }
    }
    Ok(())
}

/// Whether two runs of line hashes hold the same lines, in whatever order.
fn same_lines(a: &[String], b: &[String]) -> bool {
    let sorted = |s: &[String]| {
        let mut v = s.to_vec();
        v.sort();
        v
    };
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// Verifies the whole log in `store` with the signing key and the anchor (if one is kept).
pub async fn verify_all(
    store: &super::store::AuditStore,
    key: &[u8],
    anchor: Option<&AnchorEntry>,
    expired_before: Option<i64>,
) -> Result<Result<Report, String>, super::AuditError> {
    let digests = store.digests().await?;
    let objects = store.all_record_objects().await?;
    Ok(verify_log(&objects, &digests, key, anchor, expired_before))
}
