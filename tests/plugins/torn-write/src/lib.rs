//! The `local` plugin with one change: a write whose content starts with `PANIC` panics in the
//! middle, after the new content is in its temp file and the write guard is held, just before
//! the rename that would publish it. The crash tests check that the old version survives.

// The local plugin's modules, compiled into this crate (depending on the local crate would
// bring its component exports along).
#[path = "../../../../plugins/local/src/file.rs"]
mod file;
#[path = "../../../../plugins/local/src/store.rs"]
mod store;

use stateplug_sdk::{Config, LockInfo, Metadata, Object, Page, Precondition, Result, Store};
use store::Local;

pub struct TornWrite(Local);

impl Store for TornWrite {
    fn metadata() -> Metadata {
        Metadata {
            name: "torn-write".into(),
            ..Local::metadata()
        }
    }

    fn open(config: Config) -> Result<Self> {
        Local::open(config).map(TornWrite)
    }

    fn read(&self, path: &str) -> Result<Object> {
        self.0.read(path)
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        self.0.write_with_hook(path, &data, precondition, || {
            if data.starts_with(b"PANIC") {
                panic!("torn-write panics in the middle of writing `{path}`");
            }
        })
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        self.0.delete(path, precondition)
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        self.0.list(prefix, cursor)
    }

    fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        self.0.lock(path, info)
    }
}

stateplug_sdk::export_backend!(TornWrite);
