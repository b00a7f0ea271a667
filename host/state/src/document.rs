//! A typed document kept as one object (a provisioning tool's hosts and resources, as Go-FTL2
//! keeps them): every change is a compare-and-swap of the whole document, so it is written
//! atomically, a reader sees one version or the next and never a mix, a crash leaves the last
//! committed version, and of two concurrent updaters neither loses the other's change (the
//! one whose write fails reads again and applies its change anew).

use std::marker::PhantomData;

use serde::Serialize;
use serde::de::DeserializeOwned;
use stateplug_sdk::Precondition;

use crate::backoff::backoff;
use crate::objects::{ObjectError, ObjectResult, Objects};
use crate::store::ObjectStore;

/// How often an update is tried before it gives up under contention.
const ATTEMPTS: u32 = 200;

/// The document of type `T` at one object path.
pub struct Document<S, T> {
    objects: Objects<S>,
    path: String,
    of: PhantomData<fn() -> T>,
}

impl<S: ObjectStore, T: Serialize + DeserializeOwned + Default> Document<S, T> {
    /// The document kept at `path` of the object API in `store`.
    pub fn new(store: S, path: &str) -> Document<S, T> {
        Document {
            objects: Objects::new(store),
            path: path.to_string(),
            of: PhantomData,
        }
    }

    /// The document as last committed; `T::default()` when none was ever written.
    pub async fn load(&self) -> ObjectResult<T, S> {
        Ok(self.read().await?.0)
    }

    /// Applies `change` to the current document and commits it, reading again and applying
    /// `change` anew when another writer committed in between (so `change` may run more than
    /// once: it should only change the document). Returns what the committed run returned.
    pub async fn update<R>(&self, mut change: impl FnMut(&mut T) -> R) -> ObjectResult<R, S> {
        for attempt in 0..ATTEMPTS {
            let (mut doc, version) = self.read().await?;
            let result = change(&mut doc);
            let data = serde_json::to_vec(&doc).map_err(|e| {
                ObjectError::Invalid(format!(
                    "the document for `{}` does not serialize: {e}",
                    self.path
                ))
            })?;
            let precondition = match version {
                Some(version) => Precondition::VersionIs(version),
                None => Precondition::Absent,
            };
            match self.objects.put(&self.path, data, precondition, None).await {
                Ok(_) => return Ok(result),
                Err(ObjectError::PreconditionFailed { .. }) => {
                    tokio::time::sleep(backoff(attempt)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ObjectError::Invalid(format!(
            "the document `{}` kept changing under {ATTEMPTS} attempts to update it; try again",
            self.path
        )))
    }

    /// The document and its version (`None` when absent).
    async fn read(&self) -> ObjectResult<(T, Option<String>), S> {
        let Some(object) = self.objects.get(&self.path).await? else {
            return Ok((T::default(), None));
        };
        let doc = serde_json::from_slice(&object.data).map_err(|e| {
            ObjectError::Invalid(format!(
                "the object `{}` is not a document of this type: {e}",
                self.path
            ))
        })?;
        Ok((doc, Some(object.version)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::memory::MemoryStore;

    /// Go-FTL2's document: hosts and resources.
    #[derive(Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Inventory {
        hosts: BTreeMap<String, String>,
        resources: Vec<String>,
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updaters_lose_nothing() {
        let store = Arc::new(MemoryStore::new());
        let doc = Arc::new(Document::<_, Inventory>::new(
            store.clone(),
            "ftl/inventory.json",
        ));
        assert_eq!(doc.load().await.unwrap(), Inventory::default());
        let updaters: Vec<_> = (0..16)
            .map(|i| {
                let doc = doc.clone();
                tokio::spawn(async move {
                    for n in 0..10 {
                        doc.update(|inv| {
                            inv.hosts
                                .insert(format!("host-{i}"), format!("10.0.{i}.{n}"));
                            inv.resources.push(format!("r-{i}-{n}"));
                        })
                        .await
                        .unwrap();
                    }
                })
            })
            .collect();
        for updater in updaters {
            updater.await.unwrap();
        }
        let inventory = doc.load().await.unwrap();
        assert_eq!(inventory.hosts.len(), 16);
        assert_eq!(inventory.hosts["host-3"], "10.0.3.9");
        assert_eq!(inventory.resources.len(), 160, "an update was lost");
    }

    #[tokio::test]
    async fn another_type_at_the_path_is_named() {
        let store = Arc::new(MemoryStore::new());
        Objects::new(store.clone())
            .put(
                "ftl/inventory.json",
                b"[1, 2]".to_vec(),
                Precondition::None,
                None,
            )
            .await
            .unwrap();
        let doc = Document::<_, Inventory>::new(store, "ftl/inventory.json");
        let refused = doc.load().await.unwrap_err().to_string();
        assert!(
            refused.contains("`ftl/inventory.json` is not a document"),
            "{refused}"
        );
    }
}
