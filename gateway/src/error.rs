//! Every error the gateway answers, in one table: code, status, and the JSON body of the REST
//! contract, `{"error": {"code", "message", "details", "request_id"}}`.
//!
//! Handlers return [`ApiError`]; the request middleware ([`crate::request`]) writes the body with
//! the request's id, and turns any other error response (an unknown route, a body over the limit,
//! an extractor's rejection) into the same shape; [`crate::connection`] does the same for what
//! hyper answers by itself to a request it cannot parse.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemas::{FieldError, Invalid};
use serde_json::json;

/// The error codes of the REST contract and their HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// 400: the body is not valid JSON.
    MalformedJson,
    /// 400: one or more fields are wrong; `details` names each.
    InvalidRequest,
    /// 401: no token, or not a valid one.
    Unauthorized,
    /// 401: the token has expired.
    TokenExpired,
    /// 401: the token's session was ended (logout).
    TokenRevoked,
    /// 401: wrong username or password.
    BadCredentials,
    /// 403: the caller's role may not do this.
    Forbidden,
    /// 403: the admin API key is missing or wrong.
    BadApiKey,
    /// 404: no such thing.
    NotFound,
    /// 405: the route exists with other methods.
    MethodNotAllowed,
    /// 409: the username is taken.
    UsernameTaken,
    /// 409: the command needs an avatar in the world and the player has none.
    NotInWorld,
    /// 409: the same `Idempotency-Key` was used for a different command.
    IdempotencyConflict,
    /// 409: a read's `min_seq` is beyond what the read models hold yet.
    ProjectionBehind,
    /// 413: the body is larger than allowed.
    PayloadTooLarge,
    /// 414: the request's URI is longer than the server reads.
    UriTooLong,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 429: too many requests; `Retry-After` says when to come back.
    RateLimited,
    /// 429: the player, or the client's address, holds as many live streams as it may.
    TooManyStreams,
    /// 431: the request's headers are larger than the server reads.
    HeadersTooLarge,
    /// 500: a fault of the gateway's.
    Internal,
    /// 503: a server the gateway depends on is unreachable.
    Unavailable,
}

impl Code {
    /// Every code, for the OpenAPI document.
    pub const ALL: &[Code] = &[
        Code::MalformedJson,
        Code::InvalidRequest,
        Code::Unauthorized,
        Code::TokenExpired,
        Code::TokenRevoked,
        Code::BadCredentials,
        Code::Forbidden,
        Code::BadApiKey,
        Code::NotFound,
        Code::MethodNotAllowed,
        Code::UsernameTaken,
        Code::NotInWorld,
        Code::IdempotencyConflict,
        Code::ProjectionBehind,
        Code::PayloadTooLarge,
        Code::UriTooLong,
        Code::UnsupportedMediaType,
        Code::RateLimited,
        Code::TooManyStreams,
        Code::HeadersTooLarge,
        Code::Internal,
        Code::Unavailable,
    ];

    /// The snake_case code in the body.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::MalformedJson => "malformed_json",
            Code::InvalidRequest => "invalid_request",
            Code::Unauthorized => "unauthorized",
            Code::TokenExpired => "token_expired",
            Code::TokenRevoked => "token_revoked",
            Code::BadCredentials => "bad_credentials",
            Code::Forbidden => "forbidden",
            Code::BadApiKey => "bad_api_key",
            Code::NotFound => "not_found",
            Code::MethodNotAllowed => "method_not_allowed",
            Code::UsernameTaken => "username_taken",
            Code::NotInWorld => "not_in_world",
            Code::IdempotencyConflict => "idempotency_conflict",
            Code::ProjectionBehind => "projection_behind",
            Code::PayloadTooLarge => "payload_too_large",
            Code::UriTooLong => "uri_too_long",
            Code::UnsupportedMediaType => "unsupported_media_type",
            Code::RateLimited => "rate_limited",
            Code::TooManyStreams => "too_many_streams",
            Code::HeadersTooLarge => "headers_too_large",
            Code::Internal => "internal",
            Code::Unavailable => "unavailable",
        }
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Code::MalformedJson | Code::InvalidRequest => StatusCode::BAD_REQUEST,
            Code::Unauthorized | Code::TokenExpired | Code::TokenRevoked | Code::BadCredentials => {
                StatusCode::UNAUTHORIZED
            }
            Code::Forbidden | Code::BadApiKey => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Code::UsernameTaken
            | Code::NotInWorld
            | Code::IdempotencyConflict
            | Code::ProjectionBehind => StatusCode::CONFLICT,
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UriTooLong => StatusCode::URI_TOO_LONG,
            Code::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::RateLimited | Code::TooManyStreams => StatusCode::TOO_MANY_REQUESTS,
            Code::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The code for an error response made by something other than a handler (the router, a
    /// layer), from its status.
    pub fn for_status(status: StatusCode) -> Code {
        match status {
            StatusCode::BAD_REQUEST => Code::InvalidRequest,
            StatusCode::UNAUTHORIZED => Code::Unauthorized,
            StatusCode::FORBIDDEN => Code::Forbidden,
            StatusCode::NOT_FOUND => Code::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => Code::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Code::PayloadTooLarge,
            StatusCode::URI_TOO_LONG => Code::UriTooLong,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::UnsupportedMediaType,
            StatusCode::TOO_MANY_REQUESTS => Code::RateLimited,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Code::HeadersTooLarge,
            StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
            // Any other refusal of what the client sent (426 for a WebSocket over HTTP/1.0, say)
            // is the client's to fix, not the gateway's fault.
            status if status.is_client_error() => Code::InvalidRequest,
            _ => Code::Internal,
        }
    }

    /// What to tell people when nothing more specific is known.
    fn default_message(self) -> &'static str {
        match self {
            Code::NotFound => "no such resource",
            Code::MethodNotAllowed => "this route does not take that method",
            Code::PayloadTooLarge => "the request body is too large",
            Code::UriTooLong => "the request's URI is too long",
            Code::HeadersTooLarge => "the request's headers are too large",
            Code::InvalidRequest => "the request is invalid",
            Code::UnsupportedMediaType => "the request body must be application/json",
            Code::Unavailable => {
                "a server the gateway depends on is unreachable; try again shortly"
            }
            Code::RateLimited => "too many requests; see Retry-After",
            Code::Unauthorized => "a valid bearer token is required",
            Code::Forbidden => "not allowed",
            _ => "the request failed",
        }
    }
}

