//! A plugin backend is the state layer's object store: the same operations, its errors
//! readable by the state rules (`error.rs`).

use stateplug_sdk::{LockInfo, Object, Precondition};
use stateplug_state::ObjectStore;

use crate::backend::Backend;
use crate::error::{Error, Result};

impl ObjectStore for Backend {
    type Error = Error;

    async fn read(&self, path: &str) -> Result<Object> {
        Backend::read(self, path).await
    }

    async fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        Backend::write(self, path, data, precondition).await
    }

    async fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        Backend::delete(self, path, precondition).await
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        Backend::list_all(self, prefix).await
    }

    async fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        Backend::lock(self, path, info).await
    }

    async fn unlock(&self, path: &str, id: &str) -> Result<()> {
        Backend::unlock(self, path, id).await
    }

    async fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        Backend::lock_info(self, path).await
    }

    async fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        Backend::list_locks(self, prefix).await
    }

    async fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        Backend::force_unlock(self, path).await
    }
}
