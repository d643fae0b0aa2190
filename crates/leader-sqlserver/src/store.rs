//! [`SqlServerStore`]: the [`LeaseStore`] over one lease table, through a small pool of tiberius
//! connections (see `pool.rs`).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use futures::stream::BoxStream;
use leader_core::{
    async_trait, validate_election_name, validate_prefix, Acquire, AcquireRequest, Capabilities, ElectionOptions,
    Error, FencingToken, LeaderInfo, Lease, LeaseStore, Metadata, Result,
};
use tiberius::{Row, ToSql};

use crate::config::SqlServerConfig;
use crate::pool::Pool;
use crate::sql::Statements;

/// Longest instance id the table holds (`NVARCHAR(128)`); the core makes UUIDs.
const MAX_INSTANCE_ID: usize = 128;

/// A lease store in a SQL Server table. Cheap to clone (clones share the pool).
#[derive(Clone)]
pub struct SqlServerStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    sql: Statements,
    /// `host:port`, for messages.
    addr: String,
}

impl std::fmt::Debug for SqlServerStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlServerStore").field("table", &self.inner.sql.qualified_table()).finish_non_exhaustive()
    }
}

impl SqlServerStore {
    /// Connects with a `mssql://`/`sqlserver://` URL or an ADO.NET connection string (see
    /// [`SqlServerConfig`]) and, unless `ensure_schema=false`, creates the lease table if missing.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::with_config(SqlServerConfig::parse(url)?).await
    }

    /// Connects with a prepared configuration and, unless `ensure_schema=false`, creates the lease
    /// table if missing (without it nothing is sent yet; `leader::connect` then calls
    /// [`ping`](Self::ping)).
    pub async fn with_config(config: SqlServerConfig) -> Result<Self> {
        let addr = config.tds.get_addr();
        let pool = Pool::new(config.tds.clone(), config.connect_timeout, config.pool_size);
        let store =
            SqlServerStore { inner: Arc::new(Inner { pool, sql: Statements::new(config.schema, config.table), addr }) };
        if config.ensure_schema {
            store.ensure_schema().await?;
        }
        Ok(store)
    }

    /// One round trip (`SELECT 1`) on a pooled connection, opened if none is idle.
    ///
    /// # Errors
    /// `Unavailable` naming the server (`host:port`) and the cause when it cannot be reached.
    pub async fn ping(&self) -> Result<()> {
        self.query("SELECT 1", &[]).await.map(drop)
    }

    /// Creates the schema and lease table if they are missing. Idempotent, and safe when several
    /// processes run it at once.
    pub async fn ensure_schema(&self) -> Result<()> {
        let sql = self.inner.sql.ensure_schema();
        match self.query(&sql, &[]).await {
            Ok(_) => Ok(()),
            // Another process created the schema or table between our existence check and our
            // CREATE (error 2714 "There is already an object named ..." and friends): the second
            // run sees it and does nothing.
            Err(e) if e.kind() == leader_core::ErrorKind::Backend => self.query(&sql, &[]).await.map(drop),
            Err(e) => Err(e),
        }
    }

    /// Clears the holder of every expired lease (rows and their token counters stay, so tokens keep
    /// growing). Returns how many leases it cleared. Optional: expired leases are taken over
    /// without it; this only tidies what `SELECT`s on the table show.
    pub async fn cleanup_expired_leases(&self) -> Result<u64> {
        Ok(self.query(&self.inner.sql.cleanup_expired(), &[]).await?.len() as u64)
    }

    /// The lease table, `[schema].[table]`.
    pub fn table(&self) -> &str {
        self.inner.sql.qualified_table()
    }

    /// A T-SQL predicate for fenced writes in your own transactions: true while fencing token
    /// `@P2` still holds election `@P1` (lock hints keep the lease row stable until you commit):
    /// `UPDATE jobs SET ... WHERE id = @P3 AND <predicate>`.
    ///
    /// The lock hints hold the lease row until your transaction ends, which also holds up the
    /// holder's own renewals: a fenced transaction open longer than `renew_deadline` makes the
    /// leader step down. Keep fenced transactions well under `renew_deadline - renew_interval`.
    pub fn token_holds_predicate(&self) -> String {
        self.inner.sql.token_holds()
    }

    async fn query(&self, sql: &str, params: &[&dyn ToSql]) -> Result<Vec<Row>> {
        let addr = &self.inner.addr;
        let mut conn = self.inner.pool.get().await.map_err(|e| map_err(addr, e))?;
        conn.query(sql, params).await.map_err(|e| map_err(addr, e))
    }

    async fn acquire_rows(&self, req: &AcquireRequest) -> Result<Vec<Row>> {
        let ttl = ttl_ms(req.ttl)?;
        let metadata = metadata_json(&req.metadata)?;
        let params: [&dyn ToSql; 5] =
            [&req.election.as_str(), &req.participant_id.as_str(), &req.instance_id.as_str(), &ttl, &metadata.as_str()];
        self.query(&self.inner.sql.acquire(), &params).await
    }
}

