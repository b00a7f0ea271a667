//! Who may do what on a server: principals (users and tokens from the config), their
//! permissions per workspace, object or namespace pattern, and telling a request's caller
//! from its credentials.
//!
//! Permissions are `read`, `write`, `lock` and `admin` (force-unlock, delete, rollback, the
//! audit trail; it includes the other three). A principal's rules only allow: what it may do
//! on a workspace is the union of the rules whose pattern matches the name, and a workspace
//! no rule covers is refused. An *administrator* (a rule `admin` on workspaces `*`) may do
//! everything, objects and key-values included; so may a principal configured without
//! `permissions`.
//!
//! `secret.rs` checks passwords and tokens, plain or hashed; `oidc.rs` checks JWTs from an
//! OIDC issuer and maps their claims to permissions.

mod oidc;
mod secret;

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use stateplug_state::{AuditAction, AuditEvent};

pub use oidc::{ClaimRule, Jwks, Oidc, OidcSettings, REFETCH_INTERVAL, RuleTemplate, fill_with};
pub use secret::{Secret, hash};

/// One thing a caller may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read states, history, objects, keys.
    Read,
    /// Write states, objects and keys (and delete objects and keys).
    Write,
    /// Take and release one's own locks.
    Lock,
    /// Force-unlock, delete a workspace, roll back; read the audit trail. Includes the others.
    Admin,
}

impl Permission {
    /// Every permission, in the order they are shown.
    pub const ALL: [Permission; 4] = [
        Permission::Read,
        Permission::Write,
        Permission::Lock,
        Permission::Admin,
    ];

    /// Its name in the config and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Lock => "lock",
            Permission::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }

    /// The permission of that name.
    pub fn parse(name: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.name() == name)
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of permissions; `admin` implies the others.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions(u8);

impl Permissions {
    /// Every permission.
    pub const ALL: Permissions = Permissions(0b1111);

    /// The set of these permissions.
    pub fn of(permissions: impl IntoIterator<Item = Permission>) -> Permissions {
        Permissions(permissions.into_iter().fold(0, |bits, p| bits | p.bit()))
    }

    /// Whether the set allows `permission`.
    pub fn allows(self, permission: Permission) -> bool {
        self.0 & (permission.bit() | Permission::Admin.bit()) != 0
    }

    fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    /// The names of the permissions allowed, or `none`.
    pub fn describe(self) -> String {
        let names: Vec<_> = Permission::ALL
            .into_iter()
            .filter(|p| self.0 & p.bit() != 0)
            .map(Permission::name)
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }
}

/// What a rule's pattern is matched against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Workspace names (`/state/<workspace>` and the workspace API).
    Workspaces,
    /// Object paths (`/api/v1/objects/<path>`).
    Objects,
    /// Key-value namespaces (`/api/v1/kv/<namespace>`).
    Kv,
}

impl Kind {
    /// Its key in a rule of the config.
    pub fn key(self) -> &'static str {
        match self {
            Kind::Workspaces => "workspaces",
            Kind::Objects => "objects",
            Kind::Kv => "kv",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Workspaces => "workspace",
            Kind::Objects => "object",
            Kind::Kv => "namespace",
        }
    }
}

/// What a request acts on.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    /// Workspaces, objects or namespaces.
    pub kind: Kind,
    /// The name or path (from the request: bounded and escaped before it is shown).
    pub name: &'a str,
}

