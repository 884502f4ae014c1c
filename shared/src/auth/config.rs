//! The authenticator's settings: which algorithms, which keys (an HS256 secret,
//! from SSM at cold start, or a JWKS), issuer, audience, leeway and lifetime cap.

use crate::config::{ConfigError, Settings};
use jsonwebtoken::Algorithm;

/// The published secret that signs the sample events' tokens (`infra/local/sample-secrets.env`).
/// Accepted only against a local emulator: never where `AWS_ENDPOINT_URL` is unset.
pub const SAMPLE_SECRET: &str = "neuraforge-sample-secret-for-local-use-only-0001";

/// HS256 secrets shorter than this are refused at start-up (RFC 7518 §3.2).
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// The default of `AUTH__MAX_TOKEN_LIFETIME_SECONDS`: a day.
pub const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS: u64 = 86_400;

/// Where RS256/ES256 verification keys come from: a JWKS document given inline
/// (`AUTH__JWKS`) or in a file (`AUTH__JWKS_FILE`, re-read when an unknown `kid` arrives).
#[derive(Clone, Debug)]
pub enum JwksSource {
    Inline(String),
    File(std::path::PathBuf),
}

#[derive(Clone)]
pub struct AuthConfig {
    /// HS256 secret (`AUTH__JWT_SECRET_KEY`), required when HS256 is allowed.
    pub secret: Option<Vec<u8>>,
    /// The algorithms accepted, pinned by configuration (`AUTH__JWT_ALGORITHM`, comma-separated).
    pub algorithms: Vec<Algorithm>,
    pub jwks: Option<JwksSource>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_seconds: u64,
    /// The longest lifetime (`exp - iat`) a token may claim; `None` switches the check off.
    pub max_lifetime_seconds: Option<u64>,
    /// Tokens signed with the published sample secret skip the lifetime cap: the sample
    /// events' tokens must verify for years, and that secret only works against an emulator.
    pub sample_secret: bool,
    /// At most one JWKS reload per this many seconds (unknown `kid`s cannot force more).
    pub jwks_refresh_seconds: u64,
}

pub(super) fn config_error(setting: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.into(),
        problem: problem.into(),
    }
}

/// The algorithms `AUTH__JWT_ALGORITHM` accepts (comma-separated; HS256 when unset).
pub(super) fn accepted_algorithms(settings: &Settings) -> Result<Vec<Algorithm>, ConfigError> {
    let raw = settings
        .optional("AUTH__JWT_ALGORITHM")
        .unwrap_or_else(|| "HS256".into());
    let mut algorithms = Vec::new();
    for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        algorithms.push(match name {
            "HS256" => Algorithm::HS256,
            "RS256" => Algorithm::RS256,
            "ES256" => Algorithm::ES256,
            other => {
                return Err(config_error(
                    "AUTH__JWT_ALGORITHM",
                    format!("must list HS256, RS256 or ES256, got {other:?}"),
                ));
            }
        });
    }
    Ok(algorithms)
}

/// The setting naming the SSM SecureString parameter that holds the HS256 secret.
pub const SECRET_PARAMETER_SETTING: &str = "AUTH__JWT_SECRET_PARAMETER";

impl AuthConfig {
    /// Reads the settings; the HS256 secret comes from `AUTH__JWT_SECRET_KEY`.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        Self::with_secret(settings, settings.optional("AUTH__JWT_SECRET_KEY"))
    }

    /// Reads the settings, with the HS256 secret given (fetched from SSM at cold start).
    pub fn with_secret(settings: &Settings, secret: Option<String>) -> Result<Self, ConfigError> {
        let algorithms = accepted_algorithms(settings)?;
        let secret = if algorithms.contains(&Algorithm::HS256) {
            let secret = secret
                .ok_or_else(|| {
                    config_error(
                        "AUTH__JWT_SECRET_KEY",
                        format!(
                            "(or {SECRET_PARAMETER_SETTING}) is required when HS256 is accepted"
                        ),
                    )
                })?
                .into_bytes();
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(config_error(
                    "AUTH__JWT_SECRET_KEY",
                    format!("must be at least {MIN_HS256_SECRET_BYTES} bytes long"),
                ));
            }
            if secret == SAMPLE_SECRET.as_bytes() && settings.optional("AWS_ENDPOINT_URL").is_none()
            {
                return Err(config_error(
                    "AUTH__JWT_SECRET_KEY",
                    "is the published sample secret, which is refused outside the local stack",
                ));
            }
            Some(secret)
        } else {
            None
        };
        let jwks = match (
            settings.optional("AUTH__JWKS"),
            settings.optional("AUTH__JWKS_FILE"),
        ) {
            (Some(inline), _) => Some(JwksSource::Inline(inline)),
            (None, Some(path)) => Some(JwksSource::File(path.into())),
            (None, None) => None,
        };
        if algorithms.iter().any(|a| *a != Algorithm::HS256) && jwks.is_none() {
            return Err(config_error(
                "AUTH__JWKS",
                "(or AUTH__JWKS_FILE) is required for RS256 and ES256",
            ));
        }
        let issuer = settings.optional("AUTH__JWT_ISSUER");
        let audience = settings.optional("AUTH__JWT_AUDIENCE");
        // Outside the local stack a token must be bound to its issuer and to this API: without
        // both, any token the same key signed for another service would be accepted here.
        if settings.optional("AWS_ENDPOINT_URL").is_none() {
            for (setting, value) in [
                ("AUTH__JWT_ISSUER", &issuer),
                ("AUTH__JWT_AUDIENCE", &audience),
            ] {
                if value.is_none() {
                    return Err(config_error(setting, "is required outside the local stack"));
                }
            }
        }
        let max_lifetime = settings.bounded_or(
            "AUTH__MAX_TOKEN_LIFETIME_SECONDS",
            DEFAULT_MAX_TOKEN_LIFETIME_SECONDS,
            0..=365 * 86_400,
        )?;
        Ok(Self {
            sample_secret: secret.as_deref() == Some(SAMPLE_SECRET.as_bytes()),
            secret,
            algorithms,
            jwks,
            issuer,
            audience,
            leeway_seconds: settings.bounded_or("AUTH__JWT_LEEWAY_SECONDS", 30, 0..=300)?,
            max_lifetime_seconds: (max_lifetime > 0).then_some(max_lifetime),
            jwks_refresh_seconds: settings.bounded_or(
                "AUTH__JWKS_REFRESH_SECONDS",
                60,
                0..=86_400,
            )?,
        })
    }

    /// HS256 only, with the given secret (tests and tools).
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            secret: Some(secret.to_vec()),
            algorithms: vec![Algorithm::HS256],
            jwks: None,
            issuer: None,
            audience: None,
            leeway_seconds: 0,
            max_lifetime_seconds: Some(DEFAULT_MAX_TOKEN_LIFETIME_SECONDS),
            sample_secret: secret == SAMPLE_SECRET.as_bytes(),
            jwks_refresh_seconds: 60,
        }
    }
}
