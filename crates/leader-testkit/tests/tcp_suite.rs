//! The whole suite against a store reached over TCP (a memory store behind a tiny JSON-lines
//! server, one connection per call, no push): exercises the partition scenarios' [`FaultProxy`]
//! path (`server_addr` + `store_at`) and the bounds of a polling provider.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use leader_core::{
    Acquire, AcquireRequest, Capabilities, ElectionOptions, Error, ErrorKind, LeaderInfo, Lease, LeaseStore, Metadata,
    Result,
};
use leader_memory::MemoryStore;
use leader_testkit::Provider;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn from_value<T: serde::de::DeserializeOwned>(v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| Error::backend(format!("bad reply: {e}")))
}

fn ms(v: &Value) -> Duration {
    Duration::from_millis(v.as_u64().unwrap_or(0))
}

fn text(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Serves one JSON request per connection against `store`.
async fn serve(store: MemoryStore, listener: TcpListener) {
    while let Ok((conn, _)) = listener.accept().await {
        let store = store.clone();
        tokio::spawn(async move {
            let (r, mut w) = conn.into_split();
            let mut line = String::new();
            if BufReader::new(r).read_line(&mut line).await.is_err() {
                return;
            }
            let reply = match handle(&store, serde_json::from_str(&line).unwrap_or(Value::Null)).await {
                Ok(v) => json!({ "ok": v }),
                Err(e) => json!({ "err": { "kind": format!("{:?}", e.kind()), "message": e.message() } }),
            };
            let _ = w.write_all(format!("{reply}\n").as_bytes()).await;
        });
    }
}

async fn handle(store: &MemoryStore, req: Value) -> Result<Value> {
    let lease = || from_value::<Lease>(req["lease"].clone());
    Ok(match req["op"].as_str().unwrap_or_default() {
        "try_acquire" => {
            let r = AcquireRequest {
                election: text(&req["election"]),
                participant_id: text(&req["participant_id"]),
                instance_id: text(&req["instance_id"]),
                ttl: ms(&req["ttl_ms"]),
                metadata: from_value(req["metadata"].clone())?,
            };
            match store.try_acquire(&r).await? {
                Acquire::Acquired(l) => json!({ "acquired": to_value(&l) }),
                Acquire::Held(h) => json!({ "held": to_value(&h) }),
                Acquire::Refused(r) => json!({ "refused": r.reason }),
            }
        }
        "renew" => to_value(&store.renew(&lease()?, ms(&req["ttl_ms"])).await?),
        "release" => to_value(&store.release(&lease()?).await?),
        "update_metadata" => {
            to_value(&store.update_metadata(&lease()?, &from_value::<Metadata>(req["metadata"].clone())?).await?)
        }
        "withdraw" => to_value(&store.withdraw(&text(&req["election"]), &text(&req["instance_id"])).await?),
        "current" => to_value(&store.current(&text(&req["election"])).await?),
        "list" => to_value(&store.list(&text(&req["prefix"])).await?),
        op => return Err(Error::backend(format!("unknown op {op:?}"))),
    })
}

/// The client: one connection per call.
struct TcpStore {
    addr: SocketAddr,
}

impl TcpStore {
    async fn call(&self, req: Value) -> Result<Value> {
        let down = |e: std::io::Error| Error::unavailable(format!("{}: {e}", self.addr));
        let conn = TcpStream::connect(self.addr).await.map_err(down)?;
        let (r, mut w) = conn.into_split();
        w.write_all(format!("{req}\n").as_bytes()).await.map_err(down)?;
        let mut line = String::new();
        BufReader::new(r).read_line(&mut line).await.map_err(down)?;
        if line.is_empty() {
            return Err(Error::unavailable("connection closed"));
        }
        let mut reply: Value = serde_json::from_str(&line).map_err(|e| Error::backend(format!("bad reply: {e}")))?;
        if let Some(err) = reply.get("err") {
            let message = text(&err["message"]);
            return Err(match err["kind"].as_str() {
                Some("InvalidArgument") => Error::invalid_argument(message),
                Some("Unsupported") => Error::unsupported(message),
                _ => Error::backend(message),
            });
        }
        Ok(reply["ok"].take())
    }
}

#[leader_core::async_trait]
impl LeaseStore for TcpStore {
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        let mut v = self
            .call(json!({ "op": "try_acquire", "election": req.election, "participant_id": req.participant_id,
                "instance_id": req.instance_id, "ttl_ms": req.ttl.as_millis() as u64, "metadata": req.metadata }))
            .await?;
        if let Some(reason) = v.get("refused").and_then(|r| r.as_str()) {
            return Ok(Acquire::Refused(leader_core::Refusal::new(reason)));
        }
        match v.get_mut("acquired") {
            Some(l) => Ok(Acquire::Acquired(from_value(l.take())?)),
            None => Ok(Acquire::Held(from_value(v["held"].take())?)),
        }
    }
    async fn renew(&self, lease: &Lease, ttl: Duration) -> Result<Option<Lease>> {
        from_value(
            self.call(json!({ "op": "renew", "lease": to_value(lease), "ttl_ms": ttl.as_millis() as u64 })).await?,
        )
    }
    async fn release(&self, lease: &Lease) -> Result<bool> {
        from_value(self.call(json!({ "op": "release", "lease": to_value(lease) })).await?)
    }
    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        from_value(self.call(json!({ "op": "update_metadata", "lease": to_value(lease), "metadata": metadata })).await?)
    }
    async fn withdraw(&self, election: &str, instance_id: &str) -> Result<()> {
        self.call(json!({ "op": "withdraw", "election": election, "instance_id": instance_id })).await.map(drop)
    }
    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        leader_core::validate_election_name(election)?;
        from_value(self.call(json!({ "op": "current", "election": election })).await?)
    }
    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        from_value(self.call(json!({ "op": "list", "prefix": prefix })).await?)
    }
    fn watch(&self, _election: &str, _instance_id: Option<&str>) -> Option<leader_core::BoxStream<'static, ()>> {
        None
    }
    fn capabilities(&self) -> Capabilities {
        Capabilities { server_side_expiry: true, lists_elections: true, ..Capabilities::default() }
    }
    fn check_options(&self, _options: &ElectionOptions) -> Result<()> {
        Ok(())
    }
}

struct TcpProvider {
    addr: SocketAddr,
}

#[leader_core::async_trait]
impl Provider for TcpProvider {
    fn name(&self) -> &'static str {
        "tcp-memory"
    }
    async fn store(&self) -> Result<Arc<dyn LeaseStore>> {
        Ok(Arc::new(TcpStore { addr: self.addr }))
    }
    fn options(&self) -> ElectionOptions {
        ElectionOptions::from_lease(Duration::from_secs(2))
    }
    fn server_addr(&self) -> Option<SocketAddr> {
        Some(self.addr)
    }
    async fn store_at(&self, addr: SocketAddr) -> Option<Result<Arc<dyn LeaseStore>>> {
        Some(Ok(Arc::new(TcpStore { addr })))
    }
}

async fn tcp() -> Option<Arc<dyn Provider>> {
    let listener = TcpListener::bind("127.0.0.1:0").await.ok()?;
    let addr = listener.local_addr().ok()?;
    tokio::spawn(serve(MemoryStore::new(), listener));
    Some(Arc::new(TcpProvider { addr }))
}

leader_testkit::conformance_tests!(tcp);

#[test]
fn error_kinds_survive_the_wire() {
    assert_eq!(format!("{:?}", ErrorKind::InvalidArgument), "InvalidArgument");
}
