//! The S3 REST calls we need (GET, HEAD, conditional PUT and DELETE, ListObjectsV2) and the
//! mapping of S3's answers to the contract's errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use stateplug_sdk::{Error, Object, Precondition, Result};

use crate::config::{Encryption, Endpoint, Settings};
use crate::http::{Client, Request, Response, Service};
use crate::xml;

/// Keys per ListObjectsV2 page (S3's maximum).
const LIST_PAGE: usize = 1000;

/// One bucket, reached as configured.
pub struct Bucket {
    client: Client,
    name: String,
    endpoint: Endpoint,
    path_style: bool,
    encryption: Encryption,
    storage_class: Option<String>,
    acl: Option<String>,
}

/// One page of keys, and where the next one starts.
pub struct KeyPage {
    pub keys: Vec<String>,
    pub continuation: Option<String>,
}

impl Bucket {
    pub fn new(settings: &Settings) -> Bucket {
        Bucket {
            client: Client::new(
                Service::S3,
                &settings.region,
                settings.credentials.clone(),
                settings.max_retries,
            ),
            name: settings.bucket.clone(),
            endpoint: settings.endpoint.clone(),
            path_style: settings.path_style,
            encryption: settings.encryption.clone(),
            storage_class: settings.storage_class.clone(),
            acl: settings.acl.clone(),
        }
    }

    /// The object's bytes and ETag; [`Error::NotFound`] when absent.
    pub async fn get(&self, key: &str) -> Result<Object> {
        let request = self.with_customer_key(Request::new("GET", self.url(key, "")));
        let response = self.send(&request).await?;
        if response.status != 200 {
            return Err(self.error(&response, "reading", key));
        }
        let version = etag(&response, key)?;
        Ok(Object {
            data: response.body,
            version,
        })
    }

    /// The object's ETag, `None` when it does not exist.
    pub async fn head(&self, key: &str) -> Result<Option<String>> {
        let request = self.with_customer_key(Request::new("HEAD", self.url(key, "")));
        let response = self.send(&request).await?;
        match response.status {
            200 => etag(&response, key).map(Some),
            404 => Ok(None),
            _ => Err(self.error(&response, "checking", key)),
        }
    }

    /// Writes the object if `precondition` holds (a conditional PUT: atomic in S3) and returns
    /// its new ETag.
    pub async fn put(&self, key: &str, data: &[u8], precondition: &Precondition) -> Result<String> {
        let mut request = Request::new("PUT", self.url(key, ""))
            .header("content-type", "application/octet-stream")
            .body(data.to_vec());
        // A signed request carries the body's SHA-256, which S3 checks; an anonymous one gets
        // Content-MD5 instead, so a body damaged on the way is refused either way.
        if !self.client.signs() {
            request = request.header("content-md5", BASE64.encode(Md5::digest(data)));
        }
        request = match precondition {
            Precondition::None => request,
            Precondition::Absent => request.header("if-none-match", "*"),
            Precondition::VersionIs(etag) => request.header("if-match", etag),
        };
        request = match &self.encryption {
            Encryption::None | Encryption::Customer { .. } => request,
            Encryption::S3 => request.header("x-amz-server-side-encryption", "AES256"),
            Encryption::Kms(id) => request
                .header("x-amz-server-side-encryption", "aws:kms")
                .header("x-amz-server-side-encryption-aws-kms-key-id", id),
        };
        request = self.with_customer_key(request);
        if let Some(class) = &self.storage_class {
            request = request.header("x-amz-storage-class", class);
        }
        if let Some(acl) = &self.acl {
            request = request.header("x-amz-acl", acl);
        }
        let response = self.send(&request).await?;
        match response.status {
            200 => etag(&response, key),
            // A retried conditional PUT fails its own condition when the first attempt landed
            // but its answer was lost: the object then holds exactly our bytes.
            412 if response.attempts > 1 && self.etag_is_md5() => {
                let ours = format!("\"{}\"", hex::encode(Md5::digest(data)));
                match self.head(key).await? {
                    Some(current) if current == ours => Ok(current),
                    _ => Err(Error::PreconditionFailed),
                }
            }
            // `If-Match` on a missing object: the version it names is not current.
            404 if matches!(precondition, Precondition::VersionIs(_))
                && xml::error(&response.body).code != "NoSuchBucket" =>
            {
                Err(Error::PreconditionFailed)
            }
            _ => Err(self.error(&response, "writing", key)),
        }
    }

    /// Deletes the object, only if its ETag is `if_match` when given. Deleting a missing object
    /// without a condition succeeds (S3 answers 204 either way).
    pub async fn delete(&self, key: &str, if_match: Option<&str>) -> Result<()> {
        let mut request = Request::new("DELETE", self.url(key, ""));
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        let response = self.send(&request).await?;
        match response.status {
            200 | 204 => Ok(()),
            404 if if_match.is_some() && xml::error(&response.body).code != "NoSuchBucket" => {
                Err(Error::PreconditionFailed)
            }
            _ => Err(self.error(&response, "deleting", key)),
        }
    }

