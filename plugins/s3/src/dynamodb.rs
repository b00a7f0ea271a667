//! Terraform's DynamoDB lock table: lock items and state digests, in Terraform's format so
//! both tools see each other's locks.
//!
//! A lock on the object at key `k` is the item `LockID = "<bucket>/k"` with `Info` = the
//! LockInfo JSON; the digest of a state at `k` is the item `LockID = "<bucket>/k-md5"` with
//! `Digest` = the hex MD5 of its bytes. Every change is a conditional write on the `Info` seen
//! before, so two hosts never both win.

use serde_json::{Value, json};
use stateplug_sdk::{Error, LockInfo, Result, log};

use crate::config::{DynamoDb, Settings};
use crate::http::{Client, Request, Response, Service};

/// How often a lock operation re-reads the item when it changes under it.
const ATTEMPTS: usize = 8;

/// Error types DynamoDB uses for throttling (HTTP 400): retried like 5xx.
const THROTTLED: &[&str] = &[
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
];

/// The lock table.
pub struct Table {
    client: Client,
    name: String,
    url: String,
    bucket: String,
}

/// What a conditional write did.
enum Answer {
    Done(Value),
    ConditionFailed,
}

/// A lock item as stored: the parsed lock and the exact `Info` text to condition on.
struct Held {
    lock: LockInfo,
    info: Option<String>,
}

impl Table {
    pub fn new(settings: &Settings, table: &DynamoDb) -> Table {
        Table {
            client: Client::new(
                Service::DynamoDb,
                &settings.region,
                settings.credentials.clone(),
                settings.max_retries,
            ),
            name: table.table.clone(),
            url: table.endpoint.url(&table.endpoint.authority, "/"),
            bucket: settings.bucket.clone(),
        }
    }

    /// Takes the lock on the object at `key`, or reports the holder; an expired lock is taken
    /// over.
    pub async fn lock(&self, key: &str, info: &LockInfo) -> Result<()> {
        let id = self.lock_id(key);
        let ours = String::from_utf8_lossy(&info.to_json()).into_owned();
        for _ in 0..ATTEMPTS {
            if self.put_lock(&id, &ours, None).await? {
                return Ok(());
            }
            let Some(held) = self.held(&id).await? else {
                continue; // released in between
            };
            if !held.lock.is_expired() {
                return Err(Error::Locked(Box::new(held.lock)));
            }
            if self.put_lock(&id, &ours, Some(&held)).await? {
                log::warn(&format!(
                    "took over the expired DynamoDB lock {} of {} on `{id}`",
                    held.lock.id, held.lock.who
                ));
                return Ok(());
            }
        }
        Err(self.contention(&id))
    }

    /// Releases the lock on `key` if `lock_id` is the holder's.
    pub async fn unlock(&self, key: &str, lock_id: &str) -> Result<()> {
        let id = self.lock_id(key);
        for _ in 0..ATTEMPTS {
            let held = self.held(&id).await?.ok_or(Error::NotFound)?;
            if held.lock.id != lock_id {
                return Err(Error::Locked(Box::new(held.lock)));
            }
            if self.delete_lock(&id, &held).await? {
                return Ok(());
            }
        }
        Err(self.contention(&id))
    }

    /// The lock on `key`, if any.
    pub async fn lock_info(&self, key: &str) -> Result<Option<LockInfo>> {
        Ok(self.held(&self.lock_id(key)).await?.map(|held| held.lock))
    }

    /// Removes the lock on `key` whoever holds it; returns it.
    pub async fn force_unlock(&self, key: &str) -> Result<Option<LockInfo>> {
        let id = self.lock_id(key);
        for _ in 0..ATTEMPTS {
            let Some(held) = self.held(&id).await? else {
                return Ok(None);
            };
            if self.delete_lock(&id, &held).await? {
                return Ok(Some(held.lock));
            }
        }
        Err(self.contention(&id))
    }

