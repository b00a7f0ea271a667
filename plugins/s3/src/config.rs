//! The configuration keys and their checking, into [`Settings`].

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use stateplug_sdk::{Config, ConfigField, Error, Result};

use crate::layout::Layout;

/// Canned ACLs S3 accepts in `x-amz-acl`.
const ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "aws-exec-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
];

/// Storage classes whose objects cannot be read back without a restore: state must be.
const ARCHIVE_CLASSES: &[&str] = &["GLACIER", "DEEP_ARCHIVE"];

/// The keys this plugin understands, as `describe()` reports them.
pub fn fields() -> Vec<ConfigField> {
    let f = ConfigField::optional;
    vec![
        ConfigField::required("bucket", "the S3 bucket that holds the state (it must exist)"),
        f("key", "object key of the `default` workspace's state, as Terraform's `key`")
            .default_value("terraform.tfstate"),
        f(
            "workspace_key_prefix",
            "other workspaces' states are at `<workspace_key_prefix>/<workspace>/<key>`",
        )
        .default_value("env:"),
        f("prefix", "key prefix of every object that is not a workspace state")
            .default_value("stateplug/"),
        f("region", "AWS region of the bucket, used to sign requests").default_value("us-east-1"),
        f(
            "endpoint",
            "S3 endpoint URL (default `https://s3.<region>.amazonaws.com`); its host must be in \
             the backend's `allow_hosts`",
        ),
        f(
            "use_path_style",
            "`true`: `<endpoint>/<bucket>/<key>` (MinIO, moto); `false`: `<bucket>.<endpoint host>`",
        )
        .default_value("false"),
        f("access_key", "AWS access key id; without keys requests are unsigned").secret(),
        f("secret_key", "AWS secret access key").secret(),
        f("session_token", "AWS session token of temporary credentials").secret(),
        f("encrypt", "`true`: server-side encryption with S3-managed keys (SSE-S3)")
            .default_value("false"),
        f("kms_key_id", "KMS key id or ARN: server-side encryption with KMS (SSE-KMS)"),
        f(
            "sse_customer_key",
            "base64 of a 32-byte key: server-side encryption with this customer key (SSE-C)",
        )
        .secret(),
        f("storage_class", "S3 storage class of written objects, e.g. `STANDARD_IA`"),
        f("acl", "canned ACL of written objects, e.g. `bucket-owner-full-control`"),
        f(
            "lock",
            "`lockfile` (`<key>.tflock` objects), `dynamodb` (Terraform's lock table) or `both`",
        )
        .default_value("lockfile"),
        f(
            "dynamodb_table",
            "DynamoDB table with string hash key `LockID`: locks (lock = dynamodb/both) and \
             Terraform's state digests",
        ),
        f(
            "dynamodb_endpoint",
            "DynamoDB endpoint URL (default `https://dynamodb.<region>.amazonaws.com`)",
        ),
        f("max_retries", "retries of throttled, failed (5xx) or timed-out requests")
            .default_value("5"),
    ]
}

/// Everything `open` needs, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bucket: String,
    pub layout: Layout,
    pub region: String,
    pub endpoint: Endpoint,
    pub path_style: bool,
    pub credentials: Option<Keys>,
    pub encryption: Encryption,
    pub storage_class: Option<String>,
    pub acl: Option<String>,
    pub lock: LockMode,
    pub dynamodb: Option<DynamoDb>,
    pub max_retries: u32,
}

/// Where locks are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    LockFile,
    DynamoDb,
    Both,
}

/// The DynamoDB table and where to reach it.
#[derive(Debug, Clone)]
pub struct DynamoDb {
    pub table: String,
    pub endpoint: Endpoint,
}

/// Server-side encryption of written objects. `Debug` never shows a customer key.
#[derive(Clone, PartialEq, Eq)]
pub enum Encryption {
    None,
    /// SSE-S3.
    S3,
    /// SSE-KMS with this key.
    Kms(String),
    /// SSE-C: the key and its MD5, both base64, sent with every object request.
    Customer {
        key: String,
        key_md5: String,
    },
}

