//! Reading JSON bodies at the edge: `application/json` only (415 otherwise), within the body
//! limit (413), valid JSON (400 `malformed_json`).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde_json::Value;

use crate::error::{ApiError, Code};

/// A request body that is JSON, read as a [`Value`] for the handler to check field by field.
#[derive(Debug, Clone)]
pub struct JsonBody(pub Value);

/// Whether a `Content-Type` is JSON (`application/json`, with or without parameters, or a
/// `+json` type).
pub fn is_json(content_type: Option<&str>) -> bool {
    let Some(mime) = content_type
        .and_then(|c| c.split(';').next())
        .map(str::trim)
    else {
        return false;
    };
    let mime = mime.to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !is_json(content_type) {
            return Err(ApiError::new(
                Code::UnsupportedMediaType,
                "the request body must be application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                let status = rejection.status();
                ApiError::new(Code::for_status(status), rejection.body_text())
            })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::from(schemas::Invalid::one(
                "",
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            ))
        })?;
        Ok(JsonBody(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("application/json; charset=utf-8")));
        assert!(is_json(Some("Application/JSON")));
        assert!(is_json(Some("application/problem+json")));
        assert!(!is_json(Some("text/plain")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }
}