    /// Every lock item of this bucket, as (object key, lock).
    pub async fn locks(&self) -> Result<Vec<(String, LockInfo)>> {
        let bucket_prefix = format!("{}/", self.bucket);
        let mut locks = Vec::new();
        let mut start: Option<Value> = None;
        loop {
            let mut body = json!({
                "TableName": self.name,
                // Digest items have no `Info`: only locks remain.
                "FilterExpression": "begins_with(LockID, :bucket) AND attribute_exists(Info)",
                "ExpressionAttributeValues": { ":bucket": { "S": bucket_prefix } },
                "ConsistentRead": true,
            });
            if let Some(start) = start.take() {
                body["ExclusiveStartKey"] = start;
            }
            let Answer::Done(page) = self.call("Scan", body).await? else {
                return Err(Error::Other("Scan answered a condition failure".into()));
            };
            for item in page["Items"].as_array().into_iter().flatten() {
                let Some(key) = item["LockID"]["S"]
                    .as_str()
                    .and_then(|id| id.strip_prefix(&bucket_prefix))
                else {
                    continue;
                };
                locks.push((key.to_string(), parse_held(key, item).lock));
            }
            match page.get("LastEvaluatedKey") {
                Some(next) if !next.is_null() => start = Some(next.clone()),
                _ => return Ok(locks),
            }
        }
    }

    /// Records the MD5 of the state just written at `key`, as Terraform does.
    pub async fn put_digest(&self, key: &str, md5_hex: &str) -> Result<()> {
        let body = json!({
            "TableName": self.name,
            "Item": {
                "LockID": { "S": format!("{}-md5", self.lock_id(key)) },
                "Digest": { "S": md5_hex },
            },
        });
        self.call("PutItem", body).await.map(drop)
    }

    /// Forgets the digest of a deleted state.
    pub async fn delete_digest(&self, key: &str) -> Result<()> {
        let body = json!({
            "TableName": self.name,
            "Key": { "LockID": { "S": format!("{}-md5", self.lock_id(key)) } },
        });
        self.call("DeleteItem", body).await.map(drop)
    }

    fn lock_id(&self, key: &str) -> String {
        format!("{}/{key}", self.bucket)
    }

    /// Creates the lock item (`replacing: None`) or replaces exactly the one held; `false` when
    /// the item is not as expected.
    async fn put_lock(&self, id: &str, info: &str, replacing: Option<&Held>) -> Result<bool> {
        let mut body = json!({
            "TableName": self.name,
            "Item": { "LockID": { "S": id }, "Info": { "S": info } },
        });
        match replacing {
            None => body["ConditionExpression"] = json!("attribute_not_exists(LockID)"),
            Some(held) => condition_on(&mut body, held),
        }
        Ok(matches!(self.call("PutItem", body).await?, Answer::Done(_)))
    }

    /// Deletes the lock item if it is still the one held; `false` otherwise.
    async fn delete_lock(&self, id: &str, held: &Held) -> Result<bool> {
        let mut body = json!({
            "TableName": self.name,
            "Key": { "LockID": { "S": id } },
        });
        condition_on(&mut body, held);
        Ok(matches!(
            self.call("DeleteItem", body).await?,
            Answer::Done(_)
        ))
    }

    /// The lock item, read consistently.
    async fn held(&self, id: &str) -> Result<Option<Held>> {
        let body = json!({
            "TableName": self.name,
            "Key": { "LockID": { "S": id } },
            "ConsistentRead": true,
        });
        let Answer::Done(answer) = self.call("GetItem", body).await? else {
            return Err(Error::Other("GetItem answered a condition failure".into()));
        };
        Ok(answer
            .get("Item")
            .filter(|item| item.is_object())
            .map(|item| parse_held(id, item)))
    }