/// Maps a driver error to the core's kinds: I/O and TLS trouble is `Unavailable`, the server's own
/// errors are `Backend` (with its error number), bad input is `InvalidArgument`.
fn map_err(addr: &str, e: tiberius::error::Error) -> Error {
    use tiberius::error::Error as E;
    match &e {
        // tiberius keeps the OS's words in the message of its Io variant; the source is that I/O
        // error alone, so that the text is not shown twice.
        E::Io { kind, message } => Error::unavailable(format!("SQL Server at {addr} cannot be reached: {message}"))
            .with_source(std::io::Error::new(*kind, message.clone())),
        E::Tls(detail) => Error::unavailable(format!("TLS with SQL Server at {addr} failed: {detail}")).with_source(e),
        E::Routing { host, port } => Error::unavailable(format!(
            "SQL Server at {addr} redirected the connection to {host}:{port}, which this pool does not follow"
        ))
        .with_source(e),
        E::Server(t) => Error::backend(format!("SQL Server error {}", t.code())).with_source(e),
        _ => Error::backend("SQL Server driver error").with_source(e),
    }
}

fn ttl_ms(ttl: Duration) -> Result<i32> {
    match i32::try_from(ttl.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(Error::invalid_argument(format!(
            "lease TTL {ttl:?} is outside 1 ms..{} ms (T-SQL DATEADD takes an INT)",
            i32::MAX
        ))),
    }
}

fn metadata_json(metadata: &Metadata) -> Result<String> {
    serde_json::to_string(metadata).map_err(|e| Error::invalid_argument("metadata cannot be encoded").with_source(e))
}

fn check_instance(instance_id: &str) -> Result<()> {
    if instance_id.is_empty() || instance_id.len() > MAX_INSTANCE_ID {
        return Err(Error::invalid_argument(format!(
            "instance id {instance_id:?} must be 1-{MAX_INSTANCE_ID} bytes for the SQL Server lease table"
        )));
    }
    Ok(())
}

fn token_param(lease: &Lease) -> Result<i64> {
    i64::try_from(lease.token.get())
        .map_err(|_| Error::invalid_argument(format!("token {} does not fit a BIGINT", lease.token)))
}

/// Decodes one row of `sql::lease_columns`.
pub(crate) fn decode_lease(row: &Row) -> Result<Lease> {
    fn bad(what: &str) -> Error {
        Error::backend(format!("lease table row has a missing or malformed {what}"))
    }
    let text = |i: usize, what: &str| -> Result<String> {
        row.try_get::<&str, _>(i).map_err(|e| bad(what).with_source(e))?.map(str::to_owned).ok_or_else(|| bad(what))
    };
    let int = |i: usize, what: &str| -> Result<i64> {
        row.try_get::<i64, _>(i).map_err(|e| bad(what).with_source(e))?.ok_or_else(|| bad(what))
    };
    let token = u64::try_from(int(3, "token")?).map_err(|_| bad("token"))?;
    let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(ms.max(0).unsigned_abs());
    let metadata = match row.try_get::<&str, _>(7).map_err(|e| bad("metadata").with_source(e))? {
        None | Some("") => Metadata::new(),
        Some(json) => serde_json::from_str(json).map_err(|e| bad("metadata").with_source(e))?,
    };
    Ok(Lease {
        election: text(0, "election")?,
        participant_id: text(1, "participant_id")?,
        instance_id: text(2, "instance_id")?,
        token: FencingToken::new(token),
        acquired_at: Some(at(int(4, "acquired_at")?)),
        expires_at: Some(at(int(5, "expires_at")?)),
        expires_in: Some(Duration::from_millis(int(6, "expires_in")?.max(0).unsigned_abs())),
        metadata,
        handle: Default::default(),
    })
}

