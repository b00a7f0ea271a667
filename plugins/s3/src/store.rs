//! The storage calls: paths mapped by the layout, objects in S3, locks in lock files,
//! DynamoDB or both.

use md5::{Digest, Md5};
use stateplug_sdk::path::lock_path;
use stateplug_sdk::{
    Config, Error, LockInfo, Metadata, Object, Page, Precondition, Result, Store, locking, log,
};

use crate::config::{self, LockMode, Settings};
use crate::dynamodb::Table;
use crate::http::block_on;
use crate::layout::{Entry, Layout};
use crate::s3::Bucket;
use stateplug_sdk::layout::{DEFAULT_WORKSPACE, state_path};

/// Paths returned per listing page.
const PAGE_SIZE: usize = 1000;

/// A bucket opened as a state store.
pub struct S3 {
    bucket: Bucket,
    layout: Layout,
    lock: LockMode,
    /// The DynamoDB table, when configured: locks (unless `lock = lockfile`) and digests.
    table: Option<Table>,
}

impl Store for S3 {
    fn metadata() -> Metadata {
        Metadata {
            name: "s3".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Objects in an S3 bucket, laid out like Terraform's s3 backend; \
                          locks as lock files and/or in a DynamoDB table"
                .into(),
            config: config::fields(),
            features: vec![],
        }
    }

    fn open(config: Config) -> Result<Self> {
        let settings = Settings::from_config(&config)?;
        // Never the credentials: only where the data goes.
        log::debug(&format!(
            "bucket `{}` at {}://{} ({} style), region {}, lock {:?}{}",
            settings.bucket,
            settings.endpoint.scheme,
            settings.endpoint.authority,
            if settings.path_style {
                "path"
            } else {
                "virtual-hosted"
            },
            settings.region,
            settings.lock,
            match &settings.dynamodb {
                Some(d) => format!(", DynamoDB table `{}` at {}", d.table, d.endpoint.authority),
                None => String::new(),
            }
        ));
        Ok(S3 {
            bucket: Bucket::new(&settings),
            table: settings.dynamodb.as_ref().map(|d| Table::new(&settings, d)),
            layout: settings.layout,
            lock: settings.lock,
        })
    }

    fn read(&self, path: &str) -> Result<Object> {
        block_on(self.bucket.get(&self.layout.object_key(path)))
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        let key = self.layout.object_key(path);
        block_on(async {
            let etag = self.bucket.put(&key, &data, &precondition).await?;
            self.record_digest(&key, &data).await;
            Ok(etag)
        })
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        let key = self.layout.object_key(path);
        block_on(async {
            match &precondition {
                Precondition::None => self.bucket.delete(&key, None).await?,
                Precondition::VersionIs(etag) => self.bucket.delete(&key, Some(etag)).await?,
                // Nothing to delete when the condition holds; refused when it does not.
                Precondition::Absent => {
                    return match self.bucket.head(&key).await? {
                        Some(_) => Err(Error::PreconditionFailed),
                        None => Ok(()),
                    };
                }
            }
            self.forget_digest(&key).await;
            Ok(())
        })
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        let paths = block_on(self.scan(prefix, cursor, false, Some(PAGE_SIZE + 1)))?;
        Ok(Page::from_sorted(paths, cursor, PAGE_SIZE))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        let head = block_on(self.bucket.head(&self.layout.object_key(path)))?;
        Ok(head.is_some())
    }

    fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        let key = self.layout.object_key(path);
        match (self.lock, &self.table) {
            (LockMode::DynamoDb, Some(table)) => block_on(table.lock(&key, &info)),
            (LockMode::Both, Some(table)) => {
                let id = info.id.clone();
                locking::lock(self, path, info.clone())?;
                let taken = block_on(table.lock(&key, &info));
                if taken.is_err() {
                    // Hold both or neither.
                    let _ = locking::unlock(self, path, &id);
                }
                taken
            }
            _ => locking::lock(self, path, info),
        }
    }

    fn unlock(&self, path: &str, id: &str) -> Result<()> {
        let key = self.layout.object_key(path);
        match (self.lock, &self.table) {
            (LockMode::DynamoDb, Some(table)) => block_on(table.unlock(&key, id)),
            (LockMode::Both, Some(table)) => {
                let file = locking::unlock(self, path, id);
                if let Err(Error::Locked(holder)) = file {
                    return Err(Error::Locked(holder)); // someone else's: leave both alone
                }
                match (file, block_on(table.unlock(&key, id))) {
                    (_, Err(Error::Locked(holder))) => Err(Error::Locked(holder)),
                    (Err(Error::NotFound), Err(Error::NotFound)) => Err(Error::NotFound),
                    (Ok(()) | Err(Error::NotFound), Ok(()) | Err(Error::NotFound)) => Ok(()),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            _ => locking::unlock(self, path, id),
        }
    }

    fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        let key = self.layout.object_key(path);
        match (self.lock, &self.table) {
            (LockMode::DynamoDb, Some(table)) => block_on(table.lock_info(&key)),
            (LockMode::Both, Some(table)) => match locking::lock_info(self, path)? {
                Some(lock) => Ok(Some(lock)),
                None => block_on(table.lock_info(&key)),
            },
            _ => locking::lock_info(self, path),
        }
    }

    fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        let key = self.layout.object_key(path);
        match (self.lock, &self.table) {
            (LockMode::DynamoDb, Some(table)) => block_on(table.force_unlock(&key)),
            (LockMode::Both, Some(table)) => {
                let file = locking::force_unlock(self, path)?;
                let item = block_on(table.force_unlock(&key))?;
                Ok(file.or(item))
            }
            _ => locking::force_unlock(self, path),
        }
    }

    fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        let mut locks = match self.lock {
            LockMode::DynamoDb => Vec::new(),
            LockMode::LockFile | LockMode::Both => block_on(self.lock_files(prefix))?,
        };
        if let (LockMode::DynamoDb | LockMode::Both, Some(table)) = (self.lock, &self.table) {
            for (key, lock) in block_on(table.locks())? {
                let Some(entry) = self.layout.entry_of_key(&key) else {
                    continue; // another configuration's lock in the same table
                };
                if !entry.lock
                    && entry.path.starts_with(prefix)
                    && !locks.iter().any(|(p, _)| *p == entry.path)
                {
                    locks.push((entry.path, lock));
                }
            }
        }
        locks.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(locks)
    }
}

