//! [`PostgresStore`] and its [`LeaseStore`] implementation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Object, Pool, PoolError};
use futures::stream::BoxStream;
use leader_core::{
    async_trait, cause_of, validate_election_name, validate_metadata, validate_prefix, Acquire, AcquireRequest,
    Capabilities, ElectionOptions, Error, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata, Renewal, Result,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::connection::Tls;
use crate::ident::Names;
use crate::listener::Listener;
use crate::sql::{Statements, DDL_LOCK};

/// A lease store in a PostgreSQL table. Cheap to clone: clones share the pool and the listener.
///
/// Build it with [`PostgresStore::builder`], [`PostgresStore::from_url`] or
/// [`PostgresStore::from_pool`]. See the crate docs for the schema, the guarantees and the
/// fenced-write function.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub pool: Pool,
    pub names: Names,
    pub sql: Statements,
    /// Create the schema on first use (when it is not there yet).
    pub auto_schema: bool,
    /// The schema is known to be in place; cleared when a statement finds it missing.
    pub schema_ready: AtomicBool,
    pub schema_lock: tokio::sync::Mutex<()>,
    pub listener: Option<Listener>,
    /// How connections are made, for cancel requests; `None` for a pool of unknown make.
    pub tls: Option<Tls>,
    /// The server(s) as `host:port`, for messages.
    pub endpoint: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.names.table_q)
            .field("channel", &self.inner.names.channel)
            .field("listens", &self.inner.listener.is_some())
            .finish_non_exhaustive()
    }
}

/// A pooled connection checked out for one statement. If the statement fails or its future is
/// dropped (the driver's `operation_timeout`), the connection is taken out of the pool and closed
/// rather than handed to the next caller: it may still be waiting for a reply that will never come
/// (a blackholed network), or hold prepared statements that no longer match the table. A statement
/// abandoned while the server runs it is also cancelled (a cancel request on a connection of its
/// own): otherwise the backend would go on waiting, for example for a row lock that a user's
/// fenced-write transaction holds, and every retry would leave one more such backend behind.
struct Checkout {
    object: Option<Object>,
    in_flight: bool,
    tls: Option<Tls>,
}

impl Checkout {
    fn client(&self) -> &Object {
        // Present until `finish` or drop, which consume it.
        self.object.as_ref().unwrap_or_else(|| unreachable!("checkout used after finish"))
    }

    fn finish(mut self) {
        self.object = None; // back to the pool in good order
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        let Some(object) = self.object.take() else { return };
        if self.in_flight {
            if let (Some(tls), Ok(runtime)) = (self.tls.clone(), tokio::runtime::Handle::try_current()) {
                let token = object.cancel_token();
                runtime.spawn(async move {
                    if let Err(e) = cancel(&token, &tls).await {
                        tracing::debug!(error = %e, "leader-postgres: could not cancel an abandoned statement");
                    }
                });
            }
        }
        drop(Object::take(object));
    }
}

async fn cancel(token: &tokio_postgres::CancelToken, tls: &Tls) -> std::result::Result<(), tokio_postgres::Error> {
    match tls {
        Tls::Plain => token.cancel_query(tokio_postgres::NoTls).await,
        #[cfg(feature = "tls")]
        Tls::Rustls(make) => token.cancel_query(make.clone()).await,
    }
}

impl PostgresStore {
    pub(crate) fn from_inner(inner: Inner) -> Self {
        PostgresStore { inner: Arc::new(inner) }
    }

    /// One round trip to the server: takes a pooled connection (opening it if none is open).
    /// `Ok` when the server is reachable and accepts the login. `leader::connect` calls it, so
    /// that a wrong address fails there rather than at the first election call.
    ///
    /// # Errors
    /// `Unavailable` naming the server (`host:port`) and the OS's cause; `Backend` when the server
    /// refuses the login or the database.
    pub async fn ping(&self) -> Result<()> {
        self.checkout().await?.finish();
        Ok(())
    }

    /// The server(s) the store connects to, as `host:port` (comma-separated for several hosts).
    pub fn endpoint(&self) -> &str {
        &self.inner.endpoint
    }

    /// The pool the store runs its statements on (shared with clones of the store).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The lease table, as `schema.table`.
    pub fn table_name(&self) -> String {
        format!("{}.{}", self.inner.names.schema, self.inner.names.table)
    }

