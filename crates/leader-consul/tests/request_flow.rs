//! The store's HTTP conversations, checked without Consul: a scripted responder on loopback
//! answers each request with the next recorded answer (tests/fixtures, written down from Consul's
//! documentation) and records what was sent, so these tests pin the requests (method, path,
//! query, token header, JSON body) and the store's reading of the answers. They do not show that
//! Consul behaves as documented; the conformance suite against a real agent does that.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use leader_consul::ConsulStore;
use leader_core::{Acquire, AcquireRequest, ElectionOptions, ErrorKind, LeaseStore, Metadata};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const SESSION: &str = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";
const INSTANCE: &str = "0b6f2c1e-7d4a-4c59-9a57-2f5c4a8e1b3d";

#[derive(Debug, Clone)]
struct Sent {
    method: String,
    target: String,
    token: Option<String>,
    body: String,
}

impl Sent {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

struct Reply {
    status: u16,
    index: Option<u64>,
    body: String,
}

fn reply(status: u16, body: impl Into<String>) -> Reply {
    Reply { status, index: None, body: body.into() }
}

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Responder {
    url: String,
    sent: Arc<Mutex<Vec<Sent>>>,
}

impl Responder {
    async fn start(replies: Vec<Reply>) -> Responder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let sent = Arc::new(Mutex::new(Vec::new()));
        let log = sent.clone();
        let mut replies: VecDeque<Reply> = replies.into();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Headers, then Content-Length bytes of body.
                let (head, body) = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break (String::new(), Vec::new());
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                            })
                            .and_then(|v| v.parse::<usize>().ok())
                            .unwrap_or(0);
                        let mut body = buf[end + 4..].to_vec();
                        while body.len() < len {
                            let n = sock.read(&mut chunk).await.unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            body.extend_from_slice(&chunk[..n]);
                        }
                        break (head, body);
                    }
                };
                if head.is_empty() {
                    continue;
                }
                let mut first = head.lines().next().unwrap_or("").split(' ');
                let token = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-consul-token:").or_else(|| l.strip_prefix("X-Consul-Token:")))
                    .map(|v| v.trim().to_owned());
                log.lock().expect("log").push(Sent {
                    method: first.next().unwrap_or("").to_owned(),
                    target: first.next().unwrap_or("").to_owned(),
                    token,
                    body: String::from_utf8_lossy(&body).to_string(),
                });
                let r = replies.pop_front().unwrap_or_else(|| reply(599, "no scripted reply left"));
                let index = r.index.map(|i| format!("X-Consul-Index: {i}\r\n")).unwrap_or_default();
                let text = format!(
                    "HTTP/1.1 {} X\r\nContent-Type: application/json\r\n{index}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    r.status,
                    r.body.len(),
                    r.body
                );
                let _ = sock.write_all(text.as_bytes()).await;
                let _ = sock.shutdown().await;
            }
        });
        Responder { url: format!("consul://127.0.0.1:{port}?token=t0k&dc=dc1"), sent }
    }

    fn sent(&self) -> Vec<Sent> {
        self.sent.lock().expect("log").clone()
    }
}

fn request() -> AcquireRequest {
    AcquireRequest {
        election: "jobs".into(),
        participant_id: "web-1".into(),
        instance_id: INSTANCE.into(),
        ttl: Duration::from_secs(15),
        metadata: [("addr".to_owned(), "10.0.0.7:8080".to_owned())].into(),
    }
}

fn lock_value() -> Value {
    json!({"participant_id": "web-1", "instance_id": INSTANCE, "metadata": {"addr": "10.0.0.7:8080"}})
}

fn decoded_lock_value(op: &Value) -> Value {
    use base64::Engine as _;
    let b64 = op["KV"]["Value"].as_str().expect("lock value");
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).expect("base64");
    serde_json::from_slice(&raw).expect("json")
}