/// The acquire batch's single row, read as our lease or another's.
pub(crate) fn acquire_outcome(lease: Lease, instance_id: &str) -> Acquire {
    if lease.instance_id == instance_id {
        Acquire::Acquired(lease)
    } else {
        Acquire::Held(Some(lease))
    }
}

fn at_most_one(rows: Vec<Row>) -> Result<Option<Lease>> {
    rows.first().map(decode_lease).transpose()
}

#[async_trait]
impl LeaseStore for SqlServerStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        leader_core::validate_participant_id(&req.participant_id)?;
        check_instance(&req.instance_id)?;
        let rows = self.acquire_rows(req).await?;
        let lease = at_most_one(rows)?.ok_or_else(|| Error::backend("the acquire batch returned no row"))?;
        Ok(acquire_outcome(lease, &req.instance_id))
    }

    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        let (ttl, token) = (ttl_ms(ttl)?, token_param(lease)?);
        let params: [&dyn ToSql; 4] = [&lease.election.as_str(), &lease.instance_id.as_str(), &token, &ttl];
        at_most_one(self.query(&self.inner.sql.renew(), &params).await?)
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        let token = token_param(lease)?;
        let params: [&dyn ToSql; 3] = [&lease.election.as_str(), &lease.instance_id.as_str(), &token];
        Ok(!self.query(&self.inner.sql.release(), &params).await?.is_empty())
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        leader_core::validate_metadata(metadata)?;
        let (token, json) = (token_param(lease)?, metadata_json(metadata)?);
        let params: [&dyn ToSql; 4] = [&lease.election.as_str(), &lease.instance_id.as_str(), &token, &json.as_str()];
        at_most_one(self.query(&self.inner.sql.update_metadata(), &params).await?)
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        at_most_one(self.query(&self.inner.sql.current(), &[&election]).await?)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        // Validated prefixes are ASCII: bytes == characters for LEFT().
        let len = i32::try_from(prefix.len()).map_err(|_| Error::invalid_argument("prefix too long"))?;
        let params: [&dyn ToSql; 2] = [&prefix, &len];
        self.query(&self.inner.sql.list(), &params).await?.iter().map(decode_lease).collect()
    }

    fn watch(&self, _election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        None // no push channel: followers wake at the holder's expires_in (see the README)
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        check_options(options)
    }
}

/// What this store can do (see the README for why each is so).
pub const CAPABILITIES: Capabilities = Capabilities {
    push_notifications: false,
    pushes_expiry: false,
    server_side_expiry: true,
    durable_tokens: true,
    cross_host: true,
    survives_store_failover: false,
    lists_elections: true,
    reap_multiplier: 1,
};

/// The lease must fit `DATEADD(MILLISECOND, INT, ...)` and be at least 1 ms.
pub(crate) fn check_options(options: &ElectionOptions) -> Result<()> {
    ttl_ms(options.lease_duration).map(drop)
}

/// `leader-bench`'s floor: the acquire batch alone, through the same pool.
pub(crate) struct Floor(pub(crate) SqlServerStore);

#[async_trait]
impl leader_core::RawFloor for Floor {
    fn describe(&self) -> String {
        "one T-SQL batch: UPDLOCK/HOLDLOCK existence check, then INSERT or UPDATE ... OUTPUT, in a transaction"
            .to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        let req = AcquireRequest {
            election: election.to_owned(),
            participant_id: "leader-bench".to_owned(),
            instance_id: instance_id.to_owned(),
            ttl: Duration::from_secs(15),
            metadata: Metadata::new(),
        };
        self.0.acquire_rows(&req).await.map(drop)
    }
}
