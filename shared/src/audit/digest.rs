//! A digest: what the sealer signs over one period of the audit log (see [`super::seal`]).

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Hex characters of a line's hash a digest keeps (64 bits: forging a line to match
/// takes 2^64 tries).
pub const HASH_PREFIX: usize = 16;

/// One sealed period of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digest {
    /// 1, 2, 3…
    pub number: u64,
    /// It seals the record objects S3 received with `from <= LastModified < until`
    /// (epoch milliseconds).
    pub from: i64,
    pub until: i64,
    /// The hash of the previous digest ([`GENESIS`] before the first).
    pub prev: String,
    /// Every record object of the period, in order of arrival.
    pub objects: Vec<SealedObject>,
    pub hash: String,
    /// HMAC-SHA256 of `hash` with the audit signing key (hex).
    pub signature: String,
}

/// A record object as a digest seals it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SealedObject {
    pub key: String,
    /// When S3 received it (`LastModified`, epoch ms): it expires that long after.
    pub delivered: i64,
    /// The prefix of each line's hash, in order.
    pub lines: Vec<String>,
}

impl SealedObject {
    pub fn of(key: &str, delivered: i64, lines: &[String]) -> Self {
        Self {
            key: key.to_string(),
            delivered,
            lines: lines.iter().map(|l| line_hash(l)).collect(),
        }
    }
}

/// What a digest keeps of a line as stored: a prefix of its SHA-256 (hex).
pub fn line_hash(line: &str) -> String {
    hex::encode(Sha256::digest(line.as_bytes()))[..HASH_PREFIX].to_string()
}

impl Digest {
    /// SHA-256 over everything the digest says but its own hash and signature.
    pub fn compute_hash(&self) -> String {
        let objects = serde_json::to_string(&self.objects).expect("objects serialize");
        let mut hasher = Sha256::new();
        for part in [
            "neuraforge-audit-digest".to_string(),
            self.number.to_string(),
            self.from.to_string(),
            self.until.to_string(),
            self.prev.clone(),
            objects,
        ] {
            hasher.update(part.as_bytes());
            hasher.update([0u8]);
        }
        hex::encode(hasher.finalize())
    }

    /// Fills in the hash and the signature.
    pub fn sign(mut self, key: &[u8]) -> Self {
        self.hash = self.compute_hash();
        self.signature = hmac_sha256(key, self.hash.as_bytes());
        self
    }

    /// The records it seals.
    pub fn records(&self) -> usize {
        self.objects.iter().map(|o| o.lines.len()).sum()
    }
}

/// HMAC-SHA256 (RFC 2104), hex.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    hex::encode(
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hmac_sha256(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            ),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
