//! Bearer-token authentication and scope checks.
//!
//! Tokens are JWTs signed with HS256 and a secret from SSM, or with RS256/ES256
//! and a key from a JWKS (`config.rs`, `jwks.rs`). The algorithm is pinned by
//! configuration, never taken from the token. Roles map to scopes through the
//! v1 table, extended with `tasks:submit` and `tasks:read` for the routes v1
//! left open.

mod config;
mod jwks;

use crate::config::{ConfigError, Settings};
use crate::http::problem::ApiError;
use config::config_error;
pub use config::{
    AuthConfig, DEFAULT_MAX_TOKEN_LIFETIME_SECONDS, JwksSource, MIN_HS256_SECRET_BYTES,
    SAMPLE_SECRET, SECRET_PARAMETER_SETTING,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use jwks::Jwks;
use lambda_http::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;

pub use crate::scopes;

/// The scopes each role grants (v1's map plus `submitter` and `tasks:read`).
pub fn role_scopes(role: &str) -> &'static [&'static str] {
    use scopes::*;
    match role {
        "submitter" => &[TASKS_SUBMIT],
        "observer" => &[REVIEWS_READ, REPORTS_READ, TASKS_READ],
        "reviewer" => &[REVIEWS_READ, REVIEWS_WRITE, REPORTS_READ, TASKS_READ],
        "review_admin" => &[
            REVIEWS_READ,
            REVIEWS_WRITE,
            REVIEWS_ADMIN,
            REPORTS_READ,
            TASKS_READ,
        ],
        _ => &[],
    }
}

/// Tokens longer than this are refused before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Who is calling, after the token was verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub roles: BTreeSet<String>,
    pub scopes: BTreeSet<String>,
}

