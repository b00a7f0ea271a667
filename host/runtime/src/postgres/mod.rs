//! The host side of the contract's `postgres` interface: a plugin's database connections.
//!
//! The host owns everything a connection is made of, so the plugin stays small and the grant
//! cannot be worked around: `open` checks `postgres://HOST:PORT` against the backend's
//! `allow_hosts` and resolves it by the same rules as an HTTP request (`network/address.rs`),
//! then the driver (tokio-postgres) connects to exactly that address, with TLS per
//! `ssl-mode` (`connect.rs`). The connections are the backend's (`pool.rs`): its instances
//! share at most `max_connections`, each statement runs on one of them, a statement is cut off
//! at the call's deadline (by the server's `statement_timeout` and here), and a result is
//! refused once it outgrows the instance's memory grant (`value.rs`).

mod connect;
mod pool;
mod value;

use std::sync::Arc;

use futures_util::TryStreamExt;
use tokio_postgres::types::ToSql;
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

use crate::bindings::stateplug::backend::postgres::{
    self as interface, ConnectOptions, Error, RowSet, Value,
};
use crate::error::{Result as HostResult, host_error};
use crate::network::{DATABASE_SCHEME, HostGrant, Refused, checked_address};
use connect::{Target, statement_error};
pub(crate) use pool::Connections;
use pool::Pooled;
use value::{Param, row_values, size};

/// A connection the plugin opened: which database, with which login. The sockets behind it
/// are the backend's pooled ones.
pub struct OpenConnection {
    target: Arc<Target>,
}

/// What the `postgres` interface sees of an instance's store.
pub(crate) struct PostgresView<'a> {
    pub(crate) grant: Grant<'a>,
    /// The instance's resources (its open connections).
    pub(crate) table: &'a mut ResourceTable,
}

/// The backend's grant and connections, as one instance reaches them (shared by reference,
/// so the statements in flight hold no part of the instance's resource table).
#[derive(Clone, Copy)]
pub(crate) struct Grant<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) allow_hosts: &'a [HostGrant],
    pub(crate) connections: &'a Connections,
    /// The instance's memory grant: no result may be larger.
    pub(crate) max_result_bytes: usize,
}

struct PostgresInterface;

impl HasData for PostgresInterface {
    type Data<'a> = PostgresView<'a>;
}

/// Adds the `postgres` interface to a linker; `view` finds its part of a store's data.
pub(crate) fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> PostgresView<'_>,
) -> HostResult<()> {
    interface::add_to_linker::<T, PostgresInterface>(linker, view)
        .map_err(|e| host_error("linking the postgres interface", &e))
}

impl interface::Host for PostgresView<'_> {}