/// An error answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct ApiError {
    /// Which error.
    pub code: Code,
    /// For people.
    pub message: String,
    /// One entry per bad field, for 400s.
    pub details: Vec<FieldError>,
    /// Seconds until a retry may succeed, for 429 and 503.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with a message.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    /// An error with the code's usual message.
    pub fn of(code: Code) -> Self {
        Self::new(code, code.default_message())
    }

    /// 503 for a dependency that is down, with a hint to retry.
    pub fn unavailable(what: &str) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                Code::Unavailable,
                format!("{what} is unreachable; try again shortly"),
            )
        }
    }

    /// 500, logged with its cause; the client sees no internals.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::of(Code::Internal)
    }

    /// The body, with the request's id.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        json!({"error": {
            "code": self.code.as_str(),
            "message": self.message,
            "details": self.details,
            "request_id": request_id,
        }})
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        let malformed = invalid.details.iter().any(|d| d.code == "malformed_json");
        let code = if malformed {
            Code::MalformedJson
        } else {
            Code::InvalidRequest
        };
        Self {
            code,
            message: if malformed {
                "the body is not valid JSON".to_owned()
            } else {
                "the request is invalid; see details".to_owned()
            },
            details: invalid.details,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    /// The status and headers; the body is written by the request middleware, which knows the
    /// request's id.
    fn into_response(self) -> Response {
        let mut response = self.code.status().into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response.extensions_mut().insert(self);
        response
    }
}

/// A 400 detail for each parameter of `query` that is not one of `known`.
pub fn unknown_parameters<'a>(
    query: &'a std::collections::HashMap<String, String>,
    known: &'a [&str],
) -> impl Iterator<Item = FieldError> + 'a {
    query
        .keys()
        .filter(|name| !known.contains(&name.as_str()))
        .map(|name| {
            FieldError::new(
                name.clone(),
                "unknown_parameter",
                "is not a parameter of this route",
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed() {
        // A new variant fails to compile here until it is listed in `Code::ALL` too.
        let listed = |code: Code| match code {
            Code::MalformedJson
            | Code::InvalidRequest
            | Code::Unauthorized
            | Code::TokenExpired
            | Code::TokenRevoked
            | Code::BadCredentials
            | Code::Forbidden
            | Code::BadApiKey
            | Code::NotFound
            | Code::MethodNotAllowed
            | Code::UsernameTaken
            | Code::NotInWorld
            | Code::IdempotencyConflict
            | Code::ProjectionBehind
            | Code::PayloadTooLarge
            | Code::UriTooLong
            | Code::UnsupportedMediaType
            | Code::RateLimited
            | Code::TooManyStreams
            | Code::HeadersTooLarge
            | Code::Internal
            | Code::Unavailable => Code::ALL.contains(&code),
        };
        assert!(Code::ALL.iter().all(|c| listed(*c)));
        assert_eq!(Code::ALL.len(), 22);
    }

    #[test]
    fn every_status_maps_back_to_its_code() {
        for code in [
            Code::NotFound,
            Code::MethodNotAllowed,
            Code::PayloadTooLarge,
            Code::UriTooLong,
            Code::UnsupportedMediaType,
            Code::RateLimited,
            Code::HeadersTooLarge,
            Code::Unavailable,
        ] {
            assert_eq!(Code::for_status(code.status()), code);
        }
    }

    #[test]
    fn the_body_has_the_contract_shape() {
        let err = ApiError::from(Invalid::one("x", "required", "is required"));
        let body = err.body("req-1");
        assert_eq!(body["error"]["code"], "invalid_request");
        assert_eq!(body["error"]["details"][0]["field"], "x");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert_eq!(err.code.status(), StatusCode::BAD_REQUEST);
    }
}
