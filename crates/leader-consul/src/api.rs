//! Consul's HTTP API as this crate speaks it: request bodies (session create, `/v1/txn`) and
//! response decoding (txn results and errors, KV entries, session renew), with no I/O, so that
//! every shape is unit-tested against the documented examples.
//!
//! References: <https://developer.hashicorp.com/consul/api-docs/session>,
//! <https://developer.hashicorp.com/consul/api-docs/txn>,
//! <https://developer.hashicorp.com/consul/api-docs/kv>.

use std::time::Duration;

use base64::Engine as _;
use leader_core::{Error, FencingToken, Lease, LeaseHandle, Metadata, Result};
use serde::{Deserialize, Serialize};

/// `PUT /v1/session/create` body.
///
/// `Checks` and `NodeChecks` are sent empty on purpose: the agent otherwise fills in `serfHealth`,
/// tying the session to the node's gossip health, and the lease would then end when the *node*
/// looks unhealthy rather than when its holder stops renewing. (rs-consul's own session request
/// drops empty lists, which is why this body is ours.)
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SessionCreate {
    /// Human-readable: `leader:<election>:<participant>`.
    pub name: String,
    /// Always `"delete"`: an invalidated session deletes the keys it holds, so an expired lease
    /// vanishes (and followers' blocking queries fire) instead of lingering unlocked.
    pub behavior: &'static str,
    /// The lease, as a Go duration string (`"15s"`, `"12500ms"`).
    #[serde(rename = "TTL")]
    pub ttl: String,
    /// Default `"0s"` for elections (Consul's own default is 15 s).
    pub lock_delay: String,
    /// Always empty, see the type's docs.
    pub checks: Vec<String>,
    /// Always empty, see the type's docs.
    pub node_checks: Vec<String>,
}

impl SessionCreate {
    /// The body for a session of `ttl` with `lock_delay`.
    pub fn new(name: String, ttl: Duration, lock_delay: Duration) -> Self {
        SessionCreate {
            name,
            behavior: "delete",
            ttl: go_duration(ttl),
            lock_delay: go_duration(lock_delay),
            checks: Vec::new(),
            node_checks: Vec::new(),
        }
    }
}

/// A duration as Go's `time.ParseDuration` reads it: whole seconds as `"15s"`, else milliseconds.
pub fn go_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// `{"ID": "..."}`, the answer to session create.
#[derive(Debug, Deserialize)]
struct SessionCreated {
    #[serde(rename = "ID")]
    id: String,
}

/// Reads the session id from a session-create answer.
pub fn decode_session_created(body: &[u8]) -> Result<String> {
    let created: SessionCreated = serde_json::from_slice(body).map_err(|e| decode_error("session create", e))?;
    if created.id.is_empty() {
        return Err(Error::backend("Consul answered session create without an ID"));
    }
    Ok(created.id)
}

/// `PUT /v1/session/renew/<id>` answers 200 with a one-element list, or 404 when the session is
/// gone (expired or destroyed). Returns whether it is alive, and the TTL Consul now uses (it may
/// raise it under load).
pub fn decode_session_renewed(status: u16, body: &[u8]) -> Result<Option<String>> {
    #[derive(Deserialize)]
    struct Session {
        #[serde(rename = "TTL", default)]
        ttl: String,
    }
    match status {
        200 => {
            let sessions: Vec<Session> = serde_json::from_slice(body).map_err(|e| decode_error("session renew", e))?;
            Ok(sessions.into_iter().next().map(|s| s.ttl))
        }
        404 => Ok(None),
        other => Err(status_error("session renew", other, body)),
    }
}

/// One `KV` operation of a `/v1/txn` request.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KvOp {
    /// `check-not-exists`, `lock`, `get`, `check-session`, `delete`, `delete-cas`.
    pub verb: &'static str,
    /// The full key.
    pub key: String,
    /// Base64 of the value (lock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Modify index (delete-cas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Session (lock, check-session).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
}

/// One element of a `/v1/txn` body: `{"KV": {...}}`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TxnOp {
    /// The KV operation.
    #[serde(rename = "KV")]
    pub kv: KvOp,
}

/// A KV operation with only a verb and a key (`get`, `check-not-exists`, `delete`).
pub fn op(verb: &'static str, key: &str) -> TxnOp {
    TxnOp { kv: KvOp { verb, key: key.to_owned(), value: None, index: None, session: None } }
}

