//! A loopback TCP proxy that can black-hole traffic (a network partition: bytes are dropped,
//! connections stay open), for the partition and expiry tests, and counts the requests clients
//! send through it, by opcode (to count a batch's round trips).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct Proxy {
    pub addr: SocketAddr,
    blackhole: Arc<AtomicBool>,
    requests: Arc<Mutex<HashMap<i32, u64>>>,
    task: tokio::task::JoinHandle<()>,
}

/// ZooKeeper opcodes (`org.apache.zookeeper.ZooDefs.OpCode`).
pub mod op {
    pub const DELETE: i32 = 2;
    pub const GET_DATA: i32 = 4;
    pub const SYNC: i32 = 9;
    pub const MULTI: i32 = 14;
    pub const MULTI_READ: i32 = 22;
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let blackhole = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(HashMap::new()));
        let (hole, counts) = (blackhole.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(target).await else { continue };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pipe(cr, sw, hole.clone(), Some(Frames::new(counts.clone()))));
                tokio::spawn(pipe(sr, cw, hole.clone(), None));
            }
        });
        Proxy { addr, blackhole, requests, task }
    }

    /// How many requests of `opcode` clients have sent through the proxy so far.
    pub fn requests(&self, opcode: i32) -> u64 {
        self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&opcode).copied().unwrap_or(0)
    }

    /// Drops every byte in both directions while on.
    pub fn blackhole(&self, on: bool) {
        self.blackhole.store(on, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    hole: Arc<AtomicBool>,
    mut frames: Option<Frames>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if hole.load(Ordering::SeqCst) {
            continue;
        }
        if let Some(frames) = frames.as_mut() {
            frames.feed(&buf[..n]);
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// Splits a client's byte stream into ZooKeeper frames (a 4-byte big-endian length, then the
/// frame) and counts each request by its opcode (the second `int` of its header). The first frame
/// of a connection is the connect request, which has no header.
struct Frames {
    pending: Vec<u8>,
    connected: bool,
    counts: Arc<Mutex<HashMap<i32, u64>>>,
}

impl Frames {
    fn new(counts: Arc<Mutex<HashMap<i32, u64>>>) -> Frames {
        Frames { pending: Vec::new(), connected: false, counts }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        loop {
            let Some(len) = self.pending.get(..4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]])) else { return };
            let len = usize::try_from(len).unwrap_or(0);
            if self.pending.len() < 4 + len {
                return;
            }
            let frame: Vec<u8> = self.pending.drain(..4 + len).skip(4).collect();
            if !std::mem::replace(&mut self.connected, true) {
                continue;
            }
            if let Some(b) = frame.get(4..8) {
                let opcode = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                *self.counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(opcode).or_insert(0) += 1;
            }
        }
    }
}
