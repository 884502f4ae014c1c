//! Opaque paging cursors: a page's position as base64url JSON. A client can only hand back
//! one this API gave out; anything else is a `400`.

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
}