#[tokio::test]
async fn acquire_renew_release_conversation() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(200, fixture("txn_acquire_committed.json")),
        // renew: session renew, then the ownership check txn
        reply(200, fixture("session_renew.json")),
        reply(200, fixture("txn_acquire_committed.json")),
        // release: read (rs-consul), txn, session destroy
        reply(200, fixture("kv_get.json")),
        reply(200, r#"{"Results":null,"Errors":null}"#),
        reply(200, "true"),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert_eq!(lease.token.get(), 1_086_512);
    assert_eq!(lease.participant_id, "web-1");

    let renewed = store.renew(&lease, Duration::from_secs(15)).await?.expect("still ours");
    assert!(renewed.same_tenure(&lease));
    assert!(store.release(&lease).await?);

    let sent = r.sent();
    let targets: Vec<(String, String)> = sent.iter().map(|s| (s.method.clone(), s.target.clone())).collect();
    assert_eq!(
        targets,
        [
            ("PUT", "/v1/session/create?dc=dc1".to_owned()),
            ("PUT", "/v1/txn?dc=dc1".to_owned()),
            ("PUT", format!("/v1/session/renew/{SESSION}?dc=dc1")),
            ("PUT", "/v1/txn?dc=dc1".to_owned()),
            ("GET", "/v1/kv/leader/jobs?recurse=false&dc=dc1".to_owned()),
            ("PUT", "/v1/txn?dc=dc1".to_owned()),
            ("PUT", format!("/v1/session/destroy/{SESSION}?dc=dc1")),
        ]
        .map(|(m, t)| (m.to_owned(), t))
    );
    assert!(sent.iter().all(|s| s.token.as_deref() == Some("t0k")), "every request carries the token");

    assert_eq!(
        sent[0].json(),
        json!({"Name": "leader:jobs:web-1", "Behavior": "delete", "TTL": "15s", "LockDelay": "0s", "Checks": [], "NodeChecks": []})
    );
    let acquire = sent[1].json();
    assert_eq!(acquire[0], json!({"KV": {"Verb": "check-not-exists", "Key": "leader/jobs"}}));
    assert_eq!(
        (acquire[1]["KV"]["Verb"].as_str(), acquire[1]["KV"]["Session"].as_str()),
        (Some("lock"), Some(SESSION))
    );
    assert_eq!(decoded_lock_value(&acquire[1]), lock_value());
    assert_eq!(acquire[2], json!({"KV": {"Verb": "get", "Key": "leader/jobs"}}));
    assert_eq!(
        sent[3].json(),
        json!([
            {"KV": {"Verb": "check-session", "Key": "leader/jobs", "Session": SESSION}},
            {"KV": {"Verb": "get", "Key": "leader/jobs"}}
        ])
    );
    assert_eq!(
        sent[5].json(),
        json!([
            {"KV": {"Verb": "check-session", "Key": "leader/jobs", "Session": SESSION}},
            {"KV": {"Verb": "delete-cas", "Key": "leader/jobs", "Index": 1_086_530}}
        ])
    );
    Ok(())
}

#[tokio::test]
async fn held_by_another_session_answers_the_holder() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, r#"{"ID": "11111111-2222-3333-4444-555555555555"}"#),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, fixture("kv_get.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let mut req = request();
    req.instance_id = "another-instance".into();
    let Acquire::Held(Some(holder)) = store.try_acquire(&req).await? else { panic!("expected Held(holder)") };
    assert_eq!((holder.participant_id.as_str(), holder.instance_id.as_str()), ("web-1", INSTANCE));
    assert_eq!(holder.token.get(), 1_086_512);
    assert!(holder.handle.is_empty(), "another's lease carries no session");
    Ok(())
}

