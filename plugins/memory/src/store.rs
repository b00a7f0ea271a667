//! The storage calls.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Bound;

use stateplug_sdk::{
    Config, ConfigField, Error, LockInfo, Metadata, Object, Page, Precondition, Result,
    SINGLE_INSTANCE, Store, check_precondition, log,
};

/// Paths returned per listing page.
const PAGE_SIZE: usize = 1000;

/// An in-memory store. Versions come from a counter, so every write gets a fresh token.
pub struct Memory {
    page_size: usize,
    objects: RefCell<BTreeMap<String, Object>>,
    locks: RefCell<BTreeMap<String, LockInfo>>,
    writes: RefCell<u64>,
}

impl Store for Memory {
    fn metadata() -> Metadata {
        Metadata {
            name: "memory".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Objects in the plugin's memory; gone when the backend closes".into(),
            config: vec![
                ConfigField::optional("page_size", "paths per listing page")
                    .default_value(&PAGE_SIZE.to_string()),
            ],
            // Its objects live in the instance: one instance per backend.
            features: vec!["native-locking".into(), SINGLE_INSTANCE.into()],
        }
    }

    fn open(config: Config) -> Result<Self> {
        let page_size = config
            .parse::<usize>("page_size", "a whole number above 0")?
            .filter(|n| *n > 0)
            .ok_or_else(|| Error::InvalidConfig("`page_size` must be above 0".into()))?;
        Ok(Memory {
            page_size,
            objects: RefCell::default(),
            locks: RefCell::default(),
            writes: RefCell::default(),
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
        check_precondition(objects.get(path).map(|o| o.version.as_str()), &precondition)?;
        let version = {
            let mut writes = self.writes.borrow_mut();
            *writes += 1;
            writes.to_string()
        };
        let object = Object {
            data,
            version: version.clone(),
        };
        objects.insert(path.to_string(), object);
        Ok(version)
    }

    fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        let mut objects = self.objects.borrow_mut();
        check_precondition(objects.get(path).map(|o| o.version.as_str()), &precondition)?;
        objects.remove(path);
        Ok(())
    }

    fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        let objects = self.objects.borrow();
        // Sorted map: start at the prefix (or just after the cursor) and stop past the prefix.
        let start = cursor.filter(|c| *c >= prefix).unwrap_or(prefix);
        let matching = objects
            .range::<str, _>((Bound::Included(start), Bound::Unbounded))
            .map(|(path, _)| path)
            .take_while(|path| path.starts_with(prefix))
            .cloned();
        Ok(Page::from_sorted(matching, cursor, self.page_size))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.objects.borrow().contains_key(path))
    }

    fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        let mut locks = self.locks.borrow_mut();
        if let Some(holder) = locks.get(path) {
            if !holder.is_expired() {
                return Err(Error::Locked(Box::new(holder.clone())));
            }
            log::warn(&format!(
                "took over the expired lock {} of {} on `{path}`",
                holder.id, holder.who
            ));
        }
        locks.insert(path.to_string(), info);
        Ok(())
    }

    fn unlock(&self, path: &str, id: &str) -> Result<()> {
        let mut locks = self.locks.borrow_mut();
        match locks.get(path) {
            None => Err(Error::NotFound),
            Some(holder) if holder.id != id => Err(Error::Locked(Box::new(holder.clone()))),
            Some(_) => {
                locks.remove(path);
                Ok(())
            }
        }
    }

    fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        Ok(self.locks.borrow().get(path).cloned())
    }

    fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        Ok(self.locks.borrow_mut().remove(path))
    }

    fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        let locks = self.locks.borrow();
        let held = locks.iter().filter(|(path, _)| path.starts_with(prefix));
        Ok(held
            .map(|(path, lock)| (path.clone(), lock.clone()))
            .collect())
    }
}
