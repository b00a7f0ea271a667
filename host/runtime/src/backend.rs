//! An opened backend: a pool of long-lived sandboxed instances of a plugin (`pool.rs`), called
//! asynchronously.
//!
//! Calls run concurrently, each on an instance of its own (a plugin instance is
//! single-threaded; instances share the storage, never memory). A call that traps, panics,
//! runs out of memory, passes its deadline, or is abandoned by its caller half-way throws its
//! instance away; a later call instantiates a fresh one and opens the store again. (Callers
//! that must not abandon a write, like the HTTP server, run it in a task of its own.)

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use stateplug_sdk::{LockInfo, Object, Page, Precondition};
use wasmtime::component::ResourceAny;
use wasmtime::{PoolConcurrencyLimitError, Store};

use crate::bindings::{self, contract, guest};
use crate::contract::{error_from_plugin, lock_from_plugin, version_from_plugin};
use crate::crash::{crashed, ran_past_deadline};
use crate::epoch::deadline_ticks;
use crate::error::{Error, Result};
use crate::grants::Grants;
use crate::limits::MemoryBudget;
use crate::plugin::Plugin;
use crate::pool::Pool;
use crate::postgres::Connections;
use crate::store_data::{LOG_BUDGET_PER_CALL, Shared, StoreData, new_store};
use crate::telemetry::Meter;

/// Extra time the host waits beyond a call's deadline before it gives up on a plugin that is
/// blocked in a host call (where the epoch deadline cannot interrupt it).
const TIMEOUT_GRACE: Duration = Duration::from_secs(1);

/// First pause before a `busy` call is tried again; it doubles up to the maximum.
const BUSY_PAUSE_FIRST: Duration = Duration::from_millis(1);
const BUSY_PAUSE_MAX: Duration = Duration::from_millis(50);

type CallFuture<'a, R> =
    Pin<Box<dyn Future<Output = wasmtime::Result<Result<R, contract::Error>>> + Send + 'a>>;

/// An opened backend. Cheap to clone; clones share the instances.
#[derive(Clone)]
pub struct Backend {
    inner: Arc<Inner>,
}

struct Inner {
    plugin: Plugin,
    config: Vec<(String, String)>,
    grants: Grants,
    /// Linear memory the instances may hold together (`memory_total`).
    budget: Arc<MemoryBudget>,
    /// What every instance's store shares: the budget and the database connections.
    shared: Shared,
    instances: Pool<Live>,
    /// What its calls, traps and deadline hits are reported under.
    meter: Meter,
}

/// A running instance with its store opened.
struct Live {
    store: Store<StoreData>,
    instance: bindings::Plugin,
    handle: ResourceAny,
}

impl Plugin {
    /// Opens a backend: a fresh sandboxed instance with `grants`, its store opened with
    /// `config`. Configuration errors surface here.
    pub async fn open(&self, config: Vec<(String, String)>, grants: Grants) -> Result<Backend> {
        self.open_named(self.name(), config, grants).await
    }

    /// Opens a backend as [`Plugin::open`] does, under the name the operator gave it, which
    /// the errors of its database connections name.
    pub async fn open_named(
        &self,
        name: &str,
        config: Vec<(String, String)>,
        grants: Grants,
    ) -> Result<Backend> {
        let size = pool_size(self, &grants)?;
        let budget = MemoryBudget::new(memory_total(self, &grants)?);
        if grants.max_connections == 0 {
            return Err(Error::InvalidConfig {
                plugin: self.name().to_string(),
                message: "`max_connections` is 0; a backend needs at least one".into(),
            });
        }
        let shared = Shared {
            budget: Some(budget.clone()),
            connections: Connections::new(name, grants.max_connections, grants.timeout),
        };
        let plugin = self.clone();
        let meter = Meter::new(name, self.name());
        // One instance at once, so configuration errors surface here; the others on demand.
        let live = Live::start_within_deadline(&plugin, &config, &grants, &shared, &meter).await?;
        Ok(Backend {
            inner: Arc::new(Inner {
                plugin,
                config,
                grants,
                budget,
                shared,
                instances: Pool::new(size, live).observed(meter.instances(size)),
                meter,
            }),
        })
    }
}

