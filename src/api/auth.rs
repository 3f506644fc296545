//! The optional bearer token. When the server has one, every `/api/v1` route needs
//! `Authorization: Bearer <token>`; anything else is 401 with a JSON error.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::ApiState;

pub async fn require_token(State(s): State<ApiState>, req: Request, next: Next) -> Response {
    let Some(token) = s.token() else {
        return next.run(req).await;
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    match given {
        Some(g) if token_matches(g, token) => next.run(req).await,
        Some(_) => unauthorized("wrong API token"),
        None => unauthorized("this API needs `Authorization: Bearer <token>`"),
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive.
fn bearer(value: &str) -> Option<&str> {
    let (scheme, rest) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in time that depends only on the expected token's length, never on where the
/// first wrong byte is, so that the token cannot be guessed byte by byte from response times.
pub fn token_matches(given: &str, expected: &str) -> bool {
    let (g, e) = (given.as_bytes(), expected.as_bytes());
    let mut same = (g.len() as u64).ct_eq(&(e.len() as u64));
    for (i, eb) in e.iter().enumerate() {
        same &= g.get(i).copied().unwrap_or(0).ct_eq(eb);
    }
    same.into()
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(token_matches("s3cret", "s3cret"));
        assert!(!token_matches("s3cre", "s3cret"));
        assert!(!token_matches("s3crett", "s3cret"));
        assert!(!token_matches("", "s3cret"));
        assert!(!token_matches("S3cret", "s3cret"));
        assert!(!token_matches("s3cret\0", "s3cret"));
    }

    #[test]
    fn bearer_scheme_is_parsed() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