impl<'a> Target<'a> {
    /// A workspace.
    pub fn workspace(name: &'a str) -> Target<'a> {
        Target {
            kind: Kind::Workspaces,
            name,
        }
    }

    /// An object path.
    pub fn object(path: &'a str) -> Target<'a> {
        Target {
            kind: Kind::Objects,
            name: path,
        }
    }

    /// A key-value namespace.
    pub fn namespace(name: &'a str) -> Target<'a> {
        Target {
            kind: Kind::Kv,
            name,
        }
    }
}

/// A glob over names: `*` any run of characters (`/` included), `?` one character,
/// `[abc]` one of a set.
#[derive(Debug, Clone)]
pub struct Pattern {
    text: String,
    glob: globset::GlobMatcher,
}

impl Pattern {
    /// Parses a pattern; the error says why it is not one.
    pub fn new(text: &str) -> Result<Pattern, String> {
        let glob = globset::GlobBuilder::new(text)
            .literal_separator(false)
            .backslash_escape(true)
            .build()
            .map_err(|e| format!("`{text}` is not a pattern: {e}"))?;
        Ok(Pattern {
            text: text.to_string(),
            glob: glob.compile_matcher(),
        })
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        self.glob.is_match(name)
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// `{ workspaces = "dev-*", allow = ["read", "write", "lock"] }`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// What the pattern is matched against.
    pub kind: Kind,
    /// Which names the rule covers.
    pub pattern: Pattern,
    /// What it allows there.
    pub allow: Permissions,
}

/// What a principal may do.
#[derive(Debug, Clone)]
pub enum Grant {
    /// Everything, everywhere (no `permissions` configured, or no authentication at all).
    Everything,
    /// What its rules allow.
    Rules(Vec<Rule>),
}

impl Grant {
    /// What this grant allows on `target`: everything for an administrator.
    pub fn on(&self, target: Target<'_>) -> Permissions {
        if self.is_admin() {
            return Permissions::ALL;
        }
        match self {
            Grant::Everything => Permissions::ALL,
            Grant::Rules(rules) => rules
                .iter()
                .filter(|rule| rule.kind == target.kind && rule.pattern.matches(target.name))
                .fold(Permissions::default(), |all, rule| all.union(rule.allow)),
        }
    }

    /// Whether some rule covers every workspace with `admin`.
    pub fn is_admin(&self) -> bool {
        match self {
            Grant::Everything => true,
            Grant::Rules(rules) => rules.iter().any(|rule| {
                rule.kind == Kind::Workspaces
                    && rule.pattern.as_str() == "*"
                    && rule.allow.allows(Permission::Admin)
            }),
        }
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// No authentication is configured.
    Nobody,
    /// A configured user's password.
    Password,
    /// A configured token.
    Token,
    /// A JWT of the configured OIDC issuer (the name is its subject).
    Oidc,
}

/// The one making a request, once authenticated.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's or token's name from the config (`anonymous` without authentication).
    pub name: String,
    /// How it authenticated.
    pub via: Via,
    /// What it may do.
    pub grant: Grant,
    /// The client's address, when the server knows it.
    pub client: Option<SocketAddr>,
}

/// A refused request: 403 with this message, which names the permission missing.
#[derive(Debug, Clone)]
pub struct Denied(pub String);

impl Caller {
    /// Everyone, when the server has no authentication.
    pub fn anonymous() -> Caller {
        Caller {
            name: "anonymous".into(),
            via: Via::Nobody,
            grant: Grant::Everything,
            client: None,
        }
    }

    /// `user \`ci\``, `token \`deploy\``: how messages and logs name the caller.
    pub fn label(&self) -> String {
        match self.via {
            Via::Nobody => "anonymous".into(),
            Via::Password => format!("user `{}`", self.name),
            Via::Token => format!("token `{}`", self.name),
            Via::Oidc => format!("OIDC subject `{}`", self.name),
        }
    }

    /// How the audit trail names the caller: `user:ci`, `token:deploy`, `oidc:<subject>`,
    /// `anonymous`.
    pub fn actor(&self) -> String {
        match self.via {
            Via::Nobody => "anonymous".into(),
            Via::Password => format!("user:{}", self.name),
            Via::Token => format!("token:{}", self.name),
            Via::Oidc => format!("oidc:{}", self.name),
        }
    }

    /// The audit event of a change the caller made to `workspace`, with its address.
    pub fn audit_event(&self, action: AuditAction, workspace: &str) -> AuditEvent {
        let event = AuditEvent::new(action, workspace, &self.actor());
        match self.client {
            Some(client) => event.with_client(client.to_string()),
            None => event,
        }
    }

    /// Whether the caller may do `permission` on `target`.
    pub fn may(&self, permission: Permission, target: Target<'_>) -> bool {
        self.grant.on(target).allows(permission)
    }

    /// `Ok` when the caller may do `permission` on `target`, else why not.
    pub fn require(&self, permission: Permission, target: Target<'_>) -> Result<(), Denied> {
        let allowed = self.grant.on(target);
        if allowed.allows(permission) {
            return Ok(());
        }
        let name = stateplug_sdk::text::bounded(target.name, 200);
        let has = if allowed == Permissions::default() {
            format!(
                "no rule of its permissions covers {} `{name}`",
                target.kind.noun()
            )
        } else {
            format!("it has {} there", allowed.describe())
        };
        Err(Denied(format!(
            "{} may not {permission} {} `{name}`: {has}; an operator grants `{permission}` in \
             its `permissions` in the server's config",
            self.label(),
            target.kind.noun(),
        )))
    }

    /// `Ok` for an administrator (`admin` on every workspace), else why not.
    pub fn require_admin(&self, what: &str) -> Result<(), Denied> {
        if self.grant.is_admin() {
            return Ok(());
        }
        Err(Denied(format!(
            "{} may not read {what}: that needs `admin` on every workspace (a rule \
             `{{ workspaces = \"*\", allow = [\"admin\"] }}`)",
            self.label()
        )))
    }
}

/// A principal of the config: a user (name and password) or a token.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Its name.
    pub name: String,
    /// `Password` for a user, `Token` for a token.
    pub via: Via,
    /// Its password or token.
    pub secret: Secret,
    /// What it may do.
    pub grant: Grant,
}

/// Why a request is not authenticated: 401 with this message (never the secret).
#[derive(Debug, Clone)]
pub struct Unauthenticated(pub String);

/// Hashed secrets already verified, by digest of principal and secret: a hash costs tens of
/// milliseconds by design, and Terraform makes several requests per command.
const VERIFIED_CAPACITY: usize = 4096;

/// The server's principals, and telling a caller from a request's credentials.
#[derive(Debug)]
pub struct Access {
    principals: Vec<Principal>,
    oidc: Option<Oidc>,
    verified: Mutex<std::collections::HashSet<[u8; 32]>>,
}

impl Access {
    /// Authentication with these principals and OIDC issuer; neither means no
    /// authentication (everyone may do everything).
    pub fn new(principals: Vec<Principal>, oidc: Option<Oidc>) -> Access {
        Access {
            principals,
            oidc,
            verified: Mutex::default(),
        }
    }

    /// Whether requests must authenticate.
    pub fn required(&self) -> bool {
        !self.principals.is_empty() || self.oidc.is_some()
    }

    /// The principals, for the log at start.
    pub fn principals(&self) -> &[Principal] {
        &self.principals
    }

    /// The caller of a request that gave `credentials`: Basic auth (a user and its password,
    /// a token's name and the token, or any user name and a token or an OIDC JWT, as CI
    /// systems pass job tokens) or a Bearer token (or JWT).
    pub async fn authenticate(
        self: &Arc<Self>,
        credentials: Option<Credentials>,
    ) -> Result<Caller, Unauthenticated> {
        if !self.required() {
            return Ok(Caller::anonymous());
        }
        let Some(credentials) = credentials else {
            return Err(Unauthenticated(
                "authentication required: give a configured user and password or a token \
                 (Basic auth, or Authorization: Bearer <token>)"
                    .into(),
            ));
        };
        let (user, secret) = match &credentials {
            Credentials::Basic { user, password } => (Some(user.as_str()), password.as_str()),
            Credentials::Bearer(token) => (None, token.as_str()),
        };
        if let Some(oidc) = &self.oidc
            && oidc::looks_like_jwt(secret)
        {
            return oidc.verify(secret).await;
        }
        // A named principal is checked alone; otherwise every token is a candidate.
        let named = user.and_then(|u| self.principals.iter().position(|p| p.name == u));
        let candidates: Vec<usize> = match named {
            Some(index) => vec![index],
            None => (0..self.principals.len())
                .filter(|&i| self.principals[i].via == Via::Token)
                .collect(),
        };
        for index in candidates {
            if self.verify(index, secret).await {
                let principal = &self.principals[index];
                return Ok(Caller {
                    name: principal.name.clone(),
                    via: principal.via,
                    grant: principal.grant.clone(),
                    client: None,
                });
            }
        }
        Err(Unauthenticated(match named {
            Some(_) => "authentication failed: the password or token does not match; check \
                        the credentials the client sends"
                .into(),
            None => "authentication failed: no configured user or token matches; give a \
                     configured user and its password, or a token"
                .into(),
        }))
    }

    async fn verify(self: &Arc<Self>, index: usize, presented: &str) -> bool {
        let secret = &self.principals[index].secret;
        if !secret.is_hashed() {
            return secret.verify(presented);
        }
        use sha2::Digest;
        let key: [u8; 32] = sha2::Sha256::new()
            .chain_update(index.to_le_bytes())
            .chain_update(presented.as_bytes())
            .finalize()
            .into();
        if self.verified.lock().unwrap().contains(&key) {
            return true;
        }
        let access = self.clone();
        let presented = presented.to_string();
        let ok =
            tokio::task::spawn_blocking(move || access.principals[index].secret.verify(&presented))
                .await
                .unwrap_or(false);
        if ok {
            let mut verified = self.verified.lock().unwrap();
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(key);
        }
        ok
    }
}

/// The credentials a request gave.
#[derive(Clone)]
pub enum Credentials {
    /// `Authorization: Basic`.
    Basic {
        /// The user name (may be empty, or any name when the password is a token).
        user: String,
        /// The password or token.
        password: String,
    },
    /// `Authorization: Bearer`.
    Bearer(String),
}

impl Credentials {
    /// The user name given, if any (bounded and escaped for logs).
    pub fn user(&self) -> Option<String> {
        match self {
            Credentials::Basic { user, .. } => {
                Some(stateplug_sdk::text::bounded(user, 100).into_owned())
            }
            Credentials::Bearer(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: Kind, pattern: &str, allow: &[Permission]) -> Rule {
        Rule {
            kind,
            pattern: Pattern::new(pattern).unwrap(),
            allow: Permissions::of(allow.iter().copied()),
        }
    }

    fn caller(rules: Vec<Rule>) -> Caller {
        Caller {
            name: "ci".into(),
            via: Via::Password,
            grant: Grant::Rules(rules),
            client: None,
        }
    }

    #[test]
    fn rules_allow_per_pattern_and_admin_implies_the_rest() {
        use Permission::*;
        let ci = caller(vec![
            rule(Kind::Workspaces, "dev-*", &[Read, Write, Lock]),
            rule(Kind::Workspaces, "prod", &[Read]),
            rule(Kind::Workspaces, "ops-?", &[Admin]),
            rule(Kind::Objects, "modules/*", &[Read]),
        ]);
        assert!(ci.may(Write, Target::workspace("dev-eu")));
        assert!(ci.may(Read, Target::workspace("prod")));
        assert!(!ci.may(Write, Target::workspace("prod")));
        assert!(!ci.may(Admin, Target::workspace("dev-eu")));
        assert!(ci.may(Write, Target::workspace("ops-1")));
        assert!(!ci.may(Read, Target::workspace("ops-12")));
        assert!(ci.may(Read, Target::object("modules/net/main.tf")));
        // A workspace pattern says nothing of objects or namespaces.
        assert!(!ci.may(Read, Target::object("dev-eu")));
        assert!(!ci.may(Read, Target::namespace("dev-eu")));
        assert!(!ci.grant.is_admin());

        let denied = ci.require(Write, Target::workspace("prod")).unwrap_err().0;
        assert!(
            denied.contains("user `ci` may not write workspace `prod`: it has read there"),
            "{denied}"
        );
        let uncovered = ci
            .require(Read, Target::workspace("staging"))
            .unwrap_err()
            .0;
        assert!(
            uncovered.contains("no rule of its permissions covers"),
            "{uncovered}"
        );

        let admin = caller(vec![rule(Kind::Workspaces, "*", &[Admin])]);
        assert!(admin.grant.is_admin());
        assert!(admin.may(Lock, Target::workspace("anything")));
        assert!(admin.may(Write, Target::namespace("anything")));
        assert!(Caller::anonymous().grant.is_admin());
    }

    #[tokio::test]
    async fn callers_are_told_by_their_secret() {
        let principals = vec![
            Principal {
                name: "alice".into(),
                via: Via::Password,
                secret: Secret::new(&hash("wonderland").unwrap()).unwrap(),
                grant: Grant::Everything,
            },
            Principal {
                name: "deploy".into(),
                via: Via::Token,
                secret: Secret::new("tok-123").unwrap(),
                grant: Grant::Rules(vec![]),
            },
        ];
        let access = Arc::new(Access::new(principals, None));
        let basic = |user: &str, password: &str| {
            Some(Credentials::Basic {
                user: user.into(),
                password: password.into(),
            })
        };
        for _ in 0..2 {
            let alice = access.authenticate(basic("alice", "wonderland")).await;
            assert_eq!(alice.unwrap().label(), "user `alice`");
        }
        assert!(
            access
                .authenticate(basic("alice", "tok-123"))
                .await
                .is_err()
        );
        assert!(
            access
                .authenticate(basic("bob", "wonderland"))
                .await
                .is_err()
        );
        let token = access
            .authenticate(basic("gitlab-ci-token", "tok-123"))
            .await;
        assert_eq!(token.unwrap().label(), "token `deploy`");
        let bearer = access
            .authenticate(Some(Credentials::Bearer("tok-123".into())))
            .await;
        assert_eq!(bearer.unwrap().name, "deploy");
        assert!(access.authenticate(None).await.is_err());
        let open = Arc::new(Access::new(vec![], None));
        assert_eq!(open.authenticate(None).await.unwrap().via, Via::Nobody);
    }
}