impl Backend {
    /// The plugin this backend runs.
    pub fn plugin(&self) -> &Plugin {
        &self.inner.plugin
    }

    /// How many instances of the plugin may run calls at once.
    pub fn instances(&self) -> usize {
        self.inner.instances.size()
    }

    /// The linear memory the backend's instances hold now, in bytes: what counts against
    /// `memory_total`.
    pub fn memory_held(&self) -> usize {
        self.inner.budget.used()
    }

    /// How many calls are running (each on an instance of its own) right now.
    pub fn calls_running(&self) -> usize {
        self.inner.instances.in_use()
    }

    /// Reads an object.
    pub async fn read(&self, path: &str) -> Result<Object> {
        check_path(path)?;
        let object = self
            .call("read", path, path.to_string(), |store, guest, handle, p| {
                Box::pin(async move { guest.call_read(store, handle, &p).await })
            })
            .await?;
        Ok(Object {
            data: object.data,
            version: self.check_version(path, object.version)?,
        })
    }

    /// Writes an object if `precondition` holds; returns the new version token.
    pub async fn write(
        &self,
        path: &str,
        data: Vec<u8>,
        precondition: Precondition,
    ) -> Result<String> {
        check_path(path)?;
        let args = (
            path.to_string(),
            data,
            contract::Precondition::from(precondition),
        );
        let version = self
            .call("write", path, args, |store, guest, handle, args| {
                Box::pin(async move {
                    let (p, data, precondition) = &*args;
                    guest.call_write(store, handle, p, data, precondition).await
                })
            })
            .await?;
        self.check_version(path, version)
    }

    fn check_version(&self, path: &str, version: String) -> Result<String> {
        version_from_plugin(self.plugin().name(), path, version)
    }

    /// Deletes an object if `precondition` holds.
    pub async fn delete(&self, path: &str, precondition: Precondition) -> Result<()> {
        check_path(path)?;
        let args = (path.to_string(), contract::Precondition::from(precondition));
        self.call("delete", path, args, |store, guest, handle, args| {
            Box::pin(async move { guest.call_delete(store, handle, &args.0, &args.1).await })
        })
        .await
    }

    /// One page of the paths that start with `prefix`.
    pub async fn list(&self, prefix: &str, cursor: Option<&str>) -> Result<Page> {
        stateplug_sdk::path::validate_prefix(prefix)
            .map_err(|e| Error::InvalidPath(e.to_string()))?;
        let args = (prefix.to_string(), cursor.map(str::to_string));
        let page = self
            .call("list", prefix, args, |store, guest, handle, args| {
                Box::pin(async move {
                    guest
                        .call_list(store, handle, &args.0, args.1.as_deref())
                        .await
                })
            })
            .await?;
        self.check_answered_paths(prefix, page.paths.iter(), "list")?;
        Ok(Page {
            paths: page.paths,
            next_cursor: page.next_cursor,
        })
    }

