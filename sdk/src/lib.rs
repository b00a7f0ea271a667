//! # stateplug SDK: write a state backend as a WebAssembly component
//!
//! A stateplug plugin stores infrastructure state (Terraform, OpenTofu, ...) somewhere: a
//! directory, a bucket, a database. It runs sandboxed inside the stateplug host and sees only
//! what the operator granted it. With this SDK a plugin is a plain Rust type implementing
//! [`Store`] plus one [`export_backend!`] line; the SDK supplies the component bindings, the
//! path rules, configuration checking, locking on top of conditional writes, and logging.
//!
//! Build it with `cargo build --release --target wasm32-wasip2` (run
//! `rustup target add wasm32-wasip2` once); the `.wasm` in `target/wasm32-wasip2/release/` is
//! the plugin.
//!
//! ## A complete plugin
//!
//! ```
//! use std::cell::RefCell;
//! use std::collections::BTreeMap;
//! use stateplug_sdk::*;
//!
//! /// Keeps objects in the plugin's own memory; `version` counts writes.
//! #[derive(Default)]
//! struct Scratch {
//!     objects: RefCell<BTreeMap<String, Object>>,
//!     writes: RefCell<u64>,
//! }
//!
//! impl Store for Scratch {
//!     fn metadata() -> Metadata {
//!         Metadata {
//!             name: "scratch".into(),
//!             version: env!("CARGO_PKG_VERSION").into(),
//!             description: "Objects in plugin memory".into(),
//!             config: vec![ConfigField::optional("greeting", "logged when opened")],
//!             // Its objects live in the instance: the host runs one, not a pool.
//!             features: vec![SINGLE_INSTANCE.into()],
//!         }
//!     }
//!
//!     fn open(config: Config) -> Result<Self> {
//!         if let Some(greeting) = config.get("greeting") {
//!             log::info(greeting);
//!         }
//!         Ok(Scratch::default())
//!     }
//!
//!     fn read(&self, path: &str) -> Result<Object> {
//!         self.objects.borrow().get(path).cloned().ok_or(Error::NotFound)
//!     }
//!
//!     fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
//!         let mut objects = self.objects.borrow_mut();
//!         check_precondition(objects.get(path).map(|o| o.version.as_str()), &precondition)?;
//!         *self.writes.borrow_mut() += 1;
//!         let version = self.writes.borrow().to_string();
//!         objects.insert(path.into(), Object { data, version: version.clone() });
//!         Ok(version)
//!     }
//!
//!     fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
//!         let mut objects = self.objects.borrow_mut();
//!         check_precondition(objects.get(path).map(|o| o.version.as_str()), &precondition)?;
//!         objects.remove(path);
//!         Ok(())
//!     }
//!
//!     fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
//!         let objects = self.objects.borrow();
//!         let matching = objects.keys().filter(|p| p.starts_with(prefix)).cloned();
//!         Ok(Page::from_sorted(matching, cursor, 1000))
//!     }
//!     // `exists` and the four lock operations come from the SDK: locks are `<path>.tflock`
//!     // objects written with preconditions, so they are as safe as `write` is atomic.
//! }
//!
//! export_backend!(Scratch);
//! # fn main() {
//! #     let store = Scratch::open(Config::default()).unwrap();
//! #     let v1 = store.write("a", b"1".to_vec(), Precondition::Absent).unwrap();
//! #     assert_eq!(store.write("a", b"2".to_vec(), Precondition::Absent), Err(Error::PreconditionFailed));
//! #     store.write("a", b"2".to_vec(), Precondition::VersionIs(v1)).unwrap();
//! #     store.lock("a", LockInfo { id: "x".into(), ..Default::default() }).unwrap();
//! #     assert!(matches!(store.lock("a", LockInfo::default()), Err(Error::Locked(_))));
//! # }
//! ```
//!
//! ## What the SDK guarantees before your code runs
//! - Every path passed to a method satisfies [`path::validate`]: relative, no `..`, no empty
//!   segments, no NUL, at most 1024 bytes, not ending in `.tflock`.
//! - The [`Config`] given to [`Store::open`] has no unknown keys, has every required key,
//!   and has defaults filled in, all from [`Store::metadata`].
//! - Lock objects (`*.tflock`) never appear in listings.

#![deny(missing_docs)]

// The generated bindings name this crate by its public name, also from inside it.
#[cfg(target_arch = "wasm32")]
extern crate self as stateplug_sdk;

pub mod fs;
pub mod hash;
#[cfg(feature = "http")]
pub mod http;
pub mod layout;
pub mod locking;
pub mod log;
pub mod path;
#[cfg(target_arch = "wasm32")]
pub mod postgres;
pub mod text;
mod types;