impl fmt::Debug for Encryption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Encryption::None => f.write_str("None"),
            Encryption::S3 => f.write_str("S3"),
            Encryption::Kms(id) => write!(f, "Kms({id})"),
            Encryption::Customer { .. } => f.write_str("Customer(<redacted>)"),
        }
    }
}

/// Static credentials. `Debug` never shows them.
#[derive(Clone)]
pub struct Keys {
    pub access_key: String,
    pub secret_key: String,
    pub session_token: Option<String>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<redacted>)")
    }
}

/// A parsed endpoint URL: `scheme://authority[/base]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub scheme: String,
    pub authority: String,
    /// Path prefix without a trailing `/` (usually empty).
    pub base: String,
}

impl Endpoint {
    /// Parses `value` of the key `name`.
    pub fn parse(name: &str, value: &str) -> Result<Endpoint> {
        let invalid = |why: &str| {
            Error::InvalidConfig(format!(
                "`{name}` = `{value}` {why}; expected a URL like `https://s3.eu-west-1.amazonaws.com` \
                 or `http://127.0.0.1:9000`"
            ))
        };
        let uri: http::Uri = value.parse().map_err(|_| invalid("is not a URL"))?;
        let scheme = uri.scheme_str().unwrap_or_default();
        if scheme != "http" && scheme != "https" {
            return Err(invalid("must start with `http://` or `https://`"));
        }
        let authority = uri.authority().ok_or_else(|| invalid("has no host"))?;
        if authority.as_str().contains('@') {
            return Err(invalid(
                "must not carry credentials; use `access_key`/`secret_key`",
            ));
        }
        if uri.query().is_some() {
            return Err(invalid("must not have a query"));
        }
        Ok(Endpoint {
            scheme: scheme.into(),
            authority: authority.as_str().to_ascii_lowercase(),
            base: uri.path().trim_end_matches('/').into(),
        })
    }

    /// The URL of `path` (which starts with `/`) on this endpoint.
    pub fn url(&self, authority: &str, path: &str) -> String {
        format!("{}://{authority}{}{path}", self.scheme, self.base)
    }
}

