//! OIDC job tokens: a JWT given as the Basic-auth password (how CI systems pass theirs) or as
//! a Bearer token, checked against the issuer's keys (a JWKS) with issuer, audience and
//! expiry, its claims mapped to permissions by the config's rules.
//!
//! The keys come from a file, or from the issuer's JWKS URL: fetched at start, and again when
//! a token names a key id not among them (the issuer rotated its keys), at most once per
//! [`REFETCH_INTERVAL`] so unknown ids cannot make the server hammer the issuer.
//!
//! A rule applies when each of its `claims` matches (a pattern over the claim's text); its
//! permission patterns may name claims, `{project}-*`, filled with the claim's value (glob
//! characters in it escaped, so a claim never widens a rule).

use std::collections::BTreeMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::{Caller, Grant, Kind, Pattern, Permissions, Rule, Unauthenticated, Via};

/// A permission rule whose pattern may name claims.
#[derive(Debug, Clone)]
pub struct RuleTemplate {
    /// Workspaces, objects or namespaces.
    pub kind: Kind,
    /// The pattern, `{claim}` placeholders included.
    pub pattern: String,
    /// What it allows.
    pub allow: Permissions,
}

/// `claims = { ... }` and the permissions given when they match.
#[derive(Debug, Clone)]
pub struct ClaimRule {
    /// Claim name and the pattern its value must match.
    pub claims: Vec<(String, Pattern)>,
    /// What the rule grants.
    pub permissions: Vec<RuleTemplate>,
}

/// Where the issuer's public keys are.
#[derive(Debug, Clone)]
pub enum Jwks {
    /// Read from `jwks_file` with the config.
    Keys(JwkSet),
    /// Fetched from `jwks_url`.
    Url(String),
}

/// The `[server.oidc]` settings: whom to trust, and what their tokens may do.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` values accepted (a token must carry one of them).
    pub audience: Vec<String>,
    /// The issuer's public keys, or where to fetch them.
    pub jwks: Jwks,
    /// The claim that names the caller (`sub` by default).
    pub name_claim: String,
    /// Claims to permissions.
    pub rules: Vec<ClaimRule>,
}

/// Least time between two fetches of the JWKS for unknown key ids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// How long a fetch of the JWKS may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest JWKS document accepted, in bytes.
const MAX_JWKS: usize = 1 << 20;

/// The OIDC issuer in use: its settings and the keys it currently has.
#[derive(Debug)]
pub struct Oidc {
    settings: OidcSettings,
    keys: RwLock<JwkSet>,
    /// When the keys were last fetched for an unknown key id.
    refetched: Mutex<Option<Instant>>,
    /// The client that fetches `jwks_url` (none for a `jwks_file`).
    client: Option<reqwest::Client>,
}

/// Whether `secret` has a JWT's shape (three base64url parts, a header naming `alg`), so it
/// is checked as one rather than as a password.
pub fn looks_like_jwt(secret: &str) -> bool {
    secret.split('.').count() == 3 && jsonwebtoken::decode_header(secret).is_ok()
}

impl Oidc {
    /// The issuer of `settings` with its keys: those of the file, or fetched from the URL
    /// (the error says why they could not be).
    pub async fn open(settings: OidcSettings) -> Result<Oidc, String> {
        let (keys, client) = match &settings.jwks {
            Jwks::Keys(keys) => (keys.clone(), None),
            Jwks::Url(url) => {
                let client = reqwest::Client::builder()
                    .timeout(FETCH_TIMEOUT)
                    .build()
                    .map_err(|e| format!("cannot make the HTTP client for the JWKS: {e}"))?;
                (fetch(&client, url).await?, Some(client))
            }
        };
        Ok(Oidc {
            settings,
            keys: RwLock::new(keys),
            refetched: Mutex::new(None),
            client,
        })
    }

