//! A small connection pool for tiberius (which has none).
//!
//! Why not bb8: `bb8-tiberius` (0.16) is built for tiberius 0.12, and bb8's own `get()` keeps a
//! failed connect to itself (it retries, and the caller only sees "timed out" when
//! `connect_timeout` ends), while the election wants the real cause at once ("connection
//! refused" is `Unavailable`, now). This pool is a semaphore of `pool_size` permits and a stack
//! of idle connections; a caller takes a permit, then an idle connection or a new one.
//!
//! Cancellation: the election driver drops a store call at `operation_timeout`, possibly halfway
//! through reading a response. A connection in that state would hand the rest of the old
//! response to the next caller, so each connection carries a `busy` flag, set before a request
//! and cleared only when the whole response has been read. A connection still busy when its
//! guard is dropped is closed, not pooled; closing it makes the server roll back whatever
//! transaction the cancelled batch had open.

use std::sync::Mutex;
use std::time::Duration;

use tiberius::{Client, Config, ToSql};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::compat::{Compat, TokioAsyncWriteCompatExt};

/// Idle connections older than this are closed rather than reused (servers and middleboxes drop
/// idle TCP connections; a fresh one costs a login).
const MAX_IDLE: Duration = Duration::from_secs(300);

/// One connection.
pub(crate) struct Conn {
    client: Client<Compat<TcpStream>>,
    busy: bool,
}

impl Conn {
    /// Runs one batch and reads every result set; the rows of all sets, in order.
    pub(crate) async fn query(&mut self, sql: &str, params: &[&dyn ToSql]) -> tiberius::Result<Vec<tiberius::Row>> {
        self.busy = true;
        let result = async { self.client.query(sql, params).await?.into_results().await }.await;
        // Only a response read to its end leaves the connection reusable. After any error (even
        // the server's own, such as a deadlock victim) part of the response may still be unread,
        // so the connection is closed rather than trusted; errors are rare, logins cheap.
        if result.is_ok() {
            self.busy = false;
        }
        Ok(result?.into_iter().flatten().collect())
    }
}

/// The pool.
pub(crate) struct Pool {
    config: Config,
    connect_timeout: Duration,
    permits: Semaphore,
    idle: Mutex<Vec<(Conn, Instant)>>,
}

/// A connection on loan; goes back to the pool when dropped, unless it is broken or mid-request.
pub(crate) struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    _permit: SemaphorePermit<'a>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        self.conn.as_ref().expect("a Pooled always holds its connection until dropped")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        self.conn.as_mut().expect("a Pooled always holds its connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.busy {
                lock(&self.pool.idle).push((conn, Instant::now()));
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Pool {
    pub(crate) fn new(config: Config, connect_timeout: Duration, size: u32) -> Self {
        Pool { config, connect_timeout, permits: Semaphore::new(size.max(1) as usize), idle: Mutex::new(Vec::new()) }
    }

    /// A connection: an idle one (most recently used first), else a new one.
    pub(crate) async fn get(&self) -> tiberius::Result<Pooled<'_>> {
        let permit = self.permits.acquire().await.map_err(|_| io_error("the connection pool is closed".into()))?;
        let reuse = {
            let mut idle = lock(&self.idle);
            idle.retain(|(_, since)| since.elapsed() < MAX_IDLE);
            idle.pop().map(|(conn, _)| conn)
        };
        let conn = match reuse {
            Some(conn) => conn,
            None => self.connect().await?,
        };
        Ok(Pooled { pool: self, conn: Some(conn), _permit: permit })
    }

    async fn connect(&self) -> tiberius::Result<Conn> {
        let open = async {
            let tcp = TcpStream::connect(self.config.get_addr()).await?;
            tcp.set_nodelay(true)?;
            let client = Client::connect(self.config.clone(), tcp.compat_write()).await?;
            Ok(Conn { client, busy: false })
        };
        match tokio::time::timeout(self.connect_timeout, open).await {
            Ok(conn) => conn,
            Err(_) => Err(io_error(format!(
                "connecting to {} took longer than {:?}",
                self.config.get_addr(),
                self.connect_timeout
            ))),
        }
    }
}

fn io_error(message: String) -> tiberius::error::Error {
    tiberius::error::Error::Io { kind: std::io::ErrorKind::TimedOut, message }
}