/// `lock`: create or update `key` with `value`, locked by `session` (fails if another session
/// holds it, or `session` is not alive).
pub fn lock(key: &str, value: &[u8], session: &str) -> TxnOp {
    let mut op = op("lock", key);
    op.kv.value = Some(base64::engine::general_purpose::STANDARD.encode(value));
    op.kv.session = Some(session.to_owned());
    op
}

/// `check-session`: fail unless `session` holds `key`.
pub fn check_session(key: &str, session: &str) -> TxnOp {
    let mut op = op("check-session", key);
    op.kv.session = Some(session.to_owned());
    op
}

/// `check-index`: fail unless `key`'s `ModifyIndex` is `modify_index`.
pub fn check_index(key: &str, modify_index: u64) -> TxnOp {
    let mut op = op("check-index", key);
    op.kv.index = Some(modify_index);
    op
}

/// `delete-cas`: delete `key` if its `ModifyIndex` is `modify_index`.
pub fn delete_cas(key: &str, modify_index: u64) -> TxnOp {
    let mut op = op("delete-cas", key);
    op.kv.index = Some(modify_index);
    op
}

/// Acquire of a free election: fails (409, op 0) if the key exists; else creates it locked by
/// `session` and reads it back, so its `CreateIndex` (the fencing token) comes in the same answer.
pub fn txn_acquire(key: &str, value: &[u8], session: &str) -> Vec<TxnOp> {
    vec![op("check-not-exists", key), lock(key, value, session), op("get", key)]
}

/// Takes over a key that exists without a lock holder (left by a writer other than this crate):
/// deletes it if unchanged since we read it, then creates it afresh, so the new `CreateIndex` is
/// again greater than every earlier one.
pub fn txn_replace_unlocked(key: &str, modify_index: u64, value: &[u8], session: &str) -> Vec<TxnOp> {
    vec![delete_cas(key, modify_index), lock(key, value, session), op("get", key)]
}

/// Renew's ownership check: `session` still holds `key`; read it back (its `CreateIndex` must
/// still be the lease's token).
pub fn txn_check(key: &str, session: &str) -> Vec<TxnOp> {
    vec![check_session(key, session), op("get", key)]
}

/// Refresh or metadata update of our own tenure: `session` holds `key` and nothing changed it
/// since we read it at `modify_index` (same tenure); write the new value (same session: the lock
/// index does not move) and read it back.
pub fn txn_update_value(key: &str, session: &str, modify_index: u64, value: &[u8]) -> Vec<TxnOp> {
    vec![check_session(key, session), check_index(key, modify_index), lock(key, value, session), op("get", key)]
}

/// Release: delete the key only if `session` holds it and it is the tenure we read (`ModifyIndex`).
pub fn txn_release(key: &str, session: &str, modify_index: u64) -> Vec<TxnOp> {
    vec![check_session(key, session), delete_cas(key, modify_index)]
}

/// `leader-bench`'s floor: lock (free, or already ours) and read back, nothing else.
pub fn txn_floor(key: &str, value: &[u8], session: &str) -> Vec<TxnOp> {
    vec![lock(key, value, session), op("get", key)]
}

/// A KV entry as `/v1/kv/<key>` and txn `get` return it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct KvEntry {
    /// Full key.
    pub key: String,
    /// Raft index of the key's creation: the fencing token.
    pub create_index: u64,
    /// Raft index of its last change.
    pub modify_index: u64,
    /// How often it was locked.
    #[serde(default)]
    pub lock_index: u64,
    /// Base64 value, or null.
    #[serde(default)]
    pub value: Option<String>,
    /// The session holding the lock, if any.
    #[serde(default)]
    pub session: Option<String>,
}

/// `{"Results": [...], "Errors": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TxnResponse {
    #[serde(default)]
    results: Option<Vec<TxnResult>>,
    #[serde(default)]
    errors: Option<Vec<TxnError>>,
}

#[derive(Debug, Deserialize)]
struct TxnResult {
    #[serde(rename = "KV", default)]
    kv: Option<KvEntry>,
}

/// One failed operation of a rolled-back transaction.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct TxnError {
    /// Which operation (0-based).
    pub op_index: usize,
    /// Consul's message.
    pub what: String,
}

/// What a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnOutcome {
    /// 200: applied; the KV results in order (deletes have none).
    Committed(Vec<KvEntry>),
    /// 409: rolled back; which operations failed.
    RolledBack(Vec<TxnError>),
}