    /// The key `kid` names, fetching the JWKS again if it is not known yet and the last
    /// such fetch is older than [`REFETCH_INTERVAL`].
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, String> {
        let find = |keys: &JwkSet| match kid {
            Some(kid) => keys.find(kid).cloned(),
            None if keys.keys.len() == 1 => Some(keys.keys[0].clone()),
            None => None,
        };
        if let Some(key) = find(&self.keys.read().unwrap()) {
            return Ok(key);
        }
        let Some(kid) = kid else {
            return Err("it names no key id (`kid`)".into());
        };
        let unknown = || {
            format!(
                "its key id `{}` is not among the issuer's keys; if the issuer rotated its \
                 keys, update the JWKS",
                stateplug_sdk::text::bounded(kid, 100)
            )
        };
        let (Jwks::Url(url), Some(client)) = (&self.settings.jwks, &self.client) else {
            return Err(unknown());
        };
        {
            let mut refetched = self.refetched.lock().unwrap();
            if refetched.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
                return Err(unknown());
            }
            *refetched = Some(Instant::now());
        }
        let keys = fetch(client, url).await.map_err(|e| {
            tracing::warn!("{e}");
            unknown()
        })?;
        let key = find(&keys);
        *self.keys.write().unwrap() = keys;
        key.ok_or_else(unknown)
    }

    /// The caller a JWT stands for, or why it is refused (never quoting the token).
    pub async fn verify(&self, token: &str) -> Result<Caller, Unauthenticated> {
        let refused = |why: String| Unauthenticated(format!("the OIDC token is refused: {why}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| refused(format!("its header does not parse ({e})")))?;
        // Shared-secret algorithms would let anyone who reads the JWKS sign tokens.
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(refused(format!(
                "it is signed with {:?}, a shared-secret algorithm; only the issuer's public \
                 keys are trusted",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await.map_err(refused)?;
        let key = DecodingKey::from_jwk(&jwk)
            .map_err(|e| refused(format!("the issuer's key does not load ({e})")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&self.settings.audience);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<BTreeMap<String, Value>>(token, &key, &validation)
            .map_err(|e| refused(reason(&e)))?;
        let claims = data.claims;
        let name_claim = &self.settings.name_claim;
        let name = claim_text(&claims, name_claim)
            .ok_or_else(|| refused(format!("it has no `{name_claim}` claim to name the caller")))?;
        Ok(Caller {
            name: stateplug_sdk::text::bounded(&name, 200).into_owned(),
            via: Via::Oidc,
            grant: Grant::Rules(self.grant(&claims)),
            client: None,
        })
    }

    /// The rules the claims earn, with claims filled into their patterns.
    fn grant(&self, claims: &BTreeMap<String, Value>) -> Vec<Rule> {
        let mut granted = Vec::new();
        for rule in &self.settings.rules {
            let applies = rule.claims.iter().all(|(claim, pattern)| {
                claim_text(claims, claim).is_some_and(|value| pattern.matches(&value))
            });
            if !applies {
                continue;
            }
            for template in &rule.permissions {
                // A placeholder whose claim is missing leaves the rule out.
                if let Some(pattern) =
                    fill(&template.pattern, claims).and_then(|text| Pattern::new(&text).ok())
                {
                    granted.push(Rule {
                        kind: template.kind,
                        pattern,
                        allow: template.allow,
                    });
                }
            }
        }
        granted
    }
}

/// The JWKS at `url`, or why not (naming the URL).
async fn fetch(client: &reqwest::Client, url: &str) -> Result<JwkSet, String> {
    let failed = |why: String| format!("cannot fetch the JWKS from `jwks_url` {url}: {why}");
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| failed(e.to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("it answered {}", response.status())));
    }
    if response
        .content_length()
        .is_some_and(|n| n > MAX_JWKS as u64)
    {
        return Err(failed(format!("it is larger than {MAX_JWKS} bytes")));
    }
    let body = response.bytes().await.map_err(|e| failed(e.to_string()))?;
    if body.len() > MAX_JWKS {
        return Err(failed(format!("it is larger than {MAX_JWKS} bytes")));
    }
    let keys: JwkSet =
        serde_json::from_slice(&body).map_err(|e| failed(format!("it is not a JWKS ({e})")))?;
    if keys.keys.is_empty() {
        return Err(failed("it holds no keys".into()));
    }
    Ok(keys)
}

/// A claim as text: strings as they are, numbers and booleans printed.
fn claim_text(claims: &BTreeMap<String, Value>, name: &str) -> Option<String> {
    match claims.get(name)? {
        Value::String(text) => Some(text.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `pattern` with each `{claim}` replaced by the claim's value, glob characters escaped;
/// `None` when a named claim is missing.
fn fill(pattern: &str, claims: &BTreeMap<String, Value>) -> Option<String> {
    fill_with(pattern, |name| claim_text(claims, name))
}

/// `pattern` with each `{name}` replaced by `value(name)`, glob characters escaped; `None`
/// when a value is missing or a `{` is not closed.
pub fn fill_with(pattern: &str, value: impl Fn(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}')?;
        out.push_str(&rest[..start]);
        for c in value(&rest[start + 1..end])?.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\' | '!') {
                out.push('\\');
            }
            out.push(c);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// What is wrong with a token, in words an operator acts on.
fn reason(error: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "it has expired (`exp`)".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (`nbf`)".into(),
        ErrorKind::InvalidIssuer => "its issuer (`iss`) is not the configured issuer".into(),
        ErrorKind::InvalidAudience => "its audience (`aud`) is not the configured audience".into(),
        ErrorKind::InvalidSignature => "its signature does not match the issuer's key".into(),
        ErrorKind::MissingRequiredClaim(claim) => format!("it has no `{claim}` claim"),
        ErrorKind::InvalidAlgorithm => {
            "its algorithm does not match the issuer's key for its key id".into()
        }
        other => format!("it does not verify ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_fill_patterns_escaped_and_missing_claims_leave_the_rule_out() {
        let claims: BTreeMap<String, Value> = serde_json::from_value(serde_json::json!({
            "project": "web", "sneaky": "*", "id": 42
        }))
        .unwrap();
        assert_eq!(fill("{project}-*", &claims).unwrap(), "web-*");
        assert_eq!(fill("ci-{id}", &claims).unwrap(), "ci-42");
        let escaped = fill("{sneaky}", &claims).unwrap();
        let pattern = Pattern::new(&escaped).unwrap();
        assert!(pattern.matches("*") && !pattern.matches("prod"));
        assert_eq!(fill("{missing}-*", &claims), None);
        assert_eq!(fill("plain", &claims).unwrap(), "plain");
    }
}