impl Principal {
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` if the principal holds the scope, else `403`.
    pub fn require(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            count_auth_failure("insufficient_scope");
            Err(ApiError::Forbidden)
        }
    }
}

/// The claims NeuraForge reads. `roles` and `scope`/`scopes` accept a list or a string.
#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// One audience or a list of them (RFC 7519 §4.1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

/// Splits a claim that may be a JSON list or a string separated by commas or spaces.
fn claim_values(value: Option<&Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut push = |s: &str| {
        for part in s.split([',', ' ']).map(str::trim).filter(|p| !p.is_empty()) {
            out.insert(part.to_string());
        }
    };
    match value {
        Some(Value::String(s)) => push(s),
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).for_each(push),
        _ => {}
    }
    out
}

/// Builds the authenticator of a function at cold start. With
/// `AUTH__JWT_SECRET_PARAMETER` set, the HS256 secret is read once from that SSM
/// SecureString parameter (decrypted by SSM) and kept for the life of the execution
/// environment, so it never sits in the function's configuration.
pub async fn load(
    sdk: &aws_config::SdkConfig,
    settings: &Settings<'_>,
) -> Result<Authenticator, ConfigError> {
    // An identity provider's keys alone (RS256/ES256, no HS256) need no secret: no SSM call.
    let accepts_hs256 = config::accepted_algorithms(settings)?.contains(&Algorithm::HS256);
    let secret = match settings.optional(SECRET_PARAMETER_SETTING) {
        Some(name) if accepts_hs256 => {
            Some(crate::aws::secure_parameter(sdk, SECRET_PARAMETER_SETTING, &name).await?)
        }
        _ => settings.optional("AUTH__JWT_SECRET_KEY"),
    };
    Authenticator::try_new(&AuthConfig::with_secret(settings, secret)?)
}

/// Verifies bearer tokens. Built once per cold start.
#[derive(Clone)]
pub struct Authenticator {
    hmac: Option<DecodingKey>,
    jwks: Option<std::sync::Arc<Jwks>>,
    algorithms: Vec<Algorithm>,
    validation: Validation,
    max_lifetime_seconds: Option<u64>,
    sample_secret: bool,
}

impl Authenticator {
    pub fn new(config: &AuthConfig) -> Self {
        Self::try_new(config).expect("the JWKS is valid")
    }

    pub fn try_new(config: &AuthConfig) -> Result<Self, ConfigError> {
        let mut validation = Validation::new(
            config
                .algorithms
                .first()
                .copied()
                .unwrap_or(Algorithm::HS256),
        );
        validation.leeway = config.leeway_seconds;
        validation.validate_nbf = true;
        // A configured issuer or audience is required, not only compared when present.
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &config.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let jwks = match &config.jwks {
            Some(source) => Some(std::sync::Arc::new(
                Jwks::new(
                    source.clone(),
                    std::time::Duration::from_secs(config.jwks_refresh_seconds),
                )
                .map_err(|e| config_error("AUTH__JWKS", e))?,
            )),
            None => None,
        };
        Ok(Self {
            hmac: config.secret.as_deref().map(DecodingKey::from_secret),
            jwks,
            algorithms: config.algorithms.clone(),
            validation,
            max_lifetime_seconds: config.max_lifetime_seconds,
            sample_secret: config.sample_secret,
        })
    }

    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Self::try_new(&AuthConfig::from_settings(settings)?)
    }

    /// How often the JWKS has been loaded (tests check refreshes stay bounded).
    pub fn jwks_loads(&self) -> u32 {
        self.jwks
            .as_ref()
            .map_or(0, |j| j.loads.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Verifies the `Authorization: Bearer …` header. Every failure is the same `401`.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        // `reason` is a fixed slug: it is a metric label and a log field.
        let refuse = |reason: &'static str| {
            tracing::info!(reason, "bearer token refused");
            count_auth_failure(reason);
            ApiError::Unauthorized
        };
        let token = bearer_token(headers).ok_or_else(|| {
            count_auth_failure("missing_token");
            ApiError::Unauthorized
        })?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| refuse("malformed_header"))?;
        // The algorithm is pinned by configuration; the token only says which of those it uses.
        if !self.algorithms.contains(&header.alg) {
            return Err(refuse("algorithm_not_allowed"));
        }
        let key = match header.alg {
            Algorithm::HS256 => self.hmac.clone().ok_or_else(|| refuse("no_hs256_key"))?,
            alg => {
                let kid = header.kid.as_deref().ok_or_else(|| refuse("no_kid"))?;
                let (key_alg, key) = self
                    .jwks
                    .as_ref()
                    .and_then(|j| j.key(kid))
                    .ok_or_else(|| refuse("unknown_kid"))?;
                if key_alg.is_some_and(|a| a != alg) {
                    return Err(refuse("kid_algorithm_mismatch"));
                }
                key
            }
        };
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|err| {
            use jsonwebtoken::errors::ErrorKind;
            refuse(match err.kind() {
                ErrorKind::ExpiredSignature => "expired",
                ErrorKind::ImmatureSignature => "not_yet_valid",
                ErrorKind::InvalidSignature => "invalid_signature",
                ErrorKind::InvalidIssuer => "wrong_issuer",
                ErrorKind::InvalidAudience => "wrong_audience",
                ErrorKind::MissingRequiredClaim(_) => "missing_claim",
                _ => "invalid_token",
            })
        })?;
        let claims = data.claims;
        if claims.sub.trim().is_empty() {
            return Err(refuse("missing_claim"));
        }
        let exempt = header.alg == Algorithm::HS256 && self.sample_secret;
        if let (Some(max), false) = (self.max_lifetime_seconds, exempt) {
            match claims.iat {
                None => return Err(refuse("missing_claim")),
                Some(iat) if claims.exp.saturating_sub(iat) > max => {
                    return Err(refuse("lifetime_too_long"));
                }
                // An `iat` in the future would stretch the lifetime past the cap.
                Some(iat)
                    if iat > jsonwebtoken::get_current_timestamp() + self.validation.leeway =>
                {
                    return Err(refuse("issued_in_future"));
                }
                Some(_) => {}
            }
        }
        let roles = claim_values(claims.roles.as_ref());
        let mut scopes = claim_values(claims.scope.as_ref());
        scopes.extend(claim_values(claims.scopes.as_ref()));
        for role in &roles {
            scopes.extend(role_scopes(role).iter().map(|s| s.to_string()));
        }
        Ok(Principal {
            subject: claims.sub,
            roles,
            scopes,
        })
    }
}

fn count_auth_failure(reason: &'static str) {
    metrics::counter!(crate::telemetry::names::AUTH_FAILURES, "reason" => reason).increment(1);
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() && token.len() <= MAX_TOKEN_BYTES)
        .then_some(token)
}

/// Mints an HS256 token (the dev-token command and the tests use this).
pub fn mint_token(
    secret: &[u8],
    subject: &str,
    roles: &[&str],
    ttl_seconds: u64,
) -> Result<String, jsonwebtoken::errors::Error> {
    mint_token_for(secret, subject, roles, ttl_seconds, None, None)
}

/// Mints an HS256 token naming an issuer and audience (what a deployed stack requires).
pub fn mint_token_for(
    secret: &[u8],
    subject: &str,
    roles: &[&str],
    ttl_seconds: u64,
    issuer: Option<&str>,
    audience: Option<&str>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = Claims {
        sub: subject.to_string(),
        exp: now + ttl_seconds,
        iat: Some(now),
        roles: Some(Value::from(roles.to_vec())),
        scope: None,
        scopes: None,
        iss: issuer.map(str::to_string),
        aud: audience.map(Value::from),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::HeaderValue;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn authenticator() -> Authenticator {
        Authenticator::new(&AuthConfig::hs256(SECRET))
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    fn token_with(claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    #[test]
    fn a_valid_token_yields_the_subject_and_the_scopes_of_its_roles() {
        let token = mint_token(SECRET, "alice", &["submitter", "observer"], 60).unwrap();
        let p = authenticator()
            .authenticate(&headers(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(p.subject, "alice");
        assert!(p.has_scope(scopes::TASKS_SUBMIT));
        assert!(p.has_scope(scopes::TASKS_READ));
        assert!(!p.has_scope(scopes::REVIEWS_WRITE));
    }

    #[test]
    fn roles_and_scopes_may_be_strings_or_lists() {
        let token = token_with(serde_json::json!({
            "sub": "bob", "exp": in_an_hour(), "iat": in_an_hour() - 3600,
            "roles": "reviewer, submitter", "scope": "extra:one extra:two"
        }));
        let p = authenticator()
            .authenticate(&headers(&format!("Bearer {token}")))
            .unwrap();
        assert!(p.roles.contains("reviewer") && p.roles.contains("submitter"));
        assert!(p.has_scope("extra:two") && p.has_scope(scopes::REVIEWS_WRITE));
    }

    #[test]
    fn bad_tokens_are_all_refused_the_same_way() {
        let wrong_key = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": "x", "exp": in_an_hour()}),
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .unwrap();
        let expired = token_with(serde_json::json!({"sub": "x", "exp": 1_000}));
        let no_exp = token_with(serde_json::json!({"sub": "x"}));
        let valid = mint_token(SECRET, "x", &["observer"], 60).unwrap();
        let mut parts: Vec<&str> = valid.split('.').collect();
        let forged_payload =
            "eyJzdWIiOiJhZG1pbiIsImV4cCI6OTk5OTk5OTk5OSwicm9sZXMiOlsicmV2aWV3X2FkbWluIl19";
        parts[1] = forged_payload;
        let tampered = parts.join(".");
        // alg "none": header {"alg":"none","typ":"JWT"} and no signature.
        let alg_none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{forged_payload}.");
        let oversize = format!("{}.{}.sig", "a".repeat(MAX_TOKEN_BYTES), "b");
        let cases = [
            ("no scheme", valid.clone()),
            ("wrong scheme", format!("Basic {valid}")),
            ("empty bearer", "Bearer ".to_string()),
            ("garbage", "Bearer not.a.jwt".to_string()),
            ("wrong key", format!("Bearer {wrong_key}")),
            ("expired", format!("Bearer {expired}")),
            ("missing exp", format!("Bearer {no_exp}")),
            ("tampered payload", format!("Bearer {tampered}")),
            ("alg none", format!("Bearer {alg_none}")),
            ("oversize", format!("Bearer {oversize}")),
        ];
        for (why, value) in cases {
            let result = authenticator().authenticate(&headers(&value));
            assert!(
                matches!(result, Err(ApiError::Unauthorized)),
                "{why} was not refused"
            );
        }
        assert!(matches!(
            authenticator().authenticate(&HeaderMap::new()),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn issuer_and_audience_are_enforced_when_configured() {
        let auth = Authenticator::new(&AuthConfig {
            issuer: Some("https://issuer.example".into()),
            audience: Some("neuraforge".into()),
            ..AuthConfig::hs256(SECRET)
        });
        let good = token_with(serde_json::json!({
            "sub": "x", "exp": in_an_hour(), "iat": in_an_hour() - 3600,
            "iss": "https://issuer.example", "aud": "neuraforge"
        }));
        let wrong_iss = token_with(serde_json::json!({
            "sub": "x", "exp": in_an_hour(), "iss": "https://evil.example", "aud": "neuraforge"
        }));
        let wrong_aud = token_with(serde_json::json!({
            "sub": "x", "exp": in_an_hour(), "iss": "https://issuer.example", "aud": "other"
        }));
        assert!(
            auth.authenticate(&headers(&format!("Bearer {good}")))
                .is_ok()
        );
        assert!(
            auth.authenticate(&headers(&format!("Bearer {wrong_iss}")))
                .is_err()
        );
        assert!(
            auth.authenticate(&headers(&format!("Bearer {wrong_aud}")))
                .is_err()
        );
    }

    #[test]
    fn short_secrets_and_other_algorithms_are_refused_at_start_up() {
        let short = Settings::new(|k| (k == "AUTH__JWT_SECRET_KEY").then(|| "short".to_string()));
        assert!(AuthConfig::from_settings(&short).is_err());
        let rs = Settings::new(|k| match k {
            "AUTH__JWT_SECRET_KEY" => Some("0123456789abcdef0123456789abcdef".into()),
            "AUTH__JWT_ALGORITHM" => Some("none".into()),
            _ => None,
        });
        assert!(AuthConfig::from_settings(&rs).is_err());
    }

    #[test]
    fn the_published_sample_secret_only_works_against_a_local_emulator() {
        let on_aws =
            Settings::new(|k| (k == "AUTH__JWT_SECRET_KEY").then(|| SAMPLE_SECRET.to_string()));
        assert!(AuthConfig::from_settings(&on_aws).is_err());
        let local = Settings::new(|k| match k {
            "AUTH__JWT_SECRET_KEY" => Some(SAMPLE_SECRET.to_string()),
            "AWS_ENDPOINT_URL" => Some("http://127.0.0.1:5005".to_string()),
            _ => None,
        });
        assert!(AuthConfig::from_settings(&local).is_ok());
    }

    #[test]
    fn unknown_roles_grant_nothing() {
        assert!(role_scopes("superuser").is_empty());
        let p = Principal {
            subject: "x".into(),
            roles: ["superuser".to_string()].into(),
            scopes: BTreeSet::new(),
        };
        assert!(matches!(
            p.require(scopes::TASKS_READ),
            Err(ApiError::Forbidden)
        ));
    }
}