impl TxnOutcome {
    /// The last KV result of a committed transaction (the trailing `get`).
    pub fn entry(&self) -> Option<&KvEntry> {
        match self {
            TxnOutcome::Committed(entries) => entries.last(),
            TxnOutcome::RolledBack(_) => None,
        }
    }

    /// Whether operation `op` is among the failed ones.
    pub fn failed_at(&self, op: usize) -> bool {
        matches!(self, TxnOutcome::RolledBack(errors) if errors.iter().any(|e| e.op_index == op))
    }
}

/// Decodes a `/v1/txn` answer: 200 committed, 409 rolled back, anything else an error.
pub fn decode_txn(status: u16, body: &[u8]) -> Result<TxnOutcome> {
    if status != 200 && status != 409 {
        return Err(status_error("txn", status, body));
    }
    let resp: TxnResponse = serde_json::from_slice(body).map_err(|e| decode_error("txn", e))?;
    if status == 200 {
        Ok(TxnOutcome::Committed(resp.results.unwrap_or_default().into_iter().filter_map(|r| r.kv).collect()))
    } else {
        let errors = resp.errors.unwrap_or_default();
        if errors.is_empty() {
            return Err(Error::backend("Consul rolled back a transaction without saying why"));
        }
        Ok(TxnOutcome::RolledBack(errors))
    }
}

/// Decodes `GET /v1/kv/<key>`: 200 with a list, 404 when absent.
pub fn decode_kv_get(status: u16, body: &[u8]) -> Result<Vec<KvEntry>> {
    match status {
        200 => serde_json::from_slice(body).map_err(|e| decode_error("KV read", e)),
        404 => Ok(Vec::new()),
        other => Err(status_error("KV read", other, body)),
    }
}

/// What this crate stores in an election's key (JSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseValue {
    /// The holder as the user named it.
    pub participant_id: String,
    /// The holder's `Election` object.
    pub instance_id: String,
    /// What the holder published.
    #[serde(default)]
    pub metadata: Metadata,
}

impl LeaseValue {
    /// The JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|e| Error::invalid_argument("lease value cannot be encoded").with_source(e))
    }
}

/// The provider-private part of a lease: the session that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionHandle {
    /// Consul session id.
    pub session: String,
}

/// Reads an entry as the lease of `election`. `None` when no session holds the key (nobody leads).
/// `ours`: put the session in the lease's handle (only for the caller's own lease).
pub fn entry_to_lease(election: &str, entry: &KvEntry, ours: bool) -> Result<Option<Lease>> {
    let Some(session) = entry.session.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
    let raw = match &entry.value {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| Error::backend(format!("Consul key {:?} holds invalid base64", entry.key)).with_source(e))?,
        None => Vec::new(),
    };
    decode_value(election, entry, session, &raw, ours).map(Some)
}

/// Like [`entry_to_lease`] for a value rs-consul already decoded from base64.
pub fn decoded_entry_to_lease(
    election: &str,
    entry: &KvEntry,
    decoded_value: Option<&str>,
    ours: bool,
) -> Result<Option<Lease>> {
    let Some(session) = entry.session.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
    decode_value(election, entry, session, decoded_value.unwrap_or("").as_bytes(), ours).map(Some)
}

fn decode_value(election: &str, entry: &KvEntry, session: &str, raw: &[u8], ours: bool) -> Result<Lease> {
    let value: LeaseValue = serde_json::from_slice(raw).map_err(|e| {
        Error::backend(format!("Consul key {:?} does not hold a leader lease value", entry.key)).with_source(e)
    })?;
    Ok(Lease {
        election: election.to_owned(),
        participant_id: value.participant_id,
        instance_id: value.instance_id,
        token: FencingToken::new(entry.create_index),
        // Consul keeps no wall-clock time for keys, and cannot say when a session will expire.
        acquired_at: None,
        expires_at: None,
        expires_in: None,
        metadata: value.metadata,
        handle: if ours {
            LeaseHandle::new(SessionHandle { session: session.to_owned() })
        } else {
            LeaseHandle::default()
        },
    })
}

fn decode_error(what: &str, e: serde_json::Error) -> Error {
    Error::backend(format!("Consul's {what} answer cannot be decoded")).with_source(e)
}

