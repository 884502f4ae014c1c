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
    json!({"sub": "alice", "iat": now(), "exp": now() + 600, "roles": ["observer"], "iss": "https://id.example", "aud": "neuraforge"})
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
        max_lifetime_seconds: Some(86_400),
        // The suite signs HS256 with the sample secret but holds it to every rule.
        sample_secret: false,
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
        ("AUTH__JWT_ISSUER", "https://id.example".into()),
        ("AUTH__JWT_AUDIENCE", "neuraforge".into()),
    ]))
    .unwrap();
    assert_eq!(cfg.algorithms, vec![Algorithm::RS256, Algorithm::ES256]);
    assert!(cfg.secret.is_none(), "no HS256 secret is needed or read");
    let bad = AuthConfig::from_settings(&settings(vec![
        ("AUTH__JWT_ALGORITHM", "RS256".into()),
        ("AUTH__JWKS", "{".into()),
        ("AUTH__JWT_ISSUER", "https://id.example".into()),
        ("AUTH__JWT_AUDIENCE", "neuraforge".into()),
    ]))
    .unwrap();
    assert!(
        Authenticator::try_new(&bad).is_err(),
        "a broken JWKS stops the function at start-up"
    );
}

#[test]
fn a_configured_issuer_and_audience_are_required_not_only_compared() {
    let auth = Authenticator::new(&config(&[Algorithm::RS256], jwks_file()));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        sign(Algorithm::RS256, Some("rsa-2026"), &c)
    };
    let refused = [
        (
            "no iss",
            with(&|c| drop(c.as_object_mut().unwrap().remove("iss"))),
        ),
        (
            "no aud",
            with(&|c| drop(c.as_object_mut().unwrap().remove("aud"))),
        ),
        (
            "aud list without ours",
            with(&|c| c["aud"] = json!(["billing", "other"])),
        ),
        ("empty aud list", with(&|c| c["aud"] = json!([]))),
    ];
    for (why, token) in &refused {
        assert!(
            matches!(
                auth.authenticate(&bearer(token)),
                Err(ApiError::Unauthorized)
            ),
            "{why} was not refused"
        );
    }
    let listed = with(&|c| c["aud"] = json!(["billing", "neuraforge"]));
    assert_eq!(
        auth.authenticate(&bearer(&listed)).unwrap().subject,
        "alice"
    );
}

#[test]
fn a_token_may_not_live_longer_than_the_configured_maximum() {
    let auth = Authenticator::new(&config(&[Algorithm::HS256, Algorithm::RS256], jwks_file()));
    let with = |alg: Algorithm, f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        sign(alg, (alg == Algorithm::RS256).then_some("rsa-2026"), &c)
    };
    let ten_years = |c: &mut Value| c["exp"] = json!(now() + 10 * 365 * 86_400);
    let no_iat = |c: &mut Value| drop(c.as_object_mut().unwrap().remove("iat"));
    // Backdating `exp - iat` does not help: an `iat` in the future is refused too.
    let future_iat = |c: &mut Value| {
        c["iat"] = json!(now() + 3600);
        c["exp"] = json!(now() + 7200);
    };
    for alg in [Algorithm::HS256, Algorithm::RS256] {
        for (why, f) in [
            ("a ten-year token", &ten_years as &dyn Fn(&mut Value)),
            ("a token without iat", &no_iat),
            ("a token issued in the future", &future_iat),
        ] {
            assert!(
                matches!(
                    auth.authenticate(&bearer(&with(alg, f))),
                    Err(ApiError::Unauthorized)
                ),
                "{why} ({alg:?}) was not refused"
            );
        }
        let a_day = with(alg, &|c| {
            c["exp"] = json!(c["iat"].as_u64().unwrap() + 86_400)
        });
        assert!(
            auth.authenticate(&bearer(&a_day)).is_ok(),
            "24 h is allowed"
        );
    }

    // 0 switches the check off (an operator's explicit choice).
    let mut cfg = config(&[Algorithm::RS256], jwks_file());
    cfg.max_lifetime_seconds = None;
    let unlimited = Authenticator::new(&cfg);
    let token = with(Algorithm::RS256, &ten_years);
    assert!(unlimited.authenticate(&bearer(&token)).is_ok());
}

#[test]
fn outside_the_local_stack_start_up_needs_an_issuer_and_an_audience() {
    let settings = |pairs: Vec<(&'static str, &'static str)>| {
        shared::config::Settings::new(move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        })
    };
    let secret = (
        "AUTH__JWT_SECRET_KEY",
        "0123456789abcdef0123456789abcdef-real",
    );
    let issuer = ("AUTH__JWT_ISSUER", "https://id.example");
    let audience = ("AUTH__JWT_AUDIENCE", "neuraforge");
    for (missing, pairs) in [
        ("AUTH__JWT_ISSUER", vec![secret, audience]),
        ("AUTH__JWT_AUDIENCE", vec![secret, issuer]),
    ] {
        let err = AuthConfig::from_settings(&settings(pairs)).err().unwrap();
        assert_eq!(err.setting, missing);
    }
    assert!(AuthConfig::from_settings(&settings(vec![secret, issuer, audience])).is_ok());
    // The local stack (an emulator endpoint) may leave both unset.
    let local = ("AWS_ENDPOINT_URL", "http://127.0.0.1:5005");
    assert!(AuthConfig::from_settings(&settings(vec![secret, local])).is_ok());
    // The lifetime cap is on by default.
    let cfg = AuthConfig::from_settings(&settings(vec![secret, issuer, audience])).unwrap();
    assert_eq!(cfg.max_lifetime_seconds, Some(86_400));
}

#[tokio::test]
async fn the_signing_secret_is_read_from_ssm_at_cold_start() {
    use shared::auth::SECRET_PARAMETER_SETTING;
    let stack = neuraforge_tests::TestStack::new().await;
    // Only the parameter's name is configured, as in template.yaml.
    let settings = stack.settings_with(&[("AUTH__JWT_SECRET_KEY", "")]);
    let auth = shared::auth::load(&stack.sdk, &settings).await.unwrap();
    let token = neuraforge_tests::token("alice", &["observer"]);
    assert_eq!(auth.authenticate(&bearer(&token)).unwrap().subject, "alice");

    let missing = stack.settings_with(&[
        ("AUTH__JWT_SECRET_KEY", ""),
        (SECRET_PARAMETER_SETTING, "/no-such/jwt-secret"),
    ]);
    let err = shared::auth::load(&stack.sdk, &missing)
        .await
        .err()
        .unwrap();
    assert_eq!(err.setting, SECRET_PARAMETER_SETTING, "{err}");

    // With an identity provider's keys alone (the console's OpenID Connect sign-in), the
    // secret's parameter is not read: a missing one does not fail the cold start, and an
    // HS256 token signed with the secret is refused.
    let jwks = serde_json::json!({"keys": [{
        "kty": "RSA", "kid": "idp-1", "alg": "RS256", "use": "sig", "e": "AQAB",
        "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw"
    }]})
    .to_string();
    let idp_only = stack.settings_with(&[
        ("AUTH__JWT_SECRET_KEY", ""),
        ("AUTH__JWT_ALGORITHM", "RS256"),
        ("AUTH__JWKS", &jwks),
        (SECRET_PARAMETER_SETTING, "/no-such/jwt-secret"),
    ]);
    let auth = shared::auth::load(&stack.sdk, &idp_only).await.unwrap();
    assert!(auth.authenticate(&bearer(&token)).is_err());
}