#[cfg(target_arch = "wasm32")]
mod export;

pub use types::{
    CONTRACT_SECTION, CONTRACT_SECTION_BYTES, CONTRACT_VERSION, Config, ConfigField, Error,
    LockInfo, Metadata, Object, Page, Precondition, Result, SINGLE_INSTANCE,
};

/// An opened store: what a plugin implements (the contract's `store` resource; the host calls
/// the opened backend a `Backend`). Implement the five storage methods; `exists` and the lock
/// methods have correct default implementations on top of them, which a store with native
/// locking (a database, DynamoDB) may replace.
///
/// Calls to one instance never overlap. The host may run several instances of one opened
/// backend at once, each with its own memory: they share the storage (files, a bucket), so
/// every guarantee must come from the storage (its conditional writes), never from memory. A
/// plugin whose data lives in its memory declares [`SINGLE_INSTANCE`] and gets one instance.
pub trait Store: Sized + 'static {
    /// Describes the plugin: name, version, configuration keys. Must not depend on config.
    fn metadata() -> Metadata;

    /// Opens a store from checked configuration.
    fn open(config: Config) -> Result<Self>;

    /// Reads an object; [`Error::NotFound`] when there is none.
    fn read(&self, path: &str) -> Result<Object>;

    /// Writes an object atomically if `precondition` holds (else
    /// [`Error::PreconditionFailed`] and nothing changes); returns the new version token.
    /// `data` is the buffer the host's bytes arrived in: keep it rather than copy it.
    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String>;

    /// Deletes an object if `precondition` holds; deleting a missing object with
    /// [`Precondition::None`] succeeds.
    fn delete(&self, path: &str, precondition: Precondition) -> Result<()>;

    /// Lists paths starting with `prefix`, sorted, continuing after `cursor`
    /// ([`Page::from_sorted`] does the paging).
    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page>;

    /// Whether an object exists at `path`.
    fn exists(&self, path: &str) -> Result<bool> {
        match self.read(path) {
            Ok(_) => Ok(true),
            Err(Error::NotFound) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Takes the lock on `path`; [`Error::Locked`] with the holder when it is held and not
    /// expired.
    fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        locking::lock(self, path, info)
    }

    /// Releases the lock on `path` if `id` is the holder's id.
    fn unlock(&self, path: &str, id: &str) -> Result<()> {
        locking::unlock(self, path, id)
    }

    /// The lock on `path`, if any.
    fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        locking::lock_info(self, path)
    }

    /// Removes the lock on `path` whoever holds it; returns the broken lock.
    fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        locking::force_unlock(self, path)
    }

    /// Every lock on a path starting with `prefix`, sorted by path.
    fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        locking::list_locks(self, prefix)
    }
}

/// Checks a precondition against the current version of an object (`None` when absent).
/// A helper for stores that compare versions themselves.
pub fn check_precondition(current: Option<&str>, precondition: &Precondition) -> Result<()> {
    let holds = match (precondition, current) {
        (Precondition::None, _) => true,
        (Precondition::Absent, current) => current.is_none(),
        (Precondition::VersionIs(expected), Some(current)) => expected == current,
        (Precondition::VersionIs(_), None) => false,
    };
    if holds {
        Ok(())
    } else {
        Err(Error::PreconditionFailed)
    }
}

/// Exports a [`Store`] type as the plugin's component interface. Use it once, at the top
/// level of the plugin crate. Does nothing when compiled natively.
#[macro_export]
macro_rules! export_backend {
    ($backend:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type __StateplugPlugin = $crate::__private::Plugin<$backend>;
            $crate::__private::bindings::__export_plugin!(
                __StateplugPlugin with_types_in $crate::__private::bindings
            );
        };
        // The contract version, readable by the host without compiling the plugin.
        #[cfg(target_arch = "wasm32")]
        #[unsafe(link_section = "stateplug:contract")]
        #[used]
        static __STATEPLUG_CONTRACT: [u8; $crate::CONTRACT_SECTION_BYTES.len()] =
            $crate::CONTRACT_SECTION_BYTES;
    };
}

/// Field-for-field conversions, both ways, between two records with the same fields (the
/// SDK's and the host's types and the generated bindings).
#[doc(hidden)]
#[macro_export]
macro_rules! __same_fields {
    ($a:ty, $b:ty, { $($field:ident),* $(,)? }) => {
        impl From<$a> for $b {
            fn from(x: $a) -> Self {
                Self { $($field: x.$field),* }
            }
        }
        impl From<$b> for $a {
            fn from(x: $b) -> Self {
                Self { $($field: x.$field),* }
            }
        }
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::export::{Plugin, bindings};
    pub use wit_bindgen;
}
