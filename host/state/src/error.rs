//! What the state layer fails with: its own refusals, or the store's error passed on.

use stateplug_sdk::LockInfo;

use crate::store::{Refusal, StoreError};

/// A state operation's failure; `E` is the store's error type. Each message says what was
/// wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum Error<E> {
    /// A write or delete broke one of the state rules (lineage, serial, JSON, ...).
    #[error("workspace `{workspace}`: refused: {reason}")]
    Rejected {
        /// The workspace.
        workspace: String,
        /// Which rule, and what to do.
        reason: String,
    },
    /// The workspace is locked by someone else than the writer.
    #[error("`{workspace}` is locked by {}", holder.holder())]
    Locked {
        /// The workspace.
        workspace: String,
        /// The holder's lock.
        holder: Box<LockInfo>,
    },
    /// An unlock of a workspace that holds no lock.
    #[error("workspace `{workspace}` is not locked")]
    NotLocked {
        /// The workspace.
        workspace: String,
    },
    /// A workspace name or lock id that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(E),
}

impl<E: StoreError> Error<E> {
    /// The lock in the way, when the failure is a lock held by someone else (the state
    /// layer's check or the store's own).
    pub fn holder(&self) -> Option<&LockInfo> {
        match self {
            Error::Locked { holder, .. } => Some(holder),
            Error::Store(e) => match e.refusal() {
                Refusal::Locked(holder) => Some(holder),
                _ => None,
            },
            _ => None,
        }
    }

    /// Whether the failure is a lock held by someone else.
    pub fn is_locked(&self) -> bool {
        self.holder().is_some()
    }
}