#[tokio::test]
async fn already_ours_keeps_the_token_and_refreshes() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, fixture("kv_get.json")),
        // no renew: the session holding it is the one just created (its TTL counts from now)
        reply(200, fixture("txn_acquire_committed.json")),
        // a second try_acquire (manual mode renews this way): renew, then the same refresh
        reply(200, fixture("session_renew.json")),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, fixture("kv_get.json")),
        reply(200, fixture("txn_acquire_committed.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert_eq!(lease.token.get(), 1_086_512);
    let Acquire::Acquired(again) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert_eq!(again.token, lease.token);
    let sent = r.sent();
    let targets: Vec<&str> = sent.iter().map(|s| s.target.as_str()).collect();
    let renew = format!("/v1/session/renew/{SESSION}?dc=dc1");
    assert_eq!(
        targets,
        [
            "/v1/session/create?dc=dc1",
            "/v1/txn?dc=dc1",
            "/v1/kv/leader/jobs?recurse=false&dc=dc1",
            "/v1/txn?dc=dc1",
            &renew,
            "/v1/txn?dc=dc1",
            "/v1/kv/leader/jobs?recurse=false&dc=dc1",
            "/v1/txn?dc=dc1",
        ]
    );
    let update = sent[3].json();
    assert_eq!(update[0]["KV"]["Verb"], "check-session");
    assert_eq!(update[1], json!({"KV": {"Verb": "check-index", "Key": "leader/jobs", "Index": 1_086_530}}));
    assert_eq!(decoded_lock_value(&update[2]), lock_value());
    Ok(())
}

#[tokio::test]
async fn an_expired_follower_session_is_replaced() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, r#"{"ID": "aaaaaaaa-0000-0000-0000-000000000000"}"#),
        reply(409, r#"{"Results":null,"Errors":[{"OpIndex":1,"What":"invalid session \"aaaaaaaa-0000-0000-0000-000000000000\""}]}"#),
        reply(404, "Session id 'aaaaaaaa-0000-0000-0000-000000000000' not found"),
        reply(200, fixture("session_create.json")),
        reply(200, fixture("txn_acquire_committed.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    assert!(matches!(store.try_acquire(&request()).await?, Acquire::Acquired(_)));
    let creates = r.sent().iter().filter(|s| s.target.starts_with("/v1/session/create")).count();
    assert_eq!(creates, 2);
    Ok(())
}

#[tokio::test]
async fn lock_delay_answers_held_without_a_new_session() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(409, fixture("txn_lock_delay.json")),
        reply(200, fixture("session_renew.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    assert!(matches!(store.try_acquire(&request()).await?, Acquire::Held(None)));
    assert_eq!(r.sent().len(), 3);
    Ok(())
}

#[tokio::test]
async fn an_invalidated_session_is_a_loss() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(200, fixture("txn_acquire_committed.json")),
        reply(404, format!("Session id '{SESSION}' not found")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert!(store.renew(&lease, Duration::from_secs(15)).await?.is_none());
    Ok(())
}

#[tokio::test]
async fn current_and_list_read_through_rs_consul() -> leader_core::Result<()> {
    let r =
        Responder::start(vec![reply(200, fixture("kv_get.json")), reply(404, ""), reply(200, fixture("kv_get.json"))])
            .await;
    let store = ConsulStore::connect(&r.url)?;
    let holder = store.current("jobs").await?.expect("a holder");
    assert_eq!(holder.instance_id, INSTANCE);
    assert!(store.current("jobs").await?.is_none(), "404 is no holder");
    let all = store.list("jo").await?;
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].election, "jobs");
    let sent = r.sent();
    assert_eq!(sent[2].target, "/v1/kv/leader/jo?recurse=true&dc=dc1");
    Ok(())
}

#[tokio::test]
async fn watch_is_a_blocking_query_that_fires_on_a_new_index() {
    let r = Responder::start(vec![
        Reply { status: 404, index: Some(10), body: String::new() },
        Reply { status: 404, index: Some(10), body: String::new() }, // wait ran out: no change
        Reply { status: 200, index: Some(12), body: fixture("kv_get.json") },
    ])
    .await;
    let store = ConsulStore::connect(&r.url).expect("url");
    let mut watch = store.watch("jobs", Some(INSTANCE)).expect("Consul pushes");
    tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("fires").expect("an item");
    let sent = r.sent();
    assert_eq!(sent[0].target, "/v1/kv/leader/jobs?dc=dc1");
    assert_eq!(sent[1].target, "/v1/kv/leader/jobs?index=10&wait=60s&dc=dc1");
    assert_eq!(sent[2].target, "/v1/kv/leader/jobs?index=10&wait=60s&dc=dc1");
    // The next answer is an error: the stream ends, and the driver falls back to polling.
    assert!(tokio::time::timeout(Duration::from_secs(10), watch.next()).await.expect("ends").is_none());
}

#[tokio::test]
async fn unreachable_consul_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let store = ConsulStore::connect(&format!("consul://127.0.0.1:{port}")).expect("url");
    let err = store.current("jobs").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let err = store.try_acquire(&request()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[test]
fn short_leases_are_refused_with_the_rule() {
    let store = ConsulStore::connect("consul://127.0.0.1:8500").expect("url");
    let err = store.check_options(&ElectionOptions::from_lease(Duration::from_secs(3))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("at least 10s"), "{err}");
    assert!(store.check_options(&ElectionOptions::from_lease(Duration::from_secs(86_401))).is_err());
    assert!(store.check_options(&ElectionOptions::from_lease(Duration::from_secs(10))).is_ok());
    let caps = store.capabilities();
    assert_eq!(caps.reap_multiplier, 2);
    let options = ElectionOptions::from_lease(Duration::from_secs(10));
    assert_eq!(caps.crash_bound(&options), Duration::from_secs(20) + options.retry_interval);
    let _ = Metadata::new();
}

#[tokio::test]
async fn a_late_release_of_an_older_tenure_touches_nothing() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(200, fixture("txn_acquire_committed.json")),
        // release(old): the key is held by the same session, but as a later tenure
        reply(200, fixture("kv_get.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    let mut old = lease.clone();
    old.token = leader_core::FencingToken::new(lease.token.get() - 1);
    assert!(!store.release(&old).await?);
    let sent = r.sent();
    assert_eq!(sent.len(), 3, "no txn and no session destroy: {sent:?}");
    Ok(())
}

#[tokio::test]
async fn our_lock_under_an_uncached_session_is_adopted() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        reply(200, r#"{"ID": "99999999-0000-0000-0000-000000000000"}"#),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, fixture("kv_get.json")), // our instance, held by SESSION
        reply(200, fixture("session_renew.json")),
        reply(200, fixture("txn_acquire_committed.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert_eq!(lease.token.get(), 1_086_512);
    let sent = r.sent();
    assert_eq!(sent[3].target, format!("/v1/session/renew/{SESSION}?dc=dc1"));
    assert_eq!(sent[4].json()[0]["KV"]["Session"], SESSION);
    Ok(())
}

/// The key's entry as `GET /v1/kv/<key>` answers it: held by `session` for `instance`.
fn kv_held_by(instance: &str, session: &str) -> String {
    use base64::Engine as _;
    let value = json!({"participant_id": "other", "instance_id": instance, "metadata": {}}).to_string();
    json!([{
        "CreateIndex": 1_086_400, "ModifyIndex": 1_086_400, "LockIndex": 1, "Key": "leader/jobs", "Flags": 0,
        "Value": base64::engine::general_purpose::STANDARD.encode(value), "Session": session,
    }])
    .to_string()
}

/// A follower's session is made at its first attempt and is not renewed while it follows; `lock`
/// does not restart Consul's session timer. So when a later attempt finds the key free, the
/// session must be renewed *before* the lock, or Consul may reap it (deleting the key) one TTL
/// after it was made: early in the new tenure, while its holder still believes it leads. Before
/// the fix the second attempt went straight to the lock transaction.
#[tokio::test]
async fn a_followers_session_is_renewed_before_it_locks() -> leader_core::Result<()> {
    let r = Responder::start(vec![
        // first attempt: someone else holds the key
        reply(200, fixture("session_create.json")),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, kv_held_by("another-instance", "11111111-2222-3333-4444-555555555555")),
        // a later attempt, the key free now: renew the cached session, then lock
        reply(200, fixture("session_renew.json")),
        reply(200, fixture("txn_acquire_committed.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    let Acquire::Held(Some(holder)) = store.try_acquire(&request()).await? else { panic!("expected Held(holder)") };
    assert_eq!(holder.instance_id, "another-instance");
    let Acquire::Acquired(lease) = store.try_acquire(&request()).await? else { panic!("not acquired") };
    assert_eq!(lease.token.get(), 1_086_512);
    let sent = r.sent();
    let targets: Vec<(&str, &str)> = sent.iter().map(|s| (s.method.as_str(), s.target.as_str())).collect();
    let renew = format!("/v1/session/renew/{SESSION}?dc=dc1");
    assert_eq!(
        targets,
        [
            ("PUT", "/v1/session/create?dc=dc1"),
            ("PUT", "/v1/txn?dc=dc1"),
            ("GET", "/v1/kv/leader/jobs?recurse=false&dc=dc1"),
            ("PUT", renew.as_str()),
            ("PUT", "/v1/txn?dc=dc1"),
        ]
    );
    let lock = sent[4].json();
    assert_eq!(lock[0], json!({"KV": {"Verb": "check-not-exists", "Key": "leader/jobs"}}));
    assert_eq!(lock[1]["KV"]["Session"], SESSION, "locks with the session it just renewed");
    Ok(())
}

/// The cached session expired while its instance followed (renew answers 404): a new session is
/// made, and the lock uses that one.
#[tokio::test]
async fn a_followers_expired_session_is_replaced_before_it_locks() -> leader_core::Result<()> {
    let fresh = "22222222-0000-0000-0000-000000000000";
    let r = Responder::start(vec![
        reply(200, fixture("session_create.json")),
        reply(409, fixture("txn_key_exists.json")),
        reply(200, kv_held_by("another-instance", "11111111-2222-3333-4444-555555555555")),
        reply(404, format!("Session id '{SESSION}' not found")),
        reply(200, json!({ "ID": fresh }).to_string()),
        reply(200, fixture("txn_acquire_committed.json")),
    ])
    .await;
    let store = ConsulStore::connect(&r.url)?;
    assert!(matches!(store.try_acquire(&request()).await?, Acquire::Held(Some(_))));
    assert!(matches!(store.try_acquire(&request()).await?, Acquire::Acquired(_)));
    let sent = r.sent();
    let targets: Vec<&str> = sent.iter().map(|s| s.target.as_str()).collect();
    let renew = format!("/v1/session/renew/{SESSION}?dc=dc1");
    assert_eq!(
        targets,
        [
            "/v1/session/create?dc=dc1",
            "/v1/txn?dc=dc1",
            "/v1/kv/leader/jobs?recurse=false&dc=dc1",
            &renew,
            "/v1/session/create?dc=dc1",
            "/v1/txn?dc=dc1",
        ]
    );
    assert_eq!(sent[5].json()[1]["KV"]["Session"], fresh);
    Ok(())
}
