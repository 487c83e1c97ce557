//! Passwords: Argon2id hashes with a fresh salt, verified off the async threads, and a decoy
//! hash so that a login takes as long whether or not the account exists.

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use secrecy::{ExposeSecret, SecretString};

use crate::error::ApiError;

/// Hashes a password with Argon2id and a fresh salt (off the async threads: it is slow on
/// purpose).
pub async fn hash_password(password: SecretString) -> Result<String, ApiError> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.expose_secret().as_bytes(), &salt)
            .map(|h| h.to_string())
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)
}

/// A hash of a password nobody has, verified when the username is unknown so that a login
/// takes as long whether or not the account exists.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$2Ym1Tl0wHk2LJyA7Y1bJ1+7iWwNb4kXuZc0e2b2zs6A";

/// Whether `password` matches `hash` (or, with no hash, spends the same time and says no).
pub async fn verify_password(
    password: SecretString,
    hash: Option<String>,
) -> Result<bool, ApiError> {
    tokio::task::spawn_blocking(move || {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| DECOY_HASH.to_owned());
        let Ok(parsed) = PasswordHash::new(&hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(password.expose_secret().as_bytes(), &parsed)
            .is_ok();
        known && matches
    })
    .await
    .map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_hash_is_a_real_argon2_hash() {
        // Were it malformed, a login for an unknown user would return at once and tell.
        let parsed = PasswordHash::new(DECOY_HASH).expect("parses");
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
    }

    #[tokio::test]
    async fn passwords_verify_only_against_their_hash() {
        let hash = hash_password(SecretString::from("correct horse"))
            .await
            .expect("hash");
        assert!(
            verify_password(SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("wrong horse"), Some(hash))
                .await
                .expect("verify")
        );
        assert!(
            !verify_password(SecretString::from("correct horse"), None)
                .await
                .expect("verify")
        );
    }
}