    /// A plugin may only answer a listing with paths under the prefix asked for: a lock or
    /// object of another workspace slipped into the answer would be shown (or acted on) as if
    /// it belonged to the one asked about.
    fn check_answered_paths<'p>(
        &self,
        prefix: &str,
        paths: impl IntoIterator<Item = &'p String>,
        call: &str,
    ) -> Result<()> {
        for path in paths {
            if !path.starts_with(prefix) || check_path(path).is_err() {
                return Err(Error::Plugin {
                    plugin: self.plugin().name().to_string(),
                    message: format!(
                        "{call}(`{prefix}`) answered with `{}`, which is not a valid path under \
                         that prefix; the answer was discarded (a plugin bug, or a hostile plugin)",
                        stateplug_sdk::text::untrusted(path)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Every path that starts with `prefix`, following the pages.
    pub async fn list_all(&self, prefix: &str) -> Result<Vec<String>> {
        let mut paths = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list(prefix, cursor.as_deref()).await?;
            paths.extend(page.paths);
            match page.next_cursor {
                // A cursor that does not move would loop forever: a plugin bug.
                Some(next) if Some(&next) == cursor.as_ref() => {
                    return Err(Error::Plugin {
                        plugin: self.plugin().name().to_string(),
                        message: format!("listing `{prefix}` returned the same cursor twice"),
                    });
                }
                Some(next) => cursor = Some(next),
                None => return Ok(paths),
            }
        }
    }

    /// Whether an object exists.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        check_path(path)?;
        self.call(
            "exists",
            path,
            path.to_string(),
            |store, guest, handle, p| {
                Box::pin(async move { guest.call_exists(store, handle, &p).await })
            },
        )
        .await
    }

    /// Takes the lock on `path`; [`Error::Locked`] carries the holder when it is taken.
    pub async fn lock(&self, path: &str, info: LockInfo) -> Result<()> {
        check_path(path)?;
        let args = (path.to_string(), contract::LockInfo::from(info));
        self.call("lock", path, args, |store, guest, handle, args| {
            Box::pin(async move { guest.call_lock(store, handle, &args.0, &args.1).await })
        })
        .await
    }

    /// Releases the lock on `path` if `id` is the holder's.
    pub async fn unlock(&self, path: &str, id: &str) -> Result<()> {
        check_path(path)?;
        let args = (path.to_string(), id.to_string());
        self.call("unlock", path, args, |store, guest, handle, args| {
            Box::pin(async move { guest.call_unlock(store, handle, &args.0, &args.1).await })
        })
        .await
    }

    /// The lock on `path`, if any.
    pub async fn lock_info(&self, path: &str) -> Result<Option<LockInfo>> {
        check_path(path)?;
        let lock = self
            .call(
                "lock-info",
                path,
                path.to_string(),
                |store, guest, handle, p| {
                    Box::pin(async move { guest.call_lock_info(store, handle, &p).await })
                },
            )
            .await?;
        Ok(lock.map(lock_from_plugin))
    }

    /// Every lock on a path starting with `prefix`, sorted by path.
    pub async fn list_locks(&self, prefix: &str) -> Result<Vec<(String, LockInfo)>> {
        stateplug_sdk::path::validate_prefix(prefix)
            .map_err(|e| Error::InvalidPath(e.to_string()))?;
        let locks = self
            .call(
                "list-locks",
                prefix,
                prefix.to_string(),
                |store, guest, handle, p| {
                    Box::pin(async move { guest.call_list_locks(store, handle, &p).await })
                },
            )
            .await?;
        self.check_answered_paths(prefix, locks.iter().map(|(path, _)| path), "list-locks")?;
        let mut locks: Vec<(String, LockInfo)> = locks
            .into_iter()
            .map(|(path, lock)| (path, lock_from_plugin(lock)))
            .collect();
        locks.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(locks)
    }

    /// Breaks the lock on `path` whoever holds it; returns the broken lock.
    pub async fn force_unlock(&self, path: &str) -> Result<Option<LockInfo>> {
        check_path(path)?;
        let lock = self
            .call(
                "force-unlock",
                path,
                path.to_string(),
                |store, guest, handle, p| {
                    Box::pin(async move { guest.call_force_unlock(store, handle, &p).await })
                },
            )
            .await?;
        Ok(lock.map(lock_from_plugin))
    }

    /// Runs one contract call, `operation` (its name in the contract), counted in the
    /// metrics with its outcome.
    async fn call<A, R>(
        &self,
        operation: &'static str,
        path: &str,
        args: A,
        call: CallFn<A, R>,
    ) -> Result<R>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        let outcome = self.call_until_not_busy(path, args, call).await;
        self.inner.meter.call(operation, &outcome);
        outcome
    }

    /// Runs one contract call on the instance. A `busy` answer (another writer is changing
    /// the object right now) is retried after a pause taken outside the instance, so other
    /// calls run in between; after the call's deadline it becomes [`Error::Unavailable`].
    async fn call_until_not_busy<A, R>(&self, path: &str, args: A, call: CallFn<A, R>) -> Result<R>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        let args = Arc::new(args);
        let started = Instant::now();
        let mut pause = BUSY_PAUSE_FIRST;
        loop {
            match self.inner.run(call, args.clone()).await? {
                Err(contract::Error::Busy(_)) if started.elapsed() < self.inner.grants.timeout => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BUSY_PAUSE_MAX);
                }
                Err(contract::Error::Busy(message)) => {
                    return Err(Error::Unavailable {
                        plugin: self.plugin().name().to_string(),
                        message: format!(
                            "`{path}` stayed busy for {:?}: {}; try again",
                            self.inner.grants.timeout,
                            stateplug_sdk::text::untrusted(&message)
                        ),
                    });
                }
                outcome => {
                    return outcome.map_err(|e| error_from_plugin(self.plugin().name(), path, e));
                }
            }
        }
    }
}

