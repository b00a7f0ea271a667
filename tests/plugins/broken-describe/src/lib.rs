//! A backend that panics as soon as the host asks what it is.

use stateplug_sdk::{Config, Error, Metadata, Object, Page, Precondition, Result, Store};

/// Never gets far enough to store anything.
pub struct BrokenDescribe;

impl Store for BrokenDescribe {
    fn metadata() -> Metadata {
        panic!("describe() of this plugin always panics")
    }

    fn open(_: Config) -> Result<Self> {
        Ok(BrokenDescribe)
    }

    fn read(&self, _: &str) -> Result<Object> {
        Err(Error::NotFound)
    }

    fn write(&self, _: &str, _: Vec<u8>, _: Precondition) -> Result<String> {
        Err(Error::NotFound)
    }

    fn delete(&self, _: &str, _: Precondition) -> Result<()> {
        Ok(())
    }

    fn list(&self, _: &str, _: Option<&str>) -> Result<Page> {
        Ok(Page::default())
    }
}

stateplug_sdk::export_backend!(BrokenDescribe);
