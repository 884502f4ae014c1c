//! The JWT attack suite: HS256, RS256 and ES256 (JWKS by `kid`), and every
//! forgery the security issue lists, each refused with the same 401.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use neuraforge_tests::workspace_root;
use serde_json::{Value, json};
use shared::auth::{AuthConfig, Authenticator, JwksSource, SAMPLE_SECRET, scopes};
use shared::http::problem::ApiError;
use shared::lambda_http::http::{HeaderMap, HeaderValue, header};
use std::path::PathBuf;

fn fixture(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/jwt").join(name)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({"sub": "alice", "exp": now() + 600, "roles": ["observer"], "iss": "https://id.example", "aud": "neuraforge"})
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let key = match alg {
        Algorithm::RS256 => {
            EncodingKey::from_rsa_pem(&std::fs::read(fixture("rsa-private.pem")).unwrap()).unwrap()
        }
        Algorithm::ES256 => {
            EncodingKey::from_ec_pem(&std::fs::read(fixture("ec-private.pem")).unwrap()).unwrap()
        }
        _ => EncodingKey::from_secret(SAMPLE_SECRET.as_bytes()),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(String::from);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn config(algorithms: &[Algorithm], jwks: Option<JwksSource>) -> AuthConfig {
    AuthConfig {
        secret: Some(SAMPLE_SECRET.as_bytes().to_vec()),
        algorithms: algorithms.to_vec(),
        jwks,
        issuer: Some("https://id.example".into()),
        audience: Some("neuraforge".into()),
        leeway_seconds: 0,
        jwks_refresh_seconds: 0,
    }
}

fn jwks_file() -> Option<JwksSource> {
    Some(JwksSource::File(fixture("jwks.json")))
}

fn bearer(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    h
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn valid_rs256_es256_and_hs256_tokens_are_accepted() {
    let auth = Authenticator::new(&config(
        &[Algorithm::HS256, Algorithm::RS256, Algorithm::ES256],
        jwks_file(),
    ));
    for token in [
        sign(Algorithm::RS256, Some("rsa-2026"), &claims()),
        sign(Algorithm::ES256, Some("ec-2026"), &claims()),
        sign(Algorithm::HS256, None, &claims()),
    ] {
        let principal = auth.authenticate(&bearer(&token)).unwrap();
        assert_eq!(principal.subject, "alice");
        assert!(principal.has_scope(scopes::TASKS_READ));
    }
}

#[test]
fn every_attack_is_refused_with_the_same_401() {
    let rsa_only = Authenticator::new(&config(&[Algorithm::RS256], jwks_file()));
    let mixed = Authenticator::new(&config(
        &[Algorithm::HS256, Algorithm::RS256, Algorithm::ES256],
        jwks_file(),
    ));
    let good = sign(Algorithm::RS256, Some("rsa-2026"), &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged = claims();
    forged["roles"] = json!(["review_admin"]);

    // HS256 signed with the RSA *public* key as the HMAC secret (the classic key-confusion attack).
    let public_pem = std::fs::read(fixture("rsa-public.pem")).unwrap();
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some("rsa-2026".into());
    let confused = jsonwebtoken::encode(
        &hs_header,
        &claims(),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();

    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        sign(Algorithm::RS256, Some("rsa-2026"), &c)
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": "rsa-2026"})),
                parts[1]
            ),
        ),
        ("HS256 signed with the RSA public key", confused),
        (
            "signed by the EC key under the RSA kid",
            sign(Algorithm::ES256, Some("rsa-2026"), &claims()),
        ),
        (
            "tampered payload",
            format!("{}.{}.{}", parts[0], b64(&forged), parts[2]),
        ),
        ("expired", with(&|c| c["exp"] = json!(now() - 10))),
        ("not yet valid", with(&|c| c["nbf"] = json!(now() + 300))),
        (
            "wrong issuer",
            with(&|c| c["iss"] = json!("https://evil.example")),
        ),
        (
            "wrong audience",
            with(&|c| c["aud"] = json!("someone-else")),
        ),
        (
            "no exp",
            with(&|c| drop(c.as_object_mut().unwrap().remove("exp"))),
        ),
        (
            "unknown kid",
            sign(Algorithm::RS256, Some("rsa-1999"), &claims()),
        ),
        ("no kid", sign(Algorithm::RS256, None, &claims())),
        (
            "oversize",
            format!("{}.{}.{}", parts[0], "A".repeat(9000), parts[2]),
        ),
    ];
    for (why, token) in &cases {
        for (name, auth) in [("RS256 only", &rsa_only), ("mixed", &mixed)] {
            assert!(
                matches!(
                    auth.authenticate(&bearer(token)),
                    Err(ApiError::Unauthorized)
                ),
                "{why} ({name}) was not refused"
            );
        }
    }
    // A token with no role claim authenticates but may do nothing.
    let roleless = with(&|c| drop(c.as_object_mut().unwrap().remove("roles")));
    let principal = mixed.authenticate(&bearer(&roleless)).unwrap();
    assert!(matches!(
        principal.require(scopes::TASKS_READ),
        Err(ApiError::Forbidden)
    ));
    assert!(matches!(
        principal.require(scopes::TASKS_SUBMIT),
        Err(ApiError::Forbidden)
    ));
}

#[test]
fn a_rotated_key_is_picked_up_and_unknown_kids_cannot_force_reloads() {
    let dir = std::env::temp_dir().join(format!("jwks-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("jwks.json");
    let full: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("jwks.json")).unwrap()).unwrap();
    let rsa_only = json!({"keys": [full["keys"][0]]});
    std::fs::write(&path, rsa_only.to_string()).unwrap();

    let mut cfg = config(
        &[Algorithm::RS256, Algorithm::ES256],
        Some(JwksSource::File(path.clone())),
    );
    cfg.jwks_refresh_seconds = 3600;
    let auth = Authenticator::new(&cfg);
    let ec_token = sign(Algorithm::ES256, Some("ec-2026"), &claims());
    // Unknown kids within the refresh interval never reach the file again.
    for _ in 0..20 {
        assert!(auth.authenticate(&bearer(&ec_token)).is_err());
    }
    assert_eq!(auth.jwks_loads(), 1);

    // With no interval, publishing the new key lets its tokens in on the next unknown kid.
    cfg.jwks_refresh_seconds = 0;
    let auth = Authenticator::new(&cfg);
    assert!(auth.authenticate(&bearer(&ec_token)).is_err());
    std::fs::write(&path, full.to_string()).unwrap();
    assert_eq!(
        auth.authenticate(&bearer(&ec_token)).unwrap().subject,
        "alice"
    );
    assert_eq!(auth.jwks_loads(), 3);
}

#[test]
fn the_configuration_pins_algorithms_and_requires_their_keys() {
    let settings = |pairs: Vec<(&'static str, String)>| {
        shared::config::Settings::new(move |k| {
            pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
    };
    assert!(
        AuthConfig::from_settings(&settings(vec![("AUTH__JWT_ALGORITHM", "RS256".into())]))
            .is_err(),
        "RS256 needs a JWKS"
    );
    assert!(
        AuthConfig::from_settings(&settings(vec![("AUTH__JWT_ALGORITHM", "HS384".into())]))
            .is_err()
    );
    let jwks = std::fs::read_to_string(fixture("jwks.json")).unwrap();
    let cfg = AuthConfig::from_settings(&settings(vec![
        ("AUTH__JWT_ALGORITHM", "RS256,ES256".into()),
        ("AUTH__JWKS", jwks),
    ]))
    .unwrap();
    assert_eq!(cfg.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
    assert!(cfg.secret.is_none(), "no HS256 secret is needed or read");
    let bad = AuthConfig::from_settings(&settings(vec![
        ("AUTH__JWT_ALGORITHM", "RS256".into()),
        ("AUTH__JWKS", "{".into()),
    ]))
    .unwrap();
    assert!(
        Authenticator::try_new(&bad).is_err(),
        "a broken JWKS stops the function at start-up"
    );
}
