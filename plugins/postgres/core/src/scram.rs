//! Checking a password against a stored SCRAM-SHA-256 verifier.
//!
//! PostgreSQL stores `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`
//! (RFC 5803). A password matches when
//! `SHA-256(HMAC(PBKDF2-HMAC-SHA-256(password, salt, iterations), "Client Key"))`
//! equals StoredKey. The password is SASLprep-normalized first, as
//! PostgreSQL and libpq do. This is how the plugins notice that a role's
//! password no longer matches the one in its Secret, without the verifier
//! ever leaving the plugin.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The mechanism prefix of a SCRAM-SHA-256 verifier.
const PREFIX: &str = "SCRAM-SHA-256$";
/// The most PBKDF2 iterations checked. PostgreSQL uses 4096; the cap keeps a
/// tampered verifier from eating the reconcile's deadline.
pub const MAX_ITERATIONS: u32 = 100_000;

/// A stored verifier that cannot be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScramError {
    /// Not of the form `SCRAM-SHA-256$i:salt$StoredKey:ServerKey` (an MD5
    /// hash, or garbage).
    NotScram,
    /// More iterations than [`MAX_ITERATIONS`].
    TooManyIterations(u32),
}

impl std::fmt::Display for ScramError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotScram => f.write_str("the stored password is not a SCRAM-SHA-256 verifier"),
            Self::TooManyIterations(n) => write!(
                f,
                "the stored verifier uses {n} iterations; at most {MAX_ITERATIONS} are checked"
            ),
        }
    }
}

impl std::error::Error for ScramError {}

/// Whether `password` matches the SCRAM-SHA-256 `verifier`.
///
/// # Errors
/// [`ScramError`] when the verifier cannot be checked; callers treat that
/// like a mismatch and set a fresh verifier.
pub fn verify_scram_sha_256(password: &str, verifier: &str) -> Result<bool, ScramError> {
    let (iterations, salt, stored_key) = parse(verifier)?;
    let normalized = match stringprep::saslprep(password) {
        Ok(prepared) => prepared.into_owned(),
        // PostgreSQL uses the raw bytes when SASLprep refuses the password.
        Err(_) => password.to_owned(),
    };
    let salted = salted_password(normalized.as_bytes(), &salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let computed = Sha256::digest(client_key);
    Ok(constant_time_eq(&computed, &stored_key))
}

fn parse(verifier: &str) -> Result<(u32, Vec<u8>, Vec<u8>), ScramError> {
    let rest = verifier.strip_prefix(PREFIX).ok_or(ScramError::NotScram)?;
    let (params, keys) = rest.split_once('$').ok_or(ScramError::NotScram)?;
    let (iterations, salt) = params.split_once(':').ok_or(ScramError::NotScram)?;
    let (stored_key, _server_key) = keys.split_once(':').ok_or(ScramError::NotScram)?;
    let iterations: u32 = iterations.parse().map_err(|_| ScramError::NotScram)?;
    if iterations == 0 {
        return Err(ScramError::NotScram);
    }
    if iterations > MAX_ITERATIONS {
        return Err(ScramError::TooManyIterations(iterations));
    }
    let salt = STANDARD.decode(salt).map_err(|_| ScramError::NotScram)?;
    let stored_key = STANDARD
        .decode(stored_key)
        .map_err(|_| ScramError::NotScram)?;
    if stored_key.len() != 32 {
        return Err(ScramError::NotScram);
    }
    Ok((iterations, salt, stored_key))
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fn keyed(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps
    // a plugin from ever trapping.
    Hmac::<Sha256>::new_from_slice(key).unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()))
}

/// PBKDF2-HMAC-SHA-256 with one 32-byte block (SCRAM's `Hi`). The keyed
/// HMAC state is computed once and cloned per iteration.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let keyed = keyed(password);
    let mut mac = keyed.clone();
    mac.update(salt);
    mac.update(&1_u32.to_be_bytes());
    let mut block: [u8; 32] = mac.finalize().into_bytes().into();
    let mut result = block;
    for _ in 1..iterations {
        let mut mac = keyed.clone();
        mac.update(&block);
        block = mac.finalize().into_bytes().into();
        for (out, byte) in result.iter_mut().zip(block) {
            *out ^= byte;
        }
    }
    result
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use wasm_operator_sdk::scram_sha_256_verifier;

    use super::*;

    #[test]
    fn verifier_made_by_the_sdk_matches_its_password_only() {
        let verifier = scram_sha_256_verifier("correct horse");
        assert_eq!(verify_scram_sha_256("correct horse", &verifier), Ok(true));
        assert_eq!(verify_scram_sha_256("correct horsf", &verifier), Ok(false));
        assert_eq!(verify_scram_sha_256("", &verifier), Ok(false));
    }

    #[test]
    fn verifier_from_postgresql_matches() {
        // `SET password_encryption = 'scram-sha-256'; CREATE ROLE r PASSWORD 'secret';`
        // then `SELECT rolpassword FROM pg_authid WHERE rolname = 'r'` on PostgreSQL 15.
        let verifier = "SCRAM-SHA-256$4096:CNk6di1YoX3iLzDTiMUmoA==$\
            VEoyn09gAc4pxuSWns6Fy0Aby52UsAKkhoLWLB/Y5mI=:\
            qzCNYTEGrgz60IG65WECYl/02O1TDugBwLB3SOdsxxw=";
        assert_eq!(verify_scram_sha_256("secret", verifier), Ok(true));
        assert_eq!(verify_scram_sha_256("Secret", verifier), Ok(false));
    }

    #[test]
    fn md5_hashes_and_garbage_are_not_scram() {
        for stored in [
            "md5a3556571e93b0d20722ba62be61e8c2d",
            "SCRAM-SHA-256$x:abc$def:ghi",
            "SCRAM-SHA-256$4096:!!$AAAA:BBBB",
            "",
        ] {
            assert_eq!(
                verify_scram_sha_256("p", stored),
                Err(ScramError::NotScram),
                "{stored}"
            );
        }
    }

    #[test]
    fn huge_iteration_counts_are_not_computed() {
        let verifier = scram_sha_256_verifier("p").replacen("$4096:", "$5000000:", 1);
        assert_eq!(
            verify_scram_sha_256("p", &verifier),
            Err(ScramError::TooManyIterations(5_000_000))
        );
    }
}
