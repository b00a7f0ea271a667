//! A stateplug backend: replace the map below with calls to your storage: files in a
//! granted directory (`std::fs`), a service over HTTP (the SDK's `http` feature), or a
//! PostgreSQL database through the host (`stateplug_sdk::postgres`, granted as
//! `postgres://HOST:PORT`).
//!
//! The SDK checks every path and the configuration before your code runs, and gives you
//! `exists` and the four lock operations on top of `write` with preconditions. What you must
//! get right: `write` and `delete` honour their precondition atomically, and `version`
//! changes whenever the content does.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

use stateplug_sdk::{
    Config, ConfigField, Error, Metadata, Object, Page, Precondition, Result, SINGLE_INSTANCE,
    Store, check_precondition, log,
};

/// One opened store.
pub struct MyStore {
    objects: RefCell<BTreeMap<String, Object>>,
    writes: Cell<u64>,
    page_size: usize,
}

impl Store for MyStore {
    fn metadata() -> Metadata {
        Metadata {
            name: "my-backend".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "A template backend that keeps objects in memory".into(),
            config: vec![
                ConfigField::optional("page_size", "paths per listing page").default_value("100"),
                ConfigField::optional("token", "an example secret, never logged").secret(),
            ],
            // The objects live in this instance's memory, so the host must run one instance:
            // remove this once your data lives in your storage (the host then runs a pool of
            // instances that share the storage, never memory).
            features: vec![SINGLE_INSTANCE.into()],
        }
    }

    fn open(config: Config) -> Result<Self> {
        let page_size = config
            .parse::<usize>("page_size", "a whole number above 0")?
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::InvalidConfig("`page_size` must be above 0".into()))?;
        log::info(&format!("opened with pages of {page_size}"));
        Ok(MyStore {
            objects: RefCell::default(),
            writes: Cell::new(0),
            page_size,
        })
    }

    fn read(&self, path: &str) -> Result<Object> {
        self.objects
            .borrow()
            .get(path)
            .cloned()
            .ok_or(Error::NotFound)
    }

    fn write(&self, path: &str, data: Vec<u8>, precondition: Precondition) -> Result<String> {
        let mut objects = self.objects.borrow_mut();
        let current = objects.get(path).map(|o| o.version.as_str());
        check_precondition(current, &precondition)?;
        self.writes.set(self.writes.get() + 1);
        let version = format!("v{}", self.writes.get());
        let object = Object {
            data,
            version: version.clone(),
        };
        objects.insert(path.to_string(), object);
        Ok(version)
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        let mut objects = self.objects.borrow_mut();
        let current = objects.get(path).map(|o| o.version.as_str());
        check_precondition(current, &precondition)?;
        objects.remove(path);
        Ok(())
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        let objects = self.objects.borrow();
        let matching = objects.keys().filter(|p| p.starts_with(prefix)).cloned();
        Ok(Page::from_sorted(matching, cursor, self.page_size))
    }
}

stateplug_sdk::export_backend!(MyStore);
