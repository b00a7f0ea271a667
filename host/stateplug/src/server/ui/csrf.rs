//! CSRF tokens of the dashboard's forms: HMAC-SHA256 over the caller's actor, the action and
//! the workspace, under a key drawn from the OS when the process first needs one. A token made
//! for one caller, action or workspace is refused for any other, and none outlives the
//! process (a restarted server asks to confirm again).

use std::sync::OnceLock;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The key tokens are made under.
pub(super) struct CsrfKey([u8; 32]);

impl CsrfKey {
    /// A key from the OS's random source.
    fn random() -> Result<CsrfKey, String> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| {
            format!(
                "the dashboard cannot draw its CSRF key from the OS's random source ({e}); \
                 its confirmations are unavailable until the server restarts with one"
            )
        })?;
        Ok(CsrfKey(key))
    }

    /// This process's key, drawn once.
    pub fn process() -> Result<&'static CsrfKey, &'static str> {
        static KEY: OnceLock<Result<CsrfKey, String>> = OnceLock::new();
        KEY.get_or_init(CsrfKey::random)
            .as_ref()
            .map_err(String::as_str)
    }

    fn mac(&self, actor: &str, action: &str, workspace: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        // Each field with its length first: no two triples give the same input.
        for field in [actor, action, workspace] {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field.as_bytes());
        }
        mac
    }

    /// The token a form of `action` on `workspace` carries for `actor`.
    pub fn token(&self, actor: &str, action: &str, workspace: &str) -> String {
        let tag = self.mac(actor, action, workspace).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    }

    /// Whether `token` is the one for `actor`, `action` and `workspace` (compared in constant
    /// time).
    pub fn verify(&self, token: &str, actor: &str, action: &str, workspace: &str) -> bool {
        let Ok(tag) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        self.mac(actor, action, workspace)
            .verify_slice(&tag)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_holds_only_for_its_actor_action_and_workspace() {
        let key = CsrfKey::random().unwrap();
        let token = key.token("user:alice", "force-unlock", "prod");
        assert!(key.verify(&token, "user:alice", "force-unlock", "prod"));
        assert!(!key.verify(&token, "user:bob", "force-unlock", "prod"));
        assert!(!key.verify(&token, "user:alice", "rollback", "prod"));
        assert!(!key.verify(&token, "user:alice", "force-unlock", "dev"));
        // The fields are length-prefixed: shifting text between them makes another token.
        assert!(!key.verify(&token, "user:alicef", "orce-unlock", "prod"));
        assert!(!key.verify("", "user:alice", "force-unlock", "prod"));
        assert!(!key.verify("not base64!", "user:alice", "force-unlock", "prod"));
        assert!(!key.verify(
            &token[..token.len() - 2],
            "user:alice",
            "force-unlock",
            "prod"
        ));
        // Another process (another key) does not accept it.
        let other = CsrfKey::random().unwrap();
        assert!(!other.verify(&token, "user:alice", "force-unlock", "prod"));
        assert!(std::ptr::eq(
            CsrfKey::process().unwrap(),
            CsrfKey::process().unwrap()
        ));
    }
}