impl Settings {
    /// Checks the configuration; every error names the key and what to do.
    pub fn from_config(config: &Config) -> Result<Settings> {
        let get = |key: &str| config.get(key).filter(|v| !v.is_empty());
        let bucket = config.require("bucket")?.to_string();
        check_bucket(&bucket)?;
        let layout = Layout::new(
            config.get("key").unwrap_or("terraform.tfstate"),
            config.get("workspace_key_prefix").unwrap_or("env:"),
            config.get("prefix").unwrap_or("stateplug/"),
        )?;
        let region = get("region").unwrap_or("us-east-1").to_string();
        if !region
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(Error::InvalidConfig(format!(
                "`region` = `{region}` is not an AWS region like `eu-west-1`"
            )));
        }
        let endpoint = match get("endpoint") {
            Some(url) => Endpoint::parse("endpoint", url)?,
            None => Endpoint::parse("endpoint", &format!("https://s3.{region}.amazonaws.com"))?,
        };
        let path_style = parse_bool(config, "use_path_style")?;
        let credentials = match (get("access_key"), get("secret_key")) {
            (Some(access_key), Some(secret_key)) => Some(Keys {
                access_key: access_key.into(),
                secret_key: secret_key.into(),
                session_token: get("session_token").map(Into::into),
            }),
            (None, None) if get("session_token").is_some() => {
                return Err(Error::InvalidConfig(
                    "`session_token` needs `access_key` and `secret_key` too".into(),
                ));
            }
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::InvalidConfig(
                    "`access_key` is set but `secret_key` is not; set both or neither".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(Error::InvalidConfig(
                    "`secret_key` is set but `access_key` is not; set both or neither".into(),
                ));
            }
        };
        let encryption = encryption(config)?;
        let storage_class = get("storage_class").map(str::to_string);
        if let Some(class) = &storage_class {
            if ARCHIVE_CLASSES.contains(&class.as_str()) {
                return Err(Error::InvalidConfig(format!(
                    "`storage_class` = `{class}` keeps objects in an archive that cannot be read \
                     without a restore; use `STANDARD`, `STANDARD_IA`, `INTELLIGENT_TIERING`, ..."
                )));
            }
            if !class.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
                return Err(Error::InvalidConfig(format!(
                    "`storage_class` = `{class}` is not an S3 storage class like `STANDARD_IA`"
                )));
            }
        }
        let acl = get("acl").map(str::to_string);
        if let Some(acl) = &acl
            && !ACLS.contains(&acl.as_str())
        {
            return Err(Error::InvalidConfig(format!(
                "`acl` = `{acl}` is not a canned ACL; use one of {}",
                ACLS.join(", ")
            )));
        }
        let lock = match get("lock").unwrap_or("lockfile") {
            "lockfile" => LockMode::LockFile,
            "dynamodb" => LockMode::DynamoDb,
            "both" => LockMode::Both,
            other => {
                return Err(Error::InvalidConfig(format!(
                    "`lock` = `{other}` is not one of `lockfile`, `dynamodb`, `both`"
                )));
            }
        };
        let dynamodb = match get("dynamodb_table") {
            Some(table) => Some(DynamoDb {
                table: table.into(),
                endpoint: match get("dynamodb_endpoint") {
                    Some(url) => Endpoint::parse("dynamodb_endpoint", url)?,
                    None => Endpoint::parse(
                        "dynamodb_endpoint",
                        &format!("https://dynamodb.{region}.amazonaws.com"),
                    )?,
                },
            }),
            None if lock != LockMode::LockFile => {
                return Err(Error::InvalidConfig(format!(
                    "`lock` = `{}` needs `dynamodb_table`: a DynamoDB table with the string hash \
                     key `LockID`",
                    config.get("lock").unwrap_or_default()
                )));
            }
            None if get("dynamodb_endpoint").is_some() => {
                return Err(Error::InvalidConfig(
                    "`dynamodb_endpoint` is set without `dynamodb_table`; set the table too".into(),
                ));
            }
            None => None,
        };
        let max_retries = config
            .parse::<u32>("max_retries", "a whole number from 0 to 20")?
            .unwrap_or(5);
        if max_retries > 20 {
            return Err(Error::InvalidConfig(format!(
                "`max_retries` = `{max_retries}` is too many; use at most 20"
            )));
        }
        Ok(Settings {
            bucket,
            layout,
            region,
            endpoint,
            path_style,
            credentials,
            encryption,
            storage_class,
            acl,
            lock,
            dynamodb,
            max_retries,
        })
    }
}

fn parse_bool(config: &Config, key: &str) -> Result<bool> {
    Ok(config
        .parse::<bool>(key, "`true` or `false`")?
        .unwrap_or(false))
}

/// S3 bucket naming rules that matter for building URLs.
fn check_bucket(bucket: &str) -> Result<()> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!(
            "`bucket` = `{bucket}` is not an S3 bucket name (3-63 lowercase letters, digits, `-`, `.`)"
        )))
    }
}

fn encryption(config: &Config) -> Result<Encryption> {
    let get = |key: &str| config.get(key).filter(|v| !v.is_empty());
    let sse_s3 = parse_bool(config, "encrypt")?;
    match (get("kms_key_id"), get("sse_customer_key")) {
        (Some(_), Some(_)) => Err(Error::InvalidConfig(
            "`kms_key_id` and `sse_customer_key` exclude each other; set one".into(),
        )),
        (Some(kms), None) => Ok(Encryption::Kms(kms.into())),
        (None, Some(key)) => {
            let raw = BASE64.decode(key.trim()).ok().filter(|k| k.len() == 32);
            let raw = raw.ok_or_else(|| {
                Error::InvalidConfig(
                    "`sse_customer_key` must be the base64 of exactly 32 bytes (e.g. `openssl \
                     rand -base64 32`)"
                        .into(),
                )
            })?;
            Ok(Encryption::Customer {
                key: BASE64.encode(&raw),
                key_md5: BASE64.encode(Md5::digest(&raw)),
            })
        }
        (None, None) if sse_s3 => Ok(Encryption::S3),
        (None, None) => Ok(Encryption::None),
    }
}