    /// One ListObjectsV2 page of keys starting with `prefix`, after `start_after` (first page)
    /// or from `continuation` (later pages).
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        continuation: Option<&str>,
    ) -> Result<KeyPage> {
        let mut query = vec![("list-type", "2".to_string())];
        query.push(("max-keys", LIST_PAGE.to_string()));
        query.push(("prefix", prefix.to_string()));
        if let Some(token) = continuation {
            query.push(("continuation-token", token.to_string()));
        } else if let Some(after) = start_after {
            query.push(("start-after", after.to_string()));
        }
        // The signature covers the query sorted; send it sorted too.
        query.sort();
        let query: Vec<String> = query
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v, false)))
            .collect();
        let request = Request::new("GET", self.url("", &query.join("&")));
        let response = self.send(&request).await?;
        if response.status != 200 {
            return Err(self.error(&response, "listing", prefix));
        }
        let page = xml::list_page(&response.body).map_err(|e| {
            Error::Other(format!(
                "listing `{prefix}` in bucket `{}`: the answer is not a ListObjectsV2 result ({e})",
                self.name
            ))
        })?;
        let continuation = match (page.is_truncated, page.next_continuation_token) {
            (true, Some(token)) if !token.is_empty() => Some(token),
            (true, _) => {
                return Err(Error::Other(format!(
                    "listing `{prefix}` in bucket `{}`: truncated page without a continuation \
                     token; the endpoint does not implement ListObjectsV2",
                    self.name
                )));
            }
            (false, _) => None,
        };
        Ok(KeyPage {
            keys: page.contents.into_iter().map(|c| c.key).collect(),
            continuation,
        })
    }

    async fn send(&self, request: &Request) -> Result<Response> {
        self.client.send(request, retryable).await
    }

    /// The URL of `key` (or of the bucket when `key` is empty) with an encoded `query`.
    fn url(&self, key: &str, query: &str) -> String {
        let key = encode(key, true);
        let (authority, path) = if self.path_style {
            let path = match key.is_empty() {
                true => format!("/{}", self.name),
                false => format!("/{}/{key}", self.name),
            };
            (self.endpoint.authority.clone(), path)
        } else {
            (
                format!("{}.{}", self.name, self.endpoint.authority),
                format!("/{key}"),
            )
        };
        let url = self.endpoint.url(&authority, &path);
        if query.is_empty() {
            url
        } else {
            format!("{url}?{query}")
        }
    }

    /// SSE-C needs the key on every request that touches the object's content.
    fn with_customer_key(&self, request: Request) -> Request {
        match &self.encryption {
            Encryption::Customer { key, key_md5 } => request
                .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                .header("x-amz-server-side-encryption-customer-key", key)
                .header("x-amz-server-side-encryption-customer-key-md5", key_md5),
            _ => request,
        }
    }

    /// Whether ETags are the MD5 of the content (not so with SSE-KMS and SSE-C).
    fn etag_is_md5(&self) -> bool {
        matches!(self.encryption, Encryption::None | Encryption::S3)
    }

    /// Maps an unsuccessful answer about `key` to an error that says what to do.
    fn error(&self, response: &Response, doing: &str, key: &str) -> Error {
        let bucket = &self.name;
        let parsed = xml::error(&response.body);
        let detail = match (parsed.code.as_str(), parsed.message.as_str()) {
            ("", "") => format!("HTTP {}", response.status),
            (code, "") => format!("{code} (HTTP {})", response.status),
            (code, message) => format!("{code}: {message} (HTTP {})", response.status),
        };
        let what = format!("{doing} `{key}` in bucket `{bucket}`");
        match (response.status, parsed.code.as_str()) {
            (404, "NoSuchBucket") => Error::InvalidConfig(format!(
                "bucket `{bucket}` does not exist at {}: create it or fix `bucket`",
                self.endpoint.url(&self.endpoint.authority, "")
            )),
            (404, _) => Error::NotFound,
            (412, _) | (409, "ConditionalRequestConflict") => Error::PreconditionFailed,
            (403, _) => Error::Denied(format!(
                "S3 refused {what}: {detail}; check the credentials (`access_key`, \
                 `secret_key`, `session_token`), the bucket policy and, for encrypted objects, \
                 the key settings"
            )),
            (301 | 307, _)
            | (400, "AuthorizationHeaderMalformed" | "IllegalLocationConstraintException") => {
                let region = response
                    .header("x-amz-bucket-region")
                    .unwrap_or("another region");
                Error::InvalidConfig(format!(
                    "{what}: {detail}; the bucket is in {region}: set `region` (and `endpoint`) to match"
                ))
            }
            (400, "InvalidRequest" | "InvalidArgument") if doing == "reading" => {
                Error::Other(format!(
                    "{what}: {detail}; an object written with a customer key (SSE-C) is read \
                     only with the same `sse_customer_key`, and only such objects take one"
                ))
            }
            (status, _) if status >= 500 || status == 429 => Error::Unavailable(format!(
                "{what}: {detail}, still after retries; try again later"
            )),
            _ => Error::Other(format!("{what}: {detail}")),
        }
    }
}

/// Worth another attempt: server errors and throttling (S3 throttles with 503 SlowDown).
fn retryable(response: &Response) -> bool {
    response.status >= 500 || response.status == 429
}

fn etag(response: &Response, key: &str) -> Result<String> {
    response
        .header("etag")
        .map(str::to_string)
        .ok_or_else(|| Error::Other(format!("S3 answered for `{key}` without an ETag")))
}

/// Lowercase hex of a digest.
/// Everything but unreserved characters is percent-encoded, as SigV4 expects.
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// In paths `/` stays as it is.
const UNRESERVED_AND_SLASH: &AsciiSet = &UNRESERVED.remove(b'/');

fn encode(value: &str, keep_slash: bool) -> String {
    let set = if keep_slash {
        UNRESERVED_AND_SLASH
    } else {
        UNRESERVED
    };
    utf8_percent_encode(value, set).to_string()
}
