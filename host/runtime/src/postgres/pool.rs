//! A backend's database connections: shared by all its instances, at most `max_connections`
//! open at once, reused across calls, and discarded once dead (a server that went away and
//! came back is logged in to afresh, the dead connections never handed out).

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::{Client, Statement};

use super::connect::{Target, connect};
use crate::bindings::stateplug::backend::postgres::Error;

/// Prepared statements kept per connection; a plugin runs a handful, over and over.
const STATEMENTS_KEPT: usize = 64;

/// One logged-in connection and the statements prepared on it.
pub(super) struct Pooled {
    target: Arc<Target>,
    pub(super) client: Client,
    statements: HashMap<String, Statement>,
}

impl Pooled {
    /// `statement` prepared on this connection (once; then from the cache).
    pub(super) async fn prepare(
        &mut self,
        statement: &str,
    ) -> Result<Statement, tokio_postgres::Error> {
        if let Some(prepared) = self.statements.get(statement) {
            return Ok(prepared.clone());
        }
        let prepared = self.client.prepare(statement).await?;
        if self.statements.len() >= STATEMENTS_KEPT {
            self.statements.clear();
        }
        self.statements
            .insert(statement.to_string(), prepared.clone());
        Ok(prepared)
    }
}

/// The connections of one backend. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Connections {
    inner: Arc<Shared>,
}

struct Shared {
    /// The backend's configured name, for errors.
    backend: Arc<str>,
    max_connections: usize,
    max_wait: Duration,
    state: Mutex<State>,
    /// Signalled when a connection is given back or closed.
    returned: Notify,
}

#[derive(Default)]
struct State {
    idle: Vec<Pooled>,
    /// Connections open: idle, in use, or being logged in.
    open: usize,
}

impl Connections {
    pub(crate) fn new(backend: &str, max_connections: usize, max_wait: Duration) -> Connections {
        Connections {
            inner: Arc::new(Shared {
                backend: backend.into(),
                max_connections,
                max_wait,
                state: Mutex::default(),
                returned: Notify::new(),
            }),
        }
    }

    pub(super) fn backend(&self) -> &str {
        &self.inner.backend
    }

    pub(super) fn max_wait(&self) -> Duration {
        self.inner.max_wait
    }

    /// A connection to `target`: an idle one, a new one while fewer than `max_connections`
    /// are open, else the first one given back within the wait.
    pub(super) async fn checkout(&self, target: &Arc<Target>) -> Result<Checkout, Error> {
        let shared = &self.inner;
        let deadline = tokio::time::Instant::now() + shared.max_wait;
        loop {
            let mut returned = pin!(shared.returned.notified());
            returned.as_mut().enable();
            if let Some(taken) = self.take_idle_or_reserve(target) {
                let pooled = match taken {
                    Some(pooled) => pooled,
                    None => {
                        // The place is given back if the login fails or the call is dropped
                        // while logging in.
                        let reserved = Reserved(self);
                        let client = connect(&shared.backend, target, shared.max_wait).await?;
                        std::mem::forget(reserved);
                        Pooled {
                            target: target.clone(),
                            client,
                            statements: HashMap::new(),
                        }
                    }
                };
                return Ok(Checkout {
                    connections: self.clone(),
                    pooled: Some(pooled),
                });
            }
            if tokio::time::timeout_at(deadline, returned).await.is_err() {
                return Err(Error::Unavailable(format!(
                    "backend `{}`: all {} database connections (`max_connections`) stayed \
                     busy for {:?}; raise `max_connections` or retry",
                    shared.backend, shared.max_connections, shared.max_wait
                )));
            }
        }
    }

    /// An idle connection to `target` (`Some(Some)`), or room for a new one (`Some(None)`),
    /// or `None` when every connection is busy. Dead idle connections are dropped here, and an
    /// idle one to another target gives its place up.
    fn take_idle_or_reserve(&self, target: &Target) -> Option<Option<Pooled>> {
        let mut state = self.inner.state.lock().expect("connection pool lock");
        let before = state.idle.len();
        state.idle.retain(|pooled| !pooled.client.is_closed());
        state.open -= before - state.idle.len();
        if let Some(i) = state.idle.iter().position(|p| *p.target == *target) {
            return Some(Some(state.idle.swap_remove(i)));
        }
        if state.open < self.inner.max_connections {
            state.open += 1;
            return Some(None);
        }
        // Full, but an idle connection to another database can make room.
        state.idle.pop().map(|_| None)
    }

    /// A connection ended (or was never made): its place is free.
    fn closed(&self) {
        self.inner.state.lock().expect("connection pool lock").open -= 1;
        self.inner.returned.notify_one();
    }
}

/// A place among the open connections, taken for a login that has not ended yet.
struct Reserved<'a>(&'a Connections);

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.0.closed();
    }
}

/// A connection taken from the pool. [`Checkout::give_back`] returns it for reuse; dropped
/// without that (a failed statement, a call cut off at its deadline) it is closed, as it may
/// be in the middle of an exchange with the server.
pub(super) struct Checkout {
    connections: Connections,
    pooled: Option<Pooled>,
}

impl Checkout {
    pub(super) fn connection(&mut self) -> &mut Pooled {
        self.pooled
            .as_mut()
            .expect("a checkout holds its connection until it ends")
    }

    /// Returns a connection that finished its statement to the idle ones.
    pub(super) fn give_back(mut self) {
        if self.connection().client.is_closed() {
            return; // dropped, so counted closed
        }
        let pooled = self.pooled.take().expect("given back once");
        let shared = &self.connections.inner;
        shared
            .state
            .lock()
            .expect("connection pool lock")
            .idle
            .push(pooled);
        shared.returned.notify_one();
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if self.pooled.take().is_some() {
            self.connections.closed();
        }
    }
}