/// An unexpected HTTP status, with Consul's message (its bodies are short plain text).
pub fn status_error(what: &str, status: u16, body: &[u8]) -> Error {
    let text = String::from_utf8_lossy(&body[..body.len().min(512)]).trim().to_owned();
    let message = format!("Consul answered {what} with HTTP {status}: {text}");
    match status {
        400 | 413 => Error::invalid_argument(message),
        // 403: ACL denied; 5xx: no leader, overloaded. All may clear up; the driver retries.
        _ => Error::backend(message),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const SESSION: &str = "adf4238a-882b-9ddc-4a9d-5b6758e4159e";

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn session_create_body_has_the_documented_fields_and_no_health_checks() {
        let body = SessionCreate::new("leader:jobs:web-1".into(), Duration::from_secs(15), Duration::ZERO);
        assert_eq!(
            serde_json::to_value(&body).expect("encodes"),
            json!({
                "Name": "leader:jobs:web-1",
                "Behavior": "delete",
                "TTL": "15s",
                "LockDelay": "0s",
                "Checks": [],
                "NodeChecks": []
            })
        );
        let odd = SessionCreate::new("n".into(), Duration::from_millis(12_500), Duration::from_millis(1500));
        let v = serde_json::to_value(&odd).expect("encodes");
        assert_eq!((v["TTL"].as_str(), v["LockDelay"].as_str()), (Some("12500ms"), Some("1500ms")));
    }

    #[test]
    fn acquire_txn_is_check_not_exists_lock_get() {
        let ops = txn_acquire("leader/jobs", br#"{"participant_id":"a"}"#, SESSION);
        assert_eq!(
            serde_json::to_value(&ops).expect("encodes"),
            json!([
                { "KV": { "Verb": "check-not-exists", "Key": "leader/jobs" } },
                { "KV": { "Verb": "lock", "Key": "leader/jobs", "Value": b64(r#"{"participant_id":"a"}"#), "Session": SESSION } },
                { "KV": { "Verb": "get", "Key": "leader/jobs" } }
            ])
        );
    }

    #[test]
    fn release_renew_update_and_replace_txns() {
        assert_eq!(
            serde_json::to_value(txn_release("leader/jobs", SESSION, 42)).expect("encodes"),
            json!([
                { "KV": { "Verb": "check-session", "Key": "leader/jobs", "Session": SESSION } },
                { "KV": { "Verb": "delete-cas", "Key": "leader/jobs", "Index": 42 } }
            ])
        );
        assert_eq!(
            serde_json::to_value(txn_check("leader/jobs", SESSION)).expect("encodes"),
            json!([
                { "KV": { "Verb": "check-session", "Key": "leader/jobs", "Session": SESSION } },
                { "KV": { "Verb": "get", "Key": "leader/jobs" } }
            ])
        );
        assert_eq!(
            serde_json::to_value(txn_update_value("leader/jobs", SESSION, 7, b"v")).expect("encodes"),
            json!([
                { "KV": { "Verb": "check-session", "Key": "leader/jobs", "Session": SESSION } },
                { "KV": { "Verb": "check-index", "Key": "leader/jobs", "Index": 7 } },
                { "KV": { "Verb": "lock", "Key": "leader/jobs", "Value": b64("v"), "Session": SESSION } },
                { "KV": { "Verb": "get", "Key": "leader/jobs" } }
            ])
        );
        assert_eq!(
            serde_json::to_value(txn_replace_unlocked("leader/jobs", 200, b"v", SESSION)).expect("encodes"),
            json!([
                { "KV": { "Verb": "delete-cas", "Key": "leader/jobs", "Index": 200 } },
                { "KV": { "Verb": "lock", "Key": "leader/jobs", "Value": b64("v"), "Session": SESSION } },
                { "KV": { "Verb": "get", "Key": "leader/jobs" } }
            ])
        );
        // Every verb we send is one of the documented KV verbs.
        let documented = [
            "set",
            "cas",
            "lock",
            "unlock",
            "get",
            "get-or-empty",
            "get-tree",
            "check-index",
            "check-session",
            "check-not-exists",
            "delete",
            "delete-tree",
            "delete-cas",
        ];
        for ops in [txn_acquire("k", b"", "s"), txn_floor("k", b"", "s"), txn_release("k", "s", 1)] {
            assert!(ops.iter().all(|o| documented.contains(&o.kv.verb)));
        }
    }

    #[test]
    fn session_answers_decode() -> Result<()> {
        assert_eq!(decode_session_created(&fixture("session_create.json"))?, SESSION);
        assert!(decode_session_created(br#"{"ID":""}"#).is_err());
        assert!(decode_session_created(b"<html>").is_err());
        assert_eq!(decode_session_renewed(200, &fixture("session_renew.json"))?.as_deref(), Some("30s"));
        // Renewing a session Consul no longer knows: 404 with a text body.
        assert_eq!(decode_session_renewed(404, b"Session id 'x' not found")?, None);
        let err = decode_session_renewed(500, b"No cluster leader").unwrap_err();
        assert!(err.is_transient() && err.to_string().contains("No cluster leader"), "{err}");
        Ok(())
    }

    #[test]
    fn committed_acquire_gives_the_token_from_create_index() -> Result<()> {
        let outcome = decode_txn(200, &fixture("txn_acquire_committed.json"))?;
        let entry = outcome.entry().expect("a get result");
        let lease = entry_to_lease("jobs", entry, true)?.expect("locked");
        assert_eq!(lease.token.get(), 1_086_512);
        assert_eq!(lease.participant_id, "web-1");
        assert_eq!(lease.instance_id, "0b6f2c1e-7d4a-4c59-9a57-2f5c4a8e1b3d");
        assert_eq!(lease.metadata.get("addr").map(String::as_str), Some("10.0.0.7:8080"));
        assert_eq!(lease.handle.get::<SessionHandle>().map(|h| h.session.as_str()), Some(SESSION));
        assert_eq!((lease.acquired_at, lease.expires_at, lease.expires_in), (None, None, None));
        // Someone else's lease carries no handle.
        assert!(entry_to_lease("jobs", entry, false)?.expect("locked").handle.is_empty());
        Ok(())
    }

    #[test]
    fn rolled_back_txns_say_which_op_failed() -> Result<()> {
        let exists = decode_txn(409, &fixture("txn_key_exists.json"))?;
        assert!(exists.failed_at(0) && !exists.failed_at(1));
        assert_eq!(exists.entry(), None);
        let delay = decode_txn(409, &fixture("txn_lock_delay.json"))?;
        assert!(!delay.failed_at(0) && delay.failed_at(1));
        assert!(decode_txn(409, &fixture("txn_check_session_failed.json"))?.failed_at(0));
        assert!(decode_txn(409, br#"{"Results":null,"Errors":[]}"#).is_err());
        let denied = decode_txn(403, b"Permission denied").unwrap_err();
        assert!(denied.to_string().contains("403"), "{denied}");
        assert_eq!(decode_txn(400, b"Missing session").unwrap_err().kind(), leader_core::ErrorKind::InvalidArgument);
        Ok(())
    }

    #[test]
    fn kv_reads_decode() -> Result<()> {
        let entries = decode_kv_get(200, &fixture("kv_get.json"))?;
        assert_eq!(entries.len(), 1);
        assert_eq!(
            (entries[0].create_index, entries[0].modify_index, entries[0].lock_index),
            (1_086_512, 1_086_530, 1)
        );
        let lease = entry_to_lease("jobs", &entries[0], false)?.expect("locked");
        assert_eq!(lease.token.get(), 1_086_512);
        assert!(decode_kv_get(404, b"")?.is_empty());
        // A key nobody holds is no lease, whatever it contains.
        let unlocked = decode_kv_get(200, &fixture("kv_get_unlocked.json"))?;
        assert_eq!(unlocked[0].session, None);
        assert!(entry_to_lease("jobs", &unlocked[0], false)?.is_none());
        // A locked key that is not ours to read is an error, not a panic.
        let mut foreign = unlocked[0].clone();
        foreign.session = Some(SESSION.into());
        assert!(entry_to_lease("jobs", &foreign, false).is_err());
        foreign.value = Some("***not base64***".into());
        assert!(entry_to_lease("jobs", &foreign, false).is_err());
        Ok(())
    }

    #[test]
    fn lease_value_round_trips() -> Result<()> {
        let value = LeaseValue {
            participant_id: "p".into(),
            instance_id: "i".into(),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        let bytes = value.encode()?;
        assert_eq!(serde_json::from_slice::<LeaseValue>(&bytes).expect("decodes"), value);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"),
            json!({"participant_id": "p", "instance_id": "i", "metadata": {"k": "v"}})
        );
        Ok(())
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_secs(10)), "10s");
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(10_250)), "10250ms");
    }
}