    /// The fenced-write function, as `schema.table_holds`: `schema.table_holds(election, token)` is
    /// true iff `token` is the token of the election's current, unexpired holder. See the crate docs.
    ///
    /// It locks the lease row `FOR SHARE` until the calling transaction ends, which also holds up
    /// the holder's own renewals: a fenced transaction open longer than `renew_deadline` makes the
    /// leader step down. Keep fenced transactions well under `renew_deadline - renew_interval`.
    pub fn holds_function(&self) -> String {
        self.inner.names.holds_function()
    }

    /// The NOTIFY channel of this table (one per table: two tables never wake each other).
    pub fn notify_channel(&self) -> &str {
        &self.inner.names.channel
    }

    /// Whether the store's LISTEN connection is up right now (it is opened when a follower first
    /// watches). `false` for a store without a listener.
    pub fn is_listening(&self) -> bool {
        self.inner.listener.as_ref().is_some_and(Listener::is_up)
    }

    /// Creates the schema, the lease table, its token sequence and the fenced-write function if
    /// any is missing. Idempotent, and safe when several processes call it at once: the DDL runs in
    /// one transaction under a transaction-scoped advisory lock. When everything exists it only
    /// checks, so a role without CREATE rights can use a schema an administrator created.
    pub async fn ensure_schema(&self) -> Result<()> {
        let _guard = self.inner.schema_lock.lock().await;
        self.ensure_schema_locked().await
    }

