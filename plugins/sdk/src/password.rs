//! Passwords from a secure random source and SCRAM-SHA-256 verifiers for them.

/// Characters of generated passwords: letters and digits, safe in URLs,
/// connection strings and shells.
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// The largest multiple of the alphabet size that fits in a byte; bytes at or
/// above it are rejected so every character is equally likely.
const UNBIASED_LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;

/// The secure random source failed (in a component: `wasi:random`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the secure random source failed: {0}")]
pub struct RandomError(getrandom::Error);

/// Generates a password of `length` letters and digits from the platform's
/// secure random source (about 5.95 bits each: 32 characters ≈ 190 bits).
///
/// # Errors
/// [`RandomError`] when the random source fails.
pub fn generate_password(length: usize) -> Result<String, RandomError> {
    let mut password = String::with_capacity(length);
    let mut buffer = [0_u8; 64];
    while password.len() < length {
        getrandom::fill(&mut buffer).map_err(RandomError)?;
        for byte in buffer {
            if byte < UNBIASED_LIMIT && password.len() < length {
                password.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    Ok(password)
}

/// Makes a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$4096:salt$StoredKey:ServerKey`)
/// for `password`, with a random salt, as PostgreSQL stores it. Send the
/// verifier, never the password, in a [`sensitive`](crate::SqlStatement::sensitive)
/// statement.
#[must_use]
pub fn scram_sha_256_verifier(password: &str) -> String {
    postgres_protocol::password::scram_sha_256(password.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_password_has_the_length_and_alphabet_asked_for() {
        let password = generate_password(40).unwrap();
        assert_eq!(password.len(), 40);
        assert!(password.bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn two_generated_passwords_differ() {
        assert_ne!(
            generate_password(32).unwrap(),
            generate_password(32).unwrap()
        );
    }

    #[test]
    fn verifier_has_the_postgres_scram_format_and_hides_the_password() {
        let verifier = scram_sha_256_verifier("s3cret-pass");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert_eq!(verifier.matches('$').count(), 2);
        assert!(!verifier.contains("s3cret-pass"));
    }
}