impl interface::HostConnection for PostgresView<'_> {
    async fn open(
        &mut self,
        options: ConnectOptions,
    ) -> wasmtime::Result<Result<Resource<OpenConnection>, Error>> {
        let grant = self.grant;
        let target = match grant.check(options).await {
            Ok(target) => Arc::new(target),
            Err(e) => return Ok(Err(e)),
        };
        // Log in now, so a wrong password or database surfaces when the store opens.
        match grant.connections.checkout(&target).await {
            Ok(checkout) => checkout.give_back(),
            Err(e) => return Ok(Err(e)),
        }
        Ok(Ok(self.table.push(OpenConnection { target })?))
    }

    async fn query(
        &mut self,
        connection: Resource<OpenConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<RowSet, Error>> {
        let target = self.table.get(&connection)?.target.clone();
        let grant = self.grant;
        Ok(grant
            .within_deadline(grant.run_query(&target, &statement, &params))
            .await)
    }

    async fn execute(
        &mut self,
        connection: Resource<OpenConnection>,
        statement: String,
        params: Vec<Value>,
    ) -> wasmtime::Result<Result<u64, Error>> {
        let target = self.table.get(&connection)?.target.clone();
        let grant = self.grant;
        Ok(grant
            .within_deadline(grant.run_execute(&target, &statement, &params))
            .await)
    }

    async fn drop(&mut self, connection: Resource<OpenConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

impl Grant<'_> {
    /// The target of `options` if the grant covers it, at the address it was checked at.
    async fn check(&self, options: ConnectOptions) -> Result<Target, Error> {
        let backend = self.connections.backend();
        let host = options.host.trim_matches(['[', ']']).to_string();
        let max_wait = self.connections.max_wait();
        let checked = checked_address(
            self.allow_hosts,
            DATABASE_SCHEME,
            &host,
            options.port,
            max_wait,
        )
        .await;
        match checked {
            Ok(addr) => Ok(Target::new(ConnectOptions { host, ..options }, addr)),
            Err(Refused::Denied(reason)) => {
                let reason = stateplug_sdk::text::untrusted(&reason);
                tracing::warn!(plugin = %self.plugin, %backend, "refused a database connection: {reason}");
                Err(Error::Denied(format!(
                    "backend `{backend}`: denied: {reason}; grant it with \
                     `allow_hosts = [\"{DATABASE_SCHEME}://HOST:PORT\"]`"
                )))
            }
            Err(Refused::NotFound(target)) => Err(Error::Unavailable(format!(
                "backend `{backend}`: {target} does not resolve to an address"
            ))),
            Err(Refused::DnsTimeout(target)) => Err(Error::Unavailable(format!(
                "backend `{backend}`: resolving {target} took longer than {max_wait:?}"
            ))),
        }
    }

    async fn within_deadline<R>(
        &self,
        run: impl Future<Output = Result<R, Error>>,
    ) -> Result<R, Error> {
        let max_wait = self.connections.max_wait();
        tokio::time::timeout(max_wait, run)
            .await
            .unwrap_or_else(|_| {
                Err(Error::Unavailable(format!(
                    "backend `{}`: the statement did not finish within the call's deadline \
                 ({max_wait:?})",
                    self.connections.backend()
                )))
            })
    }

    async fn run_query(
        &self,
        target: &Arc<Target>,
        statement: &str,
        params: &[Value],
    ) -> Result<RowSet, Error> {
        let max_bytes = self.max_result_bytes;
        self.on_connection(target, async |connection: &mut Pooled| {
            let prepared = connection.prepare(statement).await?;
            let columns = prepared.columns().iter().map(|c| c.name().to_string());
            let columns = columns.collect();
            let rows = connection
                .client
                .query_raw(&prepared, params.iter().map(Param))
                .await?;
            let mut rows = std::pin::pin!(rows);
            let (mut read, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = rows.try_next().await? {
                let values = row_values(&row).map_err(Failure::Refused)?;
                bytes += values.iter().map(size).sum::<usize>();
                if bytes > max_bytes {
                    return Err(Failure::Refused(format!(
                        "the result is larger than the instance's memory grant ({} MiB); \
                         select fewer rows (`limit`) or raise `memory`",
                        max_bytes >> 20
                    )));
                }
                read.push(values);
            }
            Ok(RowSet {
                columns,
                rows: read,
            })
        })
        .await
    }

    async fn run_execute(
        &self,
        target: &Arc<Target>,
        statement: &str,
        params: &[Value],
    ) -> Result<u64, Error> {
        self.on_connection(target, async |connection: &mut Pooled| {
            let prepared = connection.prepare(statement).await?;
            let params: Vec<Param> = params.iter().map(Param).collect();
            let params: Vec<&(dyn ToSql + Sync)> = params.iter().map(|p| p as _).collect();
            Ok(connection.client.execute(&prepared, &params).await?)
        })
        .await
    }

    /// Runs `work` on a pooled connection to `target`. The connection goes back to the pool
    /// after a success or a statement the server refused; after anything else (the link
    /// failed, rows left unread) it is closed.
    async fn on_connection<R>(
        &self,
        target: &Arc<Target>,
        work: impl AsyncFnOnce(&mut Pooled) -> Result<R, Failure>,
    ) -> Result<R, Error> {
        let backend = self.connections.backend();
        let mut checkout = self.connections.checkout(target).await?;
        let result = work(checkout.connection()).await;
        let reusable = match &result {
            Ok(_) => true,
            Err(Failure::Driver(e)) => e.as_db_error().is_some() && !e.is_closed(),
            Err(Failure::Refused(_)) => false,
        };
        if reusable {
            checkout.give_back();
        }
        result.map_err(|failure| match failure {
            Failure::Driver(e) => statement_error(backend, &e),
            Failure::Refused(why) => Error::Invalid(format!("backend `{backend}`: {why}")),
        })
    }
}

/// How a statement failed: in the driver (or the server), or refused here.
enum Failure {
    Driver(tokio_postgres::Error),
    Refused(String),
}

impl From<tokio_postgres::Error> for Failure {
    fn from(e: tokio_postgres::Error) -> Failure {
        Failure::Driver(e)
    }
}