    /// `ensure_schema` with `schema_lock` held by the caller.
    async fn ensure_schema_locked(&self) -> Result<()> {
        let n = &self.inner.names;
        let mut checkout = self.checkout().await?;
        let client = checkout.object.as_mut().unwrap_or_else(|| unreachable!("fresh checkout"));
        let holds_sig = format!("{}(text,bigint)", n.holds_q);
        let exists: bool = client
            .query_one(&self.inner.sql.exists, &[&n.table_q, &n.sequence_q, &holds_sig])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| pg_error(&self.inner.endpoint, "schema check", e))?;
        if !exists {
            let tx = client.transaction().await.map_err(|e| pg_error(&self.inner.endpoint, "ensure_schema", e))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&DDL_LOCK])
                .await
                .map_err(|e| pg_error(&self.inner.endpoint, "ensure_schema", e))?;
            tx.batch_execute(&self.inner.sql.create)
                .await
                .map_err(|e| pg_error(&self.inner.endpoint, "ensure_schema", e))?;
            tx.commit().await.map_err(|e| pg_error(&self.inner.endpoint, "ensure_schema", e))?;
        }
        checkout.finish();
        self.inner.schema_ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Clears the holder of every lease that has expired and returns how many. Rows stay (each
    /// remembers its election's last token), so tokens keep increasing afterwards. Expired leases
    /// are already treated as free by every operation: this only tidies the table for people
    /// reading it.
    pub async fn cleanup_expired_leases(&self) -> Result<u64> {
        self.ready().await?;
        let mut checkout = self.checkout().await?;
        checkout.in_flight = true;
        let client = checkout.client();
        let result = match client.prepare_cached(&self.inner.sql.cleanup).await {
            Ok(stmt) => client.execute(&stmt, &[]).await,
            Err(e) => Err(e),
        };
        checkout.in_flight = false;
        let n = result.map_err(|e| self.fail("cleanup", e))?;
        checkout.finish();
        Ok(n)
    }

    async fn checkout(&self) -> Result<Checkout> {
        let object = self.inner.pool.get().await.map_err(|e| pool_error(&self.inner.endpoint, e))?;
        Ok(Checkout { object: Some(object), in_flight: false, tls: self.inner.tls.clone() })
    }

    /// Runs `ensure_schema` once, when the store was built to.
    async fn ready(&self) -> Result<()> {
        if self.inner.auto_schema && !self.inner.schema_ready.load(Ordering::Acquire) {
            let _guard = self.inner.schema_lock.lock().await;
            // Another call may have done it while this one waited for the lock.
            if !self.inner.schema_ready.load(Ordering::Acquire) {
                self.ensure_schema_locked().await?;
            }
        }
        Ok(())
    }

    /// One prepared statement, one round trip (the statement is prepared once per connection).
    ///
    /// When the connection turns out to be dead (the server restarted or terminated it, and the
    /// pool had not noticed yet), the pool's idle connections are dropped, since they most likely
    /// died the same way, and the statement is sent once more on a fresh connection. Every
    /// statement may run twice safely: acquire is idempotent per instance, renew and
    /// update_metadata are guarded by instance and token, reads are reads; a release that ran the
    /// first time answers `false` the second time, and changes nothing.
    pub(crate) async fn query(&self, op: &str, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        self.ready().await?;
        let first = match self.query_once(sql, params).await {
            Ok(rows) => return Ok(rows),
            Err(Failed::Pool(e)) => return Err(e),
            Err(Failed::Statement(e)) if !connection_lost(&e) => return Err(self.fail(op, e)),
            Err(Failed::Statement(e)) => e,
        };
        tracing::debug!(error = %first, op, "leader-postgres: connection lost; retrying on a fresh one");
        self.inner.pool.retain(|_, _| false);
        match self.query_once(sql, params).await {
            Ok(rows) => Ok(rows),
            Err(Failed::Pool(e)) => Err(e),
            Err(Failed::Statement(e)) => Err(self.fail(op, e)),
        }
    }

    async fn query_once(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> std::result::Result<Vec<Row>, Failed> {
        let mut checkout = self.checkout().await.map_err(Failed::Pool)?;
        checkout.in_flight = true;
        let client = checkout.client();
        let result = match client.prepare_cached(sql).await {
            Ok(stmt) => client.query(&stmt, params).await,
            Err(e) => Err(e),
        };
        // Answered (rows or an error): nothing to cancel. An error still discards the connection.
        checkout.in_flight = false;
        let rows = result.map_err(Failed::Statement)?;
        checkout.finish();
        Ok(rows)
    }

    /// Maps an error; a missing table or function means someone dropped the schema: recreate it on
    /// the next call (when the store creates it at all).
    fn fail(&self, op: &str, e: tokio_postgres::Error) -> Error {
        if let Some(db) = e.as_db_error() {
            if matches!(db.code().code(), "42P01" | "42883" | "3F000") {
                self.inner.schema_ready.store(false, Ordering::Release);
            }
        }
        pg_error(&self.inner.endpoint, op, e)
    }

    pub(crate) fn acquire_params(req: &AcquireRequest) -> Result<(i64, String)> {
        Ok((ttl_micros(req.ttl)?, metadata_json(&req.metadata)?))
    }

    pub(crate) fn sql(&self) -> &Statements {
        &self.inner.sql
    }

    pub(crate) fn channel(&self) -> &str {
        &self.inner.names.channel
    }
}

fn ttl_micros(ttl: Duration) -> Result<i64> {
    match i64::try_from(ttl.as_micros()) {
        Ok(us) if us > 0 => Ok(us),
        _ => Err(Error::invalid_argument(format!(
            "lease duration {ttl:?} is out of range; it must be between 1 µs and {} years",
            i64::MAX / 1_000_000 / 31_557_600
        ))),
    }
}

fn metadata_json(metadata: &Metadata) -> Result<String> {
    validate_metadata(metadata)?;
    serde_json::to_string(metadata).map_err(|e| Error::invalid_argument("metadata does not serialise").with_source(e))
}

/// Why one attempt of a statement failed.
enum Failed {
    /// No connection from the pool (already mapped).
    Pool(Error),
    /// The statement failed on its connection.
    Statement(tokio_postgres::Error),
}

/// The connection died under the statement (closed, reset, or the server's shutdown notice),
/// as opposed to an answer from a working server.
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    match e.as_db_error() {
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P")
        }
        None => true,
    }
}

/// Maps a driver error: connection-level failures are `Unavailable` (the driver retries and
/// reconnects) with a message naming the server and the cause (the OS's words where there are
/// any), everything the server answered is `Backend`.
pub(crate) fn pg_error(endpoint: &str, op: &str, e: tokio_postgres::Error) -> Error {
    let unavailable = match e.as_db_error() {
        // 08: connection exception; 57P0x: admin/crash shutdown, cannot connect now; 53300: too many
        // connections; 25006/25P02-ish read-only after a failover is a backend error.
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        None => true, // I/O, closed connection, TLS, timeouts inside the driver
    };
    let message = match e.as_db_error() {
        Some(db) => format!("PostgreSQL {op} failed: {} ({})", db.message(), db.code().code()),
        None => format!("PostgreSQL {op} failed: no working connection to {endpoint}: {}", cause_of(&e)),
    };
    let err = if unavailable { Error::unavailable(message) } else { Error::backend(message) };
    err.with_source(e)
}