impl Inner {
    /// Whether an instance that finished a call waits idle for the next one. Wasm memory never
    /// shrinks, so an instance keeps the high-water mark of its biggest call, and that counts
    /// against `memory_total` while it waits: one grown past its share of the total (a large
    /// state passed through it) is let go, and the next call starts a small one. An instance
    /// that holds the plugin's data (`single-instance`) is always kept.
    fn keeps_idle(&self, live: &Live) -> bool {
        let held = live.store.data().memory_held();
        let share = self.budget.share(self.instances.size());
        if self.plugin.single_instance() || held <= share {
            return true;
        }
        tracing::debug!(
            plugin = self.plugin.name(),
            held_mib = held >> 20,
            share_mib = share >> 20,
            "an instance grown past its share of `memory_total` is let go"
        );
        false
    }

    async fn run<A, R>(
        &self,
        call: CallFn<A, R>,
        args: Arc<A>,
    ) -> Result<Result<R, contract::Error>>
    where
        A: Send + Sync + 'static,
        R: Send + 'static,
    {
        // A call that trapped, timed out, or whose caller gave up half-way (this future
        // dropped) leaves its instance in an unknown state: only a finished call puts it
        // back.
        let mut checkout = self.instances.checkout().await;
        let mut live = match checkout.instance.take() {
            Some(live) => live,
            None => {
                Live::start_within_deadline(
                    &self.plugin,
                    &self.config,
                    &self.grants,
                    &self.shared,
                    &self.meter,
                )
                .await?
            }
        };
        let timeout = self.grants.timeout;
        let outcome = on_call_thread(&self.grants, async move {
            let outcome = live.call(call, args, timeout).await;
            (live, outcome)
        })
        .await;
        let failure = match outcome {
            Some((live, Ok(result))) => {
                if self.keeps_idle(&live) {
                    checkout.give_back(live);
                }
                return Ok(result);
            }
            Some((live, Err(trap))) => {
                self.meter.trapped(ran_past_deadline(&trap));
                crashed(
                    self.plugin.name(),
                    &self.grants,
                    &trap,
                    &live.store.data().output.take(),
                )
            }
            None => {
                self.meter.deadline_hit();
                Error::Timeout {
                    plugin: self.plugin.name().to_string(),
                    timeout: self.grants.timeout,
                }
            }
        };
        // The instance is discarded; a later call starts a fresh one.
        drop(checkout);
        tracing::warn!(plugin = self.plugin.name(), "{failure}");
        Err(failure)
    }
}