impl S3 {
    /// Logical paths starting with `prefix`, after `cursor`, sorted: objects, or (`locks`)
    /// the paths that have a lock file. Stops after about `limit` of them.
    ///
    /// Two sources: non-state paths under `prefix` in the bucket, and the workspace states
    /// at Terraform's keys, when the prefix can match `<ws>/terraform.tfstate`.
    async fn scan(
        &self,
        prefix: &str,
        cursor: Option<&str>,
        locks: bool,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let wanted = |entry: &Entry| {
            entry.lock == locks
                && entry.path.starts_with(prefix)
                && cursor.is_none_or(|c| entry.path.as_str() > c)
        };
        // Keys and logical paths sort alike under one common prefix: S3 can skip ahead.
        let start_after = cursor.map(|c| self.layout.raw_prefix(c));
        let raw_prefix = self.layout.raw_prefix(prefix);
        let mut paths = self
            .collect(&raw_prefix, start_after.as_deref(), &wanted, limit)
            .await?;
        if let Some(scan) = self.layout.state_scan(prefix) {
            if scan.default {
                let mut path = state_path(DEFAULT_WORKSPACE);
                if locks {
                    path = lock_path(&path);
                }
                let key = self.layout.object_key(&path);
                if let Some(entry) = self.layout.entry_of_key(&key).filter(|e| wanted(e))
                    && self.bucket.head(&key).await?.is_some()
                {
                    paths.push(entry.path);
                }
            }
            let states = self.collect(&scan.workspaces, None, &wanted, limit).await?;
            paths.extend(states);
        }
        paths.sort();
        paths.dedup();
        Ok(paths)
    }

    /// Logical paths of the keys under `key_prefix` that `wanted` keeps, following
    /// continuation tokens until the keys run out or `limit` paths are found.
    async fn collect(
        &self,
        key_prefix: &str,
        start_after: Option<&str>,
        wanted: &impl Fn(&Entry) -> bool,
        limit: Option<usize>,
    ) -> Result<Vec<String>> {
        let mut paths = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let page = self
                .bucket
                .list(key_prefix, start_after, continuation.as_deref())
                .await?;
            let entries = page.keys.iter().filter_map(|k| self.layout.entry_of_key(k));
            paths.extend(entries.filter(|e| wanted(e)).map(|e| e.path));
            if limit.is_some_and(|limit| paths.len() >= limit) {
                return Ok(paths);
            }
            match page.continuation {
                Some(token) => continuation = Some(token),
                None => return Ok(paths),
            }
        }
    }

    /// The lock files under `prefix`, read.
    async fn lock_files(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        let mut locks = Vec::new();
        for path in self.scan(prefix, None, true, None).await? {
            let lock_object = lock_path(&path);
            match self.bucket.get(&self.layout.object_key(&lock_object)).await {
                Ok(object) => locks.push((path, LockInfo::from_json(&object.data, &lock_object)?)),
                Err(Error::NotFound) => {} // released meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(locks)
    }

    /// Terraform compares a state with this digest when it reads it (and waits, then fails,
    /// on a mismatch), so every state write records it. The write has landed by now: a
    /// failure here is reported, not returned.
    async fn record_digest(&self, key: &str, data: &[u8]) {
        let Some(table) = self.digest_table(key) else {
            return;
        };
        if let Err(e) = table.put_digest(key, &hex::encode(Md5::digest(data))).await {
            log::warn(&format!(
                "state `{key}` written, but its digest for Terraform was not: {e}"
            ));
        }
    }

    /// A deleted state leaves no digest behind.
    async fn forget_digest(&self, key: &str) {
        let Some(table) = self.digest_table(key) else {
            return;
        };
        if let Err(e) = table.delete_digest(key).await {
            log::warn(&format!(
                "state `{key}` deleted, but its digest for Terraform was not: {e}"
            ));
        }
    }

    fn digest_table(&self, key: &str) -> Option<&Table> {
        self.table
            .as_ref()
            .filter(|_| self.layout.is_state_key(key))
    }
}
