//! A configured secret (a password or a token): plain, or an argon2 or bcrypt hash. Plain
//! secrets are compared as SHA-256 digests in constant time, so neither their content nor
//! their length leaks through timing; hashes are verified by their own algorithm.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret as the config gives it.
#[derive(Clone)]
pub enum Secret {
    /// The secret itself, kept only as its digest.
    Plain([u8; 32]),
    /// A PHC string `$argon2id$v=19$m=...,t=...,p=...$salt$hash` (also argon2i, argon2d).
    Argon2(String),
    /// A bcrypt string `$2b$12$...` (also `$2a$`, `$2y$`).
    Bcrypt(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Plain(_) => "Secret::Plain(..)",
            Secret::Argon2(_) => "Secret::Argon2(..)",
            Secret::Bcrypt(_) => "Secret::Bcrypt(..)",
        })
    }
}

impl Secret {
    /// Reads a secret: a value that is an argon2 or bcrypt string is taken as that hash (and
    /// must parse), anything else as the secret itself. The error says what is wrong without
    /// quoting the secret.
    pub fn new(value: &str) -> Result<Secret, String> {
        if value.is_empty() {
            return Err("is empty".into());
        }
        if value.starts_with("$argon2") {
            let not_argon2 = |why: String| {
                format!(
                    "looks like an argon2 hash but does not parse ({why}): give the PHC string \
                     `stateplug hash-secret` prints"
                )
            };
            let hash = PasswordHash::new(value).map_err(|e| not_argon2(e.to_string()))?;
            argon2::Algorithm::try_from(hash.algorithm).map_err(|e| not_argon2(e.to_string()))?;
            argon2::Params::try_from(&hash).map_err(|e| not_argon2(e.to_string()))?;
            if hash.hash.is_none() || hash.salt.is_none() {
                return Err(not_argon2("no salt or hash".into()));
            }
            return Ok(Secret::Argon2(value.to_string()));
        }
        if ["$2a$", "$2b$", "$2y$"]
            .iter()
            .any(|p| value.starts_with(p))
        {
            // A bcrypt string is 60 characters: `$2b$` cost `$` 53 characters of salt and hash.
            let cost = value.get(4..6).and_then(|c| c.parse::<u32>().ok());
            if value.len() != 60 || !cost.is_some_and(|c| (4..=31).contains(&c)) {
                return Err(
                    "looks like a bcrypt hash but is not one (60 characters, `$2b$<cost>$...`)"
                        .into(),
                );
            }
            return Ok(Secret::Bcrypt(value.to_string()));
        }
        Ok(Secret::Plain(Sha256::digest(value.as_bytes()).into()))
    }

    /// Whether checking `presented` costs a hash computation (worth caching).
    pub fn is_hashed(&self) -> bool {
        !matches!(self, Secret::Plain(_))
    }

    /// Whether `presented` is this secret. Slow for hashes (by design): call it off the
    /// async runtime's threads.
    pub fn verify(&self, presented: &str) -> bool {
        match self {
            Secret::Plain(digest) => {
                let given: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
                bool::from(given.ct_eq(digest))
            }
            Secret::Argon2(phc) => PasswordHash::new(phc).is_ok_and(|hash| {
                argon2::Argon2::default()
                    .verify_password(presented.as_bytes(), &hash)
                    .is_ok()
            }),
            Secret::Bcrypt(hash) => bcrypt::verify(presented, hash).unwrap_or(false),
        }
    }
}

/// The argon2id PHC string of `secret` with a fresh salt and the crate's default cost (what
/// `stateplug hash-secret` prints for the config).
pub fn hash(secret: &str) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| format!("cannot hash the secret: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_argon2_and_bcrypt_secrets_verify_only_their_secret() {
        let argon = hash("s3cret").unwrap();
        let bcrypt = bcrypt::hash("s3cret", 4).unwrap();
        for text in ["s3cret", argon.as_str(), bcrypt.as_str()] {
            let secret = Secret::new(text).unwrap();
            assert!(secret.verify("s3cret"), "{secret:?}");
            assert!(!secret.verify("s3cret "), "{secret:?}");
            assert!(!secret.verify(""), "{secret:?}");
        }
        assert!(!Secret::new("s3cret").unwrap().is_hashed());
        assert!(Secret::new(&argon).unwrap().is_hashed());
    }

    #[test]
    fn malformed_hashes_are_refused_without_quoting_them() {
        for bad in [
            "$argon2id$nonsense",
            "$2b$12$short",
            "$2b$99$".repeat(9).as_str(),
            "",
        ] {
            let error = Secret::new(bad).unwrap_err();
            assert!(bad.is_empty() || !error.contains(bad), "{error}");
        }
    }
}