/// Runs `work` (a call into an instance) where its file operations may block, and waits
/// for it until the call's deadline (plus a grace), `None` past it.
///
/// A plugin granted directories runs each call on a thread of tokio's blocking pool, and
/// wasi's file operations run right on that thread ([`Grants::blocks_in_files`]): one
/// hand-off per call instead of one per file operation. A call stuck in a file operation (a
/// pipe, a hung network mount), where the epoch deadline cannot reach, holds only that
/// thread: the caller stops waiting at the deadline, and the instance is dropped when the
/// operation returns. Other plugins compute or wait on async network I/O only: their calls
/// run on the caller's task, with no hand-off.
async fn on_call_thread<T: Send + 'static>(
    grants: &Grants,
    work: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let deadline = grants.timeout + TIMEOUT_GRACE;
    if !grants.blocks_in_files() {
        return tokio::time::timeout(deadline, work).await.ok();
    }
    let runtime = tokio::runtime::Handle::current();
    let thread = tokio::task::spawn_blocking(move || runtime.block_on(work));
    match tokio::time::timeout(deadline, thread).await {
        Ok(Ok(done)) => Some(done),
        // A panic of host code on that thread is the caller's, as if it ran inline.
        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        Err(_) => None,
    }
}

/// A contract call on an instance: a plain function (the callers' closures capture nothing),
/// so that it can move to the thread the call runs on, and be repeated when the plugin
/// answers `busy`.
type CallFn<A, R> = for<'a> fn(
    &'a mut Store<StoreData>,
    guest::GuestStore<'a>,
    ResourceAny,
    Arc<A>,
) -> CallFuture<'a, R>;

impl Live {
    /// Starts an instance and opens its store, where its calls run, within the deadline.
    async fn start_within_deadline(
        plugin: &Plugin,
        config: &[(String, String)],
        grants: &Grants,
        shared: &Shared,
        meter: &Meter,
    ) -> Result<Live> {
        let start = {
            let (plugin, config, grants, shared, meter) = (
                plugin.clone(),
                config.to_vec(),
                grants.clone(),
                shared.clone(),
                meter.clone(),
            );
            async move { Live::start(&plugin, &config, &grants, shared, &meter).await }
        };
        on_call_thread(grants, start).await.unwrap_or_else(|| {
            meter.deadline_hit();
            Err(Error::Timeout {
                plugin: plugin.name().to_string(),
                timeout: grants.timeout,
            })
        })
    }

    async fn start(
        plugin: &Plugin,
        config: &[(String, String)],
        grants: &Grants,
        shared: Shared,
        meter: &Meter,
    ) -> Result<Live> {
        let name = plugin.name();
        let engine = plugin.runtime().engine();
        let mut store = new_store(engine, grants, name, shared)?;
        let output = store.data().output.clone();
        let started = async {
            let instance = plugin.pre().instantiate_async(&mut store).await?;
            let opened = instance
                .stateplug_backend_backend()
                .store()
                .call_open(&mut store, config)
                .await?;
            Ok::<_, wasmtime::Error>((instance, opened))
        }
        .await;
        match started {
            Ok((instance, Ok(handle))) => Ok(Live {
                store,
                instance,
                handle,
            }),
            Ok((_, Err(e))) => Err(error_from_plugin(name, "", e)),
            Err(error) => match error.downcast_ref::<PoolConcurrencyLimitError>() {
                // Not the plugin's doing: every instance slot of the runtime is taken.
                Some(limit) => Err(Error::Unavailable {
                    plugin: name.to_string(),
                    message: format!(
                        "no instance could be started: {limit}; the backends of this process \
                         and their pools (`instances`) hold every slot the runtime has; \
                         lower `instances`, or retry once calls finish"
                    ),
                }),
                None => {
                    meter.trapped(ran_past_deadline(&error));
                    Err(crashed(name, grants, &error, &output.take()))
                }
            },
        }
    }

