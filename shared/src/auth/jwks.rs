//! RS256/ES256 verification keys from a JWKS document, by `kid`, reloaded (at
//! most once per refresh interval) when an unknown `kid` arrives.

use super::config::JwksSource;
use jsonwebtoken::{Algorithm, DecodingKey};

/// Verification keys by `kid`, from a JWKS document.
pub(super) struct Jwks {
    source: JwksSource,
    keys: std::sync::RwLock<std::collections::HashMap<String, (Option<Algorithm>, DecodingKey)>>,
    last_load: std::sync::Mutex<std::time::Instant>,
    min_refresh: std::time::Duration,
    pub(super) loads: std::sync::atomic::AtomicU32,
}

type KeyMap = std::collections::HashMap<String, (Option<Algorithm>, DecodingKey)>;

fn load_jwks(source: &JwksSource) -> Result<KeyMap, String> {
    let text = match source {
        JwksSource::Inline(text) => text.clone(),
        JwksSource::File(path) => {
            std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    let set: jsonwebtoken::jwk::JwkSet =
        serde_json::from_str(&text).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = KeyMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("key {kid}: {e}"))?;
        keys.insert(kid, (alg, key));
    }
    Ok(keys)
}

impl Jwks {
    pub(super) fn new(
        source: JwksSource,
        min_refresh: std::time::Duration,
    ) -> Result<Self, String> {
        let keys = load_jwks(&source)?;
        Ok(Self {
            source,
            keys: std::sync::RwLock::new(keys),
            last_load: std::sync::Mutex::new(std::time::Instant::now()),
            min_refresh,
            loads: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// The key for `kid`; an unknown `kid` reloads the file at most once per `min_refresh`.
    pub(super) fn key(&self, kid: &str) -> Option<(Option<Algorithm>, DecodingKey)> {
        if let Some(found) = self.keys.read().ok()?.get(kid) {
            return Some(found.clone());
        }
        if !matches!(self.source, JwksSource::File(_)) {
            return None;
        }
        {
            let mut last = self.last_load.lock().ok()?;
            if last.elapsed() < self.min_refresh {
                return None;
            }
            *last = std::time::Instant::now();
        }
        self.loads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match load_jwks(&self.source) {
            Ok(keys) => {
                let found = keys.get(kid).cloned();
                if let Ok(mut current) = self.keys.write() {
                    *current = keys;
                }
                found
            }
            Err(e) => {
                tracing::warn!(error = %e, "JWKS reload failed; keeping the keys already loaded");
                None
            }
        }
    }
}
