//! The glue between a [`Store`](crate::Store) and the component's exports. Only compiled for wasm; plugin
//! authors reach it through [`export_backend!`](crate::export_backend) and never see it.

use std::marker::PhantomData;

use crate::path::{LOCK_SUFFIX, validate, validate_prefix};
use crate::{CONTRACT_VERSION, Config, Store as PluginStore, types};

#[allow(missing_docs, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        default_bindings_module: "stateplug_sdk::__private::bindings",
        runtime_path: "stateplug_sdk::__private::wit_bindgen::rt",
    });
}

use bindings::exports::stateplug::backend::backend::{Guest, GuestStore, Store as StoreResource};
use bindings::stateplug::backend::types as wit;

/// The exported plugin for backend type `B`.
pub struct Plugin<B>(PhantomData<B>);

/// An opened store of backend type `B`.
pub struct StoreOf<B>(B);

impl<B: PluginStore> Guest for Plugin<B> {
    type Store = StoreOf<B>;

    fn describe() -> wit::Metadata {
        let m = B::metadata();
        wit::Metadata {
            name: m.name,
            version: m.version,
            contract_version: CONTRACT_VERSION.to_string(),
            description: m.description,
            config: m.config.into_iter().map(Into::into).collect(),
            features: m.features,
        }
    }
}

impl<B: PluginStore> GuestStore for StoreOf<B> {
    fn open(config: Vec<(String, String)>) -> Result<StoreResource, wit::Error> {
        let config = Config::new(&B::metadata().config, config)?;
        Ok(StoreResource::new(StoreOf(B::open(config)?)))
    }

    fn read(&self, path: String) -> Result<wit::Object, wit::Error> {
        validate(&path)?;
        let object = self.0.read(&path)?;
        Ok(wit::Object {
            data: object.data,
            version: object.version,
        })
    }

    fn write(
        &self,
        path: String,
        data: Vec<u8>,
        precondition: wit::Precondition,
    ) -> Result<String, wit::Error> {
        validate(&path)?;
        Ok(self.0.write(&path, data, precondition.into())?)
    }

    fn delete(&self, path: String, precondition: wit::Precondition) -> Result<(), wit::Error> {
        validate(&path)?;
        Ok(self.0.delete(&path, precondition.into())?)
    }

    fn list(&self, prefix: String, cursor: Option<String>) -> Result<wit::Page, wit::Error> {
        validate_prefix(&prefix)?;
        let page = self.0.list(&prefix, cursor.as_deref())?;
        Ok(wit::Page {
            // Lock objects of the default locking are an implementation detail.
            paths: page
                .paths
                .into_iter()
                .filter(|p| !p.ends_with(LOCK_SUFFIX))
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    fn exists(&self, path: String) -> Result<bool, wit::Error> {
        validate(&path)?;
        Ok(self.0.exists(&path)?)
    }

    fn lock(&self, path: String, info: wit::LockInfo) -> Result<(), wit::Error> {
        validate(&path)?;
        Ok(self.0.lock(&path, info.into())?)
    }

    fn unlock(&self, path: String, id: String) -> Result<(), wit::Error> {
        validate(&path)?;
        Ok(self.0.unlock(&path, &id)?)
    }

    fn lock_info(&self, path: String) -> Result<Option<wit::LockInfo>, wit::Error> {
        validate(&path)?;
        Ok(self.0.lock_info(&path)?.map(Into::into))
    }

    fn list_locks(&self, prefix: String) -> Result<Vec<(String, wit::LockInfo)>, wit::Error> {
        validate_prefix(&prefix)?;
        let locks = self.0.list_locks(&prefix)?;
        Ok(locks
            .into_iter()
            .map(|(path, lock)| (path, lock.into()))
            .collect())
    }

    fn force_unlock(&self, path: String) -> Result<Option<wit::LockInfo>, wit::Error> {
        validate(&path)?;
        Ok(self.0.force_unlock(&path)?.map(Into::into))
    }
}

impl From<types::Error> for wit::Error {
    fn from(e: types::Error) -> Self {
        use types::Error as E;
        match e {
            E::NotFound => wit::Error::NotFound,
            E::Locked(holder) => wit::Error::Locked((*holder).into()),
            E::PreconditionFailed => wit::Error::PreconditionFailed,
            E::InvalidConfig(m) => wit::Error::InvalidConfig(m),
            E::InvalidPath(m) => wit::Error::InvalidPath(m),
            E::Denied(m) => wit::Error::Denied(m),
            E::Unavailable(m) => wit::Error::Unavailable(m),
            E::Busy(m) => wit::Error::Busy(m),
            E::Other(m) => wit::Error::Other(m),
        }
    }
}

impl From<wit::Precondition> for types::Precondition {
    fn from(p: wit::Precondition) -> Self {
        match p {
            wit::Precondition::None => types::Precondition::None,
            wit::Precondition::Absent => types::Precondition::Absent,
            wit::Precondition::VersionIs(v) => types::Precondition::VersionIs(v),
        }
    }
}

impl From<types::ConfigField> for wit::ConfigField {
    fn from(f: types::ConfigField) -> Self {
        wit::ConfigField {
            name: f.name,
            description: f.description,
            required: f.required,
            secret: f.secret,
            default: f.default,
        }
    }
}

crate::__same_fields!(wit::LockInfo, types::LockInfo, { id, operation, info, who, version, created, path, expires });