    /// One contract call, with a fresh deadline and log budget.
    async fn call<A, R>(
        &mut self,
        call: CallFn<A, R>,
        args: Arc<A>,
        timeout: Duration,
    ) -> wasmtime::Result<Result<R, contract::Error>> {
        self.store.set_epoch_deadline(deadline_ticks(timeout));
        self.store.data_mut().log_budget = LOG_BUDGET_PER_CALL;
        let guest = self.instance.stateplug_backend_backend().store();
        call(&mut self.store, guest, self.handle, args).await
    }
}

/// How many instances a backend of `plugin` runs: the grant's `instances`, or a default for
/// what the plugin waits on; always one for a plugin whose data lives in its instance.
fn pool_size(plugin: &Plugin, grants: &Grants) -> Result<usize> {
    match grants.instances {
        Some(0) => Err(Error::InvalidConfig {
            plugin: plugin.name().to_string(),
            message: "`instances` is 0; a backend runs at least one instance".into(),
        }),
        Some(asked) if asked > 1 && plugin.single_instance() => Err(Error::InvalidConfig {
            plugin: plugin.name().to_string(),
            message: format!(
                "`instances` is {asked}, but this plugin keeps its data inside its instance \
                 (describe() declares `{}`), so it runs one; remove `instances`",
                stateplug_sdk::SINGLE_INSTANCE
            ),
        }),
        Some(asked) => Ok(asked),
        None if plugin.single_instance() => Ok(1),
        None => {
            let capabilities = plugin.capabilities();
            let uses_network = capabilities.http || capabilities.postgres;
            Ok(crate::grants::default_instances(uses_network))
        }
    }
}

/// The memory a backend's instances may hold together: `memory_total`, by default four times
/// one instance's `memory`.
fn memory_total(plugin: &Plugin, grants: &Grants) -> Result<usize> {
    match grants.memory_total {
        Some(total) if total < grants.memory => Err(Error::InvalidConfig {
            plugin: plugin.name().to_string(),
            message: format!(
                "`memory_total` ({} MiB) is less than one instance's `memory` ({} MiB); \
                 raise `memory_total` or lower `memory`",
                total >> 20,
                grants.memory >> 20
            ),
        }),
        Some(total) => Ok(total),
        None => Ok(grants.memory.saturating_mul(4)),
    }
}

fn check_path(path: &str) -> Result<()> {
    stateplug_sdk::path::validate(path).map_err(|e| Error::InvalidPath(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Runtime;
    use crate::store_data::new_store;

    /// Rust cannot emit `table.grow`, so this attack is a hand-written component: it grows a
    /// table until growing fails, and reports the size it reached.
    const TABLE_BOMB: &str = r#"
        (component
          (core module $m
            (table $t 1 funcref)
            (func (export "grow") (result i32)
              (loop $again
                (br_if $again
                  (i32.ne (table.grow $t (ref.null func) (i32.const 4096)) (i32.const -1))))
              (table.size $t)))
          (core instance $i (instantiate $m))
          (func (export "grow") (result u32) (canon lift (core func $i "grow"))))
    "#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn table_growth_stops_at_the_cap_with_a_trap() {
        let runtime = Runtime::new().unwrap();
        let wasm = wat::parse_str(TABLE_BOMB).unwrap();
        let component = wasmtime::component::Component::new(runtime.engine(), &wasm).unwrap();
        let mut store = new_store(
            runtime.engine(),
            &Grants::default(),
            "table-bomb",
            Shared::alone(&Grants::default(), "table-bomb"),
        )
        .unwrap();
        let instance = runtime
            .linker()
            .instantiate_async(&mut store, &component)
            .await
            .unwrap();
        let grow = instance
            .get_typed_func::<(), (u32,)>(&mut store, "grow")
            .unwrap();
        let trap = grow.call_async(&mut store, ()).await.unwrap_err();
        let message = format!("{trap:#}");
        // The pooling allocator's per-table cap (20,000 elements) is reached first.
        assert!(message.contains("trap when growing table"), "{message}");
    }
}
