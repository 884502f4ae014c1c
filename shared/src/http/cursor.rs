//! Paging: the `limit` parameter, opaque cursors (a page's position as base64url JSON; a
//! client can only hand back one this API gave out, anything else is a `400`), and the
//! headers that name the next page.

use super::problem::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub fn encode<T: Serialize>(position: &T) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).unwrap_or_default())
}

/// The position in `raw`, or a `400` naming the cursor as not one of ours.
pub fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, ApiError> {
    URL_SAFE_NO_PAD
        .decode(raw)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(not_ours)
}

/// The answer to a cursor this API did not give out.
pub fn not_ours() -> ApiError {
    ApiError::BadRequest("cursor is not one this API gave out".into())
}

/// A page's `limit`: `default` when absent, else a whole number from 1 to `max` (`400`).
pub fn limit(
    params: Option<&lambda_http::aws_lambda_events::query_map::QueryMap>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match params.and_then(|p| p.first("limit")) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::BadRequest(format!("limit must be a whole number from 1 to {max}"))
            }),
    }
}

/// Names the next page: `X-Next-Cursor: <token>` and `Link: <path?the same query with the
/// next cursor>; rel="next"` (the query percent-encoded: filters may hold any text).
pub fn link_next(
    headers: &mut lambda_http::http::HeaderMap,
    path: &str,
    params: &lambda_http::aws_lambda_events::query_map::QueryMap,
    token: &str,
) {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(k, _)| *k != "cursor") {
        query.append_pair(k, v);
    }
    query.append_pair("cursor", token);
    let link = format!("<{path}?{}>; rel=\"next\"", query.finish());
    for (name, value) in [("x-next-cursor", token.to_string()), ("link", link)] {
        if let Ok(v) = lambda_http::http::HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_and_a_made_up_one_is_a_400() {
        let raw = encode(&(17_i64, "x".to_string()));
        assert_eq!(decode::<(i64, String)>(&raw).unwrap(), (17, "x".into()));
        for bad in ["0", "not-ours", &encode(&"a string")] {
            let err = decode::<(i64, String)>(bad).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }

    fn query(pairs: &[(&str, &str)]) -> lambda_http::aws_lambda_events::query_map::QueryMap {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<std::collections::HashMap<_, _>>()
            .into()
    }

    #[test]
    fn a_limit_is_the_default_when_absent_and_a_400_outside_its_range() {
        assert_eq!(limit(None, 5, 25).unwrap(), 5);
        assert_eq!(limit(Some(&query(&[("limit", "25")])), 5, 25).unwrap(), 25);
        for bad in ["0", "26", "-1", "two"] {
            let err = limit(Some(&query(&[("limit", bad)])), 5, 25).unwrap_err();
            assert_eq!(err.status(), 400, "{bad}");
        }
    }

    #[test]
    fn the_next_page_keeps_the_query_and_replaces_the_cursor() {
        let mut headers = lambda_http::http::HeaderMap::new();
        let params = query(&[("status_filter", "open,in review"), ("cursor", "old")]);
        link_next(&mut headers, "/api/v1/reviews", &params, "next");
        assert_eq!(headers["x-next-cursor"], "next");
        assert_eq!(
            headers["link"],
            "</api/v1/reviews?status_filter=open%2Cin+review&cursor=next>; rel=\"next\""
        );
    }
}
