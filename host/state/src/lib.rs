//! # stateplug-state: Terraform's state semantics over any object store
//!
//! The rules that keep a team's state safe whatever the storage, with no wasm in sight:
//! the state document and Terraform's replacement rules ([`StateDoc`]), and [`Workspaces`]
//! (states, locks, history, force-unlock records) and their [`Audit`] trail over the small
//! [`ObjectStore`] trait. The runtime's plugin `Backend` implements that trait;
//! [`MemoryStore`] implements it in memory for tests. Where each object lives in the store is
//! [`stateplug_sdk::layout`].

#![deny(missing_docs)]

mod audit;
mod backoff;
mod doc;
mod document;
mod error;
mod kv;
mod memory;
mod objects;
mod store;
mod workspaces;

pub use audit::{
    Audit, AuditAction, AuditEvent, DEFAULT_AUDIT_LIST, DEFAULT_AUDIT_RETENTION, MAX_AUDIT_LIST,
};
pub use doc::{MAX_LOCK_ID, StateDoc, check_lock_id, manages_resources};
pub use document::Document;
pub use error::Error;
pub use kv::{
    Change, Expect, KV_PREFIX, KeyPage, Kv, KvError, KvResult, MAX_BATCH, MAX_NAMESPACE, MAX_TTL,
    Value as KvValue, check_namespace,
};
pub use memory::{MemoryError, MemoryStore};
pub use objects::{MAX_PAGE, ObjectError, ObjectPage, ObjectResult, Objects};
pub use store::{ObjectStore, Refusal, StoreError};
pub use workspaces::{
    BrokenLock, DEFAULT_HISTORY, HistoryChange, HistoryEntry, KeptVersion, StateError,
    StateOptions, Stored, WorkspaceInfo, Workspaces, WriteOptions, check_workspace,
};