fn pool_error(endpoint: &str, e: PoolError) -> Error {
    match e {
        PoolError::Backend(e) => pg_error(endpoint, "connect", e),
        PoolError::Timeout(deadpool_postgres::TimeoutType::Create) => {
            Error::unavailable(format!("connecting to PostgreSQL at {endpoint} timed out (connect_timeout)"))
        }
        PoolError::Timeout(t) => Error::unavailable(format!(
            "no PostgreSQL connection to {endpoint} from the pool in time ({t:?}; every pooled connection is busy)"
        )),
        PoolError::Closed => Error::unavailable("the PostgreSQL pool is closed"),
        other => Error::backend(format!("PostgreSQL pool ({endpoint}): {other}")),
    }
}

/// Reads the columns of `sql::LEASE_COLUMNS`.
fn lease_from_row(row: &Row) -> std::result::Result<Lease, tokio_postgres::Error> {
    let token: i64 = row.try_get(3)?;
    let expires_in_us: i64 = row.try_get(6)?;
    let metadata: String = row.try_get(7)?;
    Ok(Lease {
        election: row.try_get(0)?,
        participant_id: row.try_get(1)?,
        instance_id: row.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
        // Tokens come from a sequence starting at 1; a negative one cannot be stored by us.
        token: FencingToken::new(u64::try_from(token).unwrap_or(0)),
        acquired_at: Some(row.try_get::<_, SystemTime>(4)?),
        expires_at: Some(row.try_get::<_, SystemTime>(5)?),
        expires_in: Some(Duration::from_micros(u64::try_from(expires_in_us).unwrap_or(0))),
        // Only we write this column, as a JSON object of strings; a hand-edited value that is not
        // reads as empty rather than failing the election.
        metadata: serde_json::from_str(&metadata).unwrap_or_default(),
        handle: Default::default(),
    })
}

fn lease(op: &str, row: &Row) -> Result<Lease> {
    // A row that does not decode is the server's answer, not a connection problem.
    lease_from_row(row)
        .map_err(|e| Error::backend(format!("PostgreSQL {op} returned a row that does not decode: {e}")).with_source(e))
}

fn token_param(lease: &Lease) -> Result<i64> {
    i64::try_from(lease.token.get())
        .map_err(|_| Error::invalid_argument(format!("token {} is not a PostgreSQL bigint", lease.token)))
}