    /// One DynamoDB JSON API call.
    async fn call(&self, operation: &str, body: Value) -> Result<Answer> {
        let request = Request::new("POST", self.url.clone())
            .header("content-type", "application/x-amz-json-1.0")
            .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
            .body(body.to_string().into_bytes());
        let response = self.client.send(&request, retryable).await?;
        if response.status == 200 {
            let answer = serde_json::from_slice(&response.body).map_err(|e| {
                Error::Other(format!(
                    "DynamoDB {operation} on table `{}` answered something that is not JSON ({e})",
                    self.name
                ))
            })?;
            return Ok(Answer::Done(answer));
        }
        let (kind, message) = error_of(&response);
        if kind == "ConditionalCheckFailedException" {
            return Ok(Answer::ConditionFailed);
        }
        let what = format!(
            "DynamoDB {operation} on table `{}`: {kind}: {message}",
            self.name
        );
        Err(match kind.as_str() {
            "ResourceNotFoundException" => Error::InvalidConfig(format!(
                "DynamoDB table `{}` does not exist at {}: create it with the string hash key \
                 `LockID`, or fix `dynamodb_table`",
                self.name, self.url
            )),
            "AccessDeniedException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "MissingAuthenticationTokenException"
            | "IncompleteSignatureException"
            | "ExpiredTokenException" => Error::Denied(format!(
                "{what}; check the credentials and that they allow dynamodb:GetItem, PutItem, \
                 DeleteItem and Scan on the table"
            )),
            "ValidationException" => Error::Other(format!(
                "{what}; the table must have the string hash key `LockID` and no sort key"
            )),
            _ if response.status >= 500 || THROTTLED.contains(&kind.as_str()) => {
                Error::Unavailable(format!("{what}, still after retries; try again later"))
            }
            _ => Error::Other(format!("{what} (HTTP {})", response.status)),
        })
    }

    fn contention(&self, id: &str) -> Error {
        Error::Unavailable(format!(
            "the DynamoDB lock `{id}` kept changing during {ATTEMPTS} attempts; try again"
        ))
    }
}

/// Conditions a write on the item still carrying the `Info` seen before.
fn condition_on(body: &mut Value, held: &Held) {
    match &held.info {
        Some(info) => {
            body["ConditionExpression"] = json!("Info = :seen");
            body["ExpressionAttributeValues"] = json!({ ":seen": { "S": info } });
        }
        None => {
            body["ConditionExpression"] =
                json!("attribute_exists(LockID) AND attribute_not_exists(Info)")
        }
    }
}

/// Reads a lock item; one whose `Info` is missing or not LockInfo is reported as such, so it
/// can still be shown and force-unlocked.
fn parse_held(id: &str, item: &Value) -> Held {
    let info = item["Info"]["S"].as_str().map(str::to_string);
    let lock = match &info {
        Some(text) => LockInfo::from_json(text.as_bytes(), id).unwrap_or_else(|_| LockInfo {
            info: format!("unreadable lock item: {text}"),
            ..LockInfo::default()
        }),
        None => LockInfo {
            info: "lock item without Info".into(),
            ..LockInfo::default()
        },
    };
    Held { lock, info }
}

/// The short error type (`ConditionalCheckFailedException`) and message of an answer.
fn error_of(response: &Response) -> (String, String) {
    let body: Value = serde_json::from_slice(&response.body).unwrap_or_default();
    let kind = body["__type"].as_str().unwrap_or_default();
    let kind = kind.rsplit('#').next().unwrap_or_default();
    let message = body["message"]
        .as_str()
        .or(body["Message"].as_str())
        .unwrap_or_default();
    let kind = match kind {
        "" => format!("HTTP {}", response.status),
        kind => kind.to_string(),
    };
    (kind, message.to_string())
}

/// Worth another attempt: server errors and throttling.
fn retryable(response: &Response) -> bool {
    if response.status >= 500 || response.status == 429 {
        return true;
    }
    response.status == 400 && THROTTLED.contains(&error_of(response).0.as_str())
}
