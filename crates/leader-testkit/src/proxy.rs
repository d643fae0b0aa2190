//! [`FaultProxy`]: a loopback TCP proxy in front of a store's server that can black-hole, reset or
//! slow every connection: network partitions for providers that talk TCP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic; applies to every connection, current and new.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyMode {
    /// Forward both ways.
    Pass,
    /// Accept and hold connections but forward nothing in either direction (a partition: packets
    /// vanish, nobody is told). Data read meanwhile is held and delivered when the mode returns to
    /// `Pass`, as TCP retransmission would after the partition heals.
    Blackhole,
    /// Close every current connection with a reset and close new ones at once (a killed server
    /// session, a restarted middlebox).
    Reset,
    /// Forward both ways, each chunk delayed by this much.
    Latency(Duration),
}

/// A loopback TCP proxy: listens on `127.0.0.1:0` and forwards to an upstream address, with a
/// [`ProxyMode`] switch. Scenarios that need a partition use it when the provider gives both
/// [`Provider::server_addr`](crate::Provider::server_addr) and
/// [`Provider::store_at`](crate::Provider::store_at); otherwise they use
/// [`FaultLayer`](crate::FaultLayer). Dropping the proxy stops it and closes its connections.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use leader_testkit::{FaultProxy, ProxyMode};
/// let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let proxy = FaultProxy::start(upstream.local_addr()?).await?;
/// let _client = tokio::net::TcpStream::connect(proxy.addr()).await?;
/// proxy.set_mode(ProxyMode::Blackhole);
/// # Ok(()) }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    mode: Arc<watch::Sender<ProxyMode>>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` in [`ProxyMode::Pass`].
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let mode = Arc::new(watch::Sender::new(ProxyMode::Pass));
        let accept = tokio::spawn(accept_loop(listener, upstream, mode.clone()));
        Ok(FaultProxy { addr, mode, accept })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches every connection, current and new, to `mode`.
    pub fn set_mode(&self, mode: ProxyMode) {
        self.mode.send_replace(mode);
    }

    /// The mode now.
    pub fn mode(&self) -> ProxyMode {
        *self.mode.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Connection tasks end when they see the sender gone.
        self.mode.send_replace(ProxyMode::Reset);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, mode: Arc<watch::Sender<ProxyMode>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if *mode.borrow() == ProxyMode::Reset {
            reset(client);
            continue;
        }
        tokio::spawn(connection(client, upstream, mode.subscribe()));
    }
}

/// Closes with RST rather than FIN, so the peer sees a reset connection. (`set_linger` is
/// deprecated because a non-zero linger blocks the thread on drop; a zero linger does not block.)
#[allow(deprecated)]
fn reset(stream: TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<ProxyMode>) {
    // A black-holed proxy must not even connect upstream (the server would see a new session).
    if mode.wait_for(|m| *m != ProxyMode::Blackhole).await.is_err() {
        return;
    }
    if *mode.borrow() == ProxyMode::Reset {
        return reset(client);
    }
    let Ok(server) = TcpStream::connect(upstream).await else { return reset(client) };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client, mut server) = (client, server);
    let mut reset_rx = mode.clone();
    let was_reset = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let both = async {
            tokio::join!(pump(&mut cr, &mut sw, mode.clone()), pump(&mut sr, &mut cw, mode.clone()));
        };
        tokio::select! {
            _ = both => false,
            _ = async { drop(reset_rx.wait_for(|m| *m == ProxyMode::Reset).await) } => true,
        }
    };
    if was_reset {
        reset(client);
        reset(server);
    }
}

/// Copies `from` to `to` chunk by chunk, honouring the mode before each read and write; ends at
/// EOF or on an error (after passing the EOF on).
async fn pump<R, W>(from: &mut R, to: &mut W, mut mode: watch::Receiver<ProxyMode>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // In a black hole nothing is read either, so the sender's data stays in flight.
        if mode.wait_for(|m| *m != ProxyMode::Blackhole).await.is_err() {
            return;
        }
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = async { drop(mode.wait_for(|m| *m == ProxyMode::Blackhole).await) } => continue,
        };
        // Data read just before a black hole began is held until it ends.
        if mode.wait_for(|m| *m != ProxyMode::Blackhole).await.is_err() {
            return;
        }
        let current = *mode.borrow();
        match current {
            ProxyMode::Reset => return,
            ProxyMode::Latency(d) => tokio::time::sleep(d).await,
            ProxyMode::Pass | ProxyMode::Blackhole => {}
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