#[async_trait]
impl LeaseStore for PostgresStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        let (ttl, metadata) = Self::acquire_params(req)?;
        let rows = self
            .query(
                "acquire",
                &self.inner.sql.acquire,
                &[&req.election, &req.participant_id, &req.instance_id, &ttl, &metadata, &self.inner.names.channel],
            )
            .await?;
        let row = rows.first().ok_or_else(|| Error::backend("PostgreSQL acquire returned no row"))?;
        let lease = lease("acquire", row)?;
        Ok(if lease.instance_id == req.instance_id { Acquire::Acquired(lease) } else { Acquire::Held(Some(lease)) })
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let rows = self
            .query(
                "renew",
                &self.inner.sql.renew,
                &[&lease.election, &lease.instance_id, &token_param(lease)?, &ttl_micros(ttl)?],
            )
            .await?;
        rows.first().map(|r| self::lease("renew", r)).transpose()
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let rows = self
            .query(
                "release",
                &self.inner.sql.release,
                &[&lease.election, &lease.instance_id, &token_param(lease)?, &self.inner.names.channel],
            )
            .await?;
        Ok(!rows.is_empty())
    }

    /// One statement for the whole batch (see `sql`): each lease's answer is the row returned
    /// for it, or `None` when none was (not ours any more).
    async fn renew_batch(&self, batch: &[Renewal]) -> Vec<Result<Option<Lease>>> {
        let mut answers: Vec<Option<Result<Option<Lease>>>> = Vec::with_capacity(batch.len());
        let (mut elections, mut instances, mut tokens, mut ttls) = (vec![], vec![], vec![], vec![]);
        for r in batch {
            match token_param(&r.lease).and_then(|token| Ok((token, ttl_micros(r.ttl)?))) {
                Ok((token, ttl)) => {
                    elections.push(r.lease.election.as_str());
                    instances.push(r.lease.instance_id.as_str());
                    tokens.push(token);
                    ttls.push(ttl);
                    answers.push(None);
                }
                // A lease the statement cannot carry gets its own error; the others go on.
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !elections.is_empty() {
            let rows =
                self.query("renew_batch", &self.inner.sql.renew_batch, &[&elections, &instances, &tokens, &ttls]).await;
            let renewed =
                rows.and_then(|rows| rows.iter().map(|r| lease("renew_batch", r)).collect::<Result<Vec<_>>>());
            match renewed {
                Ok(renewed) => {
                    for (answer, r) in answers.iter_mut().zip(batch) {
                        if answer.is_none() {
                            let ours = renewed.iter().find(|l| {
                                l.election == r.lease.election
                                    && l.instance_id == r.lease.instance_id
                                    && l.token == r.lease.token
                            });
                            *answer = Some(Ok(ours.cloned()));
                        }
                    }
                }
                Err(e) => {
                    for answer in answers.iter_mut().filter(|a| a.is_none()) {
                        *answer = Some(Err(Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("renew_batch: no answer")))).collect()
    }

    /// One statement for the whole batch, like [`renew_batch`](Self::renew_batch).
    async fn release_batch(&self, leases: &[Lease]) -> Vec<Result<bool>> {
        let mut answers: Vec<Option<Result<bool>>> = Vec::with_capacity(leases.len());
        let (mut elections, mut instances, mut tokens) = (vec![], vec![], vec![]);
        for l in leases {
            match token_param(l) {
                Ok(token) => {
                    elections.push(l.election.as_str());
                    instances.push(l.instance_id.as_str());
                    tokens.push(token);
                    answers.push(None);
                }
                Err(e) => answers.push(Some(Err(e))),
            }
        }
        if !elections.is_empty() {
            let released = self
                .query(
                    "release_batch",
                    &self.inner.sql.release_batch,
                    &[&elections, &instances, &tokens, &self.inner.names.channel],
                )
                .await
                .and_then(|rows| {
                    rows.iter()
                        .map(|r| Ok((r.try_get::<_, String>(0)?, r.try_get::<_, String>(1)?, r.try_get::<_, i64>(2)?)))
                        .collect::<Result<Vec<_>, tokio_postgres::Error>>()
                        .map_err(|e| {
                            Error::backend(format!("PostgreSQL release_batch returned a row that does not decode: {e}"))
                                .with_source(e)
                        })
                });
            for (answer, l) in answers.iter_mut().zip(leases) {
                if answer.is_none() {
                    *answer = Some(match (&released, token_param(l)) {
                        (Ok(rows), Ok(token)) => {
                            Ok(rows.iter().any(|(e, i, t)| *e == l.election && *i == l.instance_id && *t == token))
                        }
                        (Err(e), _) => Err(Error::new(e.kind(), e.to_string())),
                        (_, Err(e)) => Err(e),
                    });
                }
            }
        }
        answers.into_iter().map(|a| a.unwrap_or_else(|| Err(Error::backend("release_batch: no answer")))).collect()
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        let json = metadata_json(metadata)?;
        let rows = self
            .query(
                "update_metadata",
                &self.inner.sql.update_metadata,
                &[&lease.election, &lease.instance_id, &token_param(lease)?, &json],
            )
            .await?;
        rows.first().map(|r| self::lease("update_metadata", r)).transpose()
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let rows = self.query("current", &self.inner.sql.current, &[&election]).await?;
        rows.first().map(|r| lease("current", r)).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let rows = self.query("list", &self.inner.sql.list, &[&prefix]).await?;
        rows.iter().map(|r| lease("list", r)).collect()
    }

    fn watch(&self, election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        self.inner.listener.as_ref()?.watch(election)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: self.inner.listener.is_some(),
            // Nothing fires when a lease merely runs out: followers wake at the holder's expires_in.
            pushes_expiry: false,
            server_side_expiry: true,
            durable_tokens: true,
            cross_host: true,
            // Streaming replication is asynchronous by default: a promoted replica may not have the
            // last acquire, so two holders are possible across a failover.
            survives_store_failover: false,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        ttl_micros(options.lease_duration).map(|_| ())
    }
}
