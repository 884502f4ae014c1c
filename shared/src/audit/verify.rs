//! Verifying the audit log against its signed digests: what verification proves.
//!
//! For every shard: the digests are numbered 1, 2, 3… without a gap, each names the
//! hash of the one before, hashes to what it says, and carries the signing key's
//! HMAC (so a rewritten digest, even one whose hashes were all recomputed, fails);
//! the newest is the one the anchor names (so deleting the newest digests, and the
//! records they seal, shows). Within each digest's range the records are exactly the
//! ones it sealed: a record it lists but the table lacks was deleted, one the table
//! has but it does not list was inserted, one whose hash differs was altered. Records
//! newer than the last digest are not yet sealed, and reported as such.

use super::seal::{AnchorEntry, Digest, HASH_PREFIX, hmac_sha256};
use super::{GENESIS, StoredRecord, leaf_hash};

/// What a shard's verification found intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardReport {
    pub shard: u32,
    pub digests: usize,
    pub sealed: usize,
    /// Records newer than the last digest.
    pub unsealed: usize,
}

/// The first thing wrong with a shard, or what was found intact. `records` and
/// `digests` are the shard's, in order.
pub fn verify_shard(
    shard: u32,
    records: &[StoredRecord],
    digests: &[Digest],
    key: &[u8],
    anchor: Option<&AnchorEntry>,
) -> Result<ShardReport, String> {
    let mut prev = GENESIS.to_string();
    for (i, d) in digests.iter().enumerate() {
        let expected = i as u64 + 1;
        if d.number != expected {
            return Err(format!("shard {shard}: digest {expected} is missing"));
        }
        if d.prev != prev {
            return Err(format!(
                "shard {shard}: digest {} does not follow digest {}",
                d.number,
                d.number - 1
            ));
        }
        if d.compute_hash() != d.hash {
            return Err(format!("shard {shard}: digest {} was altered", d.number));
        }
        if hmac_sha256(key, d.hash.as_bytes()) != d.signature {
            return Err(format!(
                "shard {shard}: digest {} is not signed by the audit key",
                d.number
            ));
        }
        prev = d.hash.clone();
    }
    if let Some(anchor) = anchor {
        let newest = digests.len() as u64;
        if anchor.number > newest {
            return Err(format!(
                "shard {shard}: digest {} is missing (the anchor names digest {})",
                newest + 1,
                anchor.number
            ));
        }
        if anchor.number == newest && digests.last().is_some_and(|d| d.hash != anchor.hash) {
            return Err(format!(
                "shard {shard}: digest {newest} is not the one the anchor names"
            ));
        }
    }
    let mut rest = records;
    let mut sealed = 0;
    for d in digests {
        let start = rest
            .iter()
            .position(|r| r.seq >= d.from)
            .unwrap_or(rest.len());
        let end = rest
            .iter()
            .position(|r| r.seq >= d.until)
            .unwrap_or(rest.len());
        let (before, inside) = (&rest[..start], &rest[start..end]);
        if let Some(stray) = before.first() {
            return Err(inserted(shard, stray));
        }
        compare(shard, d, inside)?;
        sealed += inside.len();
        rest = &rest[end..];
    }
    Ok(ShardReport {
        shard,
        digests: digests.len(),
        sealed,
        unsealed: rest.len(),
    })
}

fn inserted(shard: u32, r: &StoredRecord) -> String {
    format!(
        "shard {shard}: record {} (request {}) was inserted after sealing",
        r.seq, r.record.request_id
    )
}

/// The records of one digest's range against its entries, in `seq` order.
fn compare(shard: u32, d: &Digest, records: &[StoredRecord]) -> Result<(), String> {
    let (mut e, mut r) = (d.entries.iter().peekable(), records.iter().peekable());
    loop {
        match (e.peek(), r.peek()) {
            (None, None) => return Ok(()),
            (Some((seq, _)), None) => return Err(missing(shard, *seq, d.number)),
            (None, Some(record)) => return Err(inserted(shard, record)),
            (Some((seq, prefix)), Some(record)) => {
                if *seq < record.seq {
                    return Err(missing(shard, *seq, d.number));
                }
                if record.seq < *seq {
                    return Err(inserted(shard, record));
                }
                let hash = leaf_hash(shard, record.seq, &record.record);
                if hash[..HASH_PREFIX] != prefix[..] {
                    return Err(format!(
                        "shard {shard}: record {} (request {}) was altered",
                        record.seq, record.record.request_id
                    ));
                }
                e.next();
                r.next();
            }
        }
    }
}

fn missing(shard: u32, seq: u64, digest: u64) -> String {
    format!("shard {shard}: record {seq} is missing (sealed in digest {digest})")
}

/// Verifies every shard of `log` with the signing key and the anchor (if one is kept).
pub async fn verify_all(
    log: &super::AuditLog,
    key: &[u8],
    anchor: &super::seal::Anchor,
) -> Result<Vec<Result<ShardReport, String>>, super::AuditError> {
    let mut out = Vec::new();
    for shard in 0..super::SHARDS {
        let records = log.records(shard, 0, u64::MAX).await?;
        let digests = super::seal::digests(log, shard).await?;
        out.push(verify_shard(
            shard,
            &records,
            &digests,
            key,
            anchor.get(&shard),
        ));
    }
    Ok(out)
}
