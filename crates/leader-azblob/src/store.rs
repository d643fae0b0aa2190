//! [`AzureBlobStore`]: the [`LeaseStore`] over one blob per election.
//!
//! Acquire, when the blob has no active lease:
//! 1. read the blob: its record (token, holder) and ETag;
//! 2. *claim*: write a record with token + 1 and our instance id, `If-Match` that ETag (or
//!    `If-None-Match: *` when the blob does not exist yet), which gives a new ETag;
//! 3. acquire the lease with our instance id as the proposed lease id, `If-Match` the claim's ETag.
//!
//! Only the claimant can lease the version it wrote, and a claim only succeeds on the version it
//! read, so the holder's token is always the highest written: tokens never repeat. A crash between
//! 2 and 3 leaves an unleased claim, which the next acquirer (us included) overwrites with the
//! next token. A lost answer to 3 is recovered by the retry: the blob is leased and the record is
//! ours, so acquiring again with the same lease id refreshes it and returns the same token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use leader_core::{
    async_trait, validate_election_name, validate_metadata, validate_prefix, Acquire, AcquireRequest, Capabilities,
    ElectionOptions, Error, LeaderInfo, Lease, LeaseHandle, LeaseStore, Metadata, Result,
};
use reqwest::{Method, StatusCode};
use sha2::Digest;

use crate::auth::Credential;
use crate::config::{builder_from_connection_string, builder_from_url, is_connection_string, AzureBlobStoreBuilder};
use crate::listing;
use crate::record::{millis, Record};
use crate::rest::{Call, Reply, Rest};

/// Shortest lease Azure grants.
pub const MIN_LEASE: Duration = Duration::from_secs(15);
/// Longest finite lease Azure grants.
pub const MAX_LEASE: Duration = Duration::from_secs(60);

/// Leader election over Azure Blob Storage leases: one blob per election in one container; the
/// leader is whoever holds the blob's lease. See the crate docs.
pub struct AzureBlobStore {
    pub(crate) rest: Rest,
    prefix: String,
    /// Set once the container is known to exist (or was created).
    container_ready: AtomicBool,
}

impl std::fmt::Debug for AzureBlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureBlobStore")
            .field("container", &self.rest.container)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// What the holder keeps in [`Lease::handle`]: the lease id and the ETag of its last write.
#[derive(Debug, Clone)]
struct Held {
    lease_id: String,
    etag: String,
}

/// An election's blob as read.
struct BlobState {
    etag: String,
    /// `x-ms-lease-status: locked`: a lease is active (leased, or breaking).
    locked: bool,
    record: Option<Record>,
    /// The service's clock when it answered.
    date: Option<SystemTime>,
}

/// The outcome of a conditional write.
enum Write {
    Done(String),
    /// Refused: 409/412 with Azure's error code (the condition failed or the lease is not ours).
    Refused(String),
}

enum Cond<'a> {
    Match(&'a str),
    Absent,
}

impl AzureBlobStore {
    /// Builds a store from parts: endpoint, credential, container, prefix.
    pub fn builder() -> AzureBlobStoreBuilder {
        AzureBlobStoreBuilder::default()
    }

    /// Opens an `azblob://` / `azure://` URL, or an Azure Storage connection string (see the crate
    /// docs). Nothing is sent yet.
    pub fn from_url(url: &str) -> Result<Self> {
        if is_connection_string(url) {
            builder_from_connection_string(url, None)?.build()
        } else {
            builder_from_url(url)?.build()
        }
    }

    /// Opens a connection string, with `container` unless the string has `Container=NAME`.
    pub fn from_connection_string(connection_string: &str, container: &str) -> Result<Self> {
        builder_from_connection_string(connection_string, Some(container))?.build()
    }

    /// Azurite on its default port with the development account (`UseDevelopmentStorage=true`).
    pub fn development_storage(container: &str) -> Result<Self> {
        Self::from_connection_string("UseDevelopmentStorage=true", container)
    }

    pub(crate) fn from_parts(
        endpoint: url::Url,
        container: String,
        prefix: String,
        credential: Credential,
        pool_size: usize,
    ) -> Result<Self> {
        Ok(AzureBlobStore {
            rest: Rest::new(endpoint, container, credential, pool_size)?,
            prefix,
            container_ready: AtomicBool::new(false),
        })
    }

    /// The container holding the elections' blobs.
    pub fn container(&self) -> &str {
        &self.rest.container
    }

    /// Creates the container if it does not exist (store calls do this on first use).
    pub async fn ensure_container(&self) -> Result<()> {
        if self.container_ready.load(Ordering::Relaxed) {
            return Ok(());
        }
        let reply = self.rest.send(Call::new(Method::PUT, None).query("restype", "container")).await?;
        match (reply.status, reply.code()) {
            (StatusCode::CREATED, _) | (StatusCode::CONFLICT, "ContainerAlreadyExists") => {
                self.container_ready.store(true, Ordering::Relaxed);
                Ok(())
            }
            _ => Err(reply.error(&format!("creating container {:?}", self.rest.container))),
        }
    }

    /// One round trip to the blob service: reads a blob under the store's prefix (which need not
    /// exist; nothing is written), and creates the container when it is missing, as the first
    /// store call would. `Ok` when the service is reachable and accepts the credential.
    ///
    /// # Errors
    /// `Unavailable` naming the endpoint and the OS cause when the service cannot be reached;
    /// `Backend` when it refuses the credential (HTTP 403) or answers otherwise unexpectedly.
    pub async fn ping(&self) -> Result<()> {
        let blob = self.blob_name("leader-connect-check");
        let reply = self.rest.send(Call::new(Method::HEAD, Some(&blob))).await?;
        match reply.status {
            StatusCode::OK => Ok(()),
            // A HEAD answer has no body; Azure names the missing container in the header.
            StatusCode::NOT_FOUND if reply.code() == "ContainerNotFound" => self.ensure_container().await,
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(reply.error(&format!("reaching the blob service at {}", self.rest.shown))),
        }
    }

    /// Breaks the lease of `election` from outside (an operator's tool for a holder that is stuck
    /// but keeps renewing): the holder's next renew fails and it steps down; after `break_period`
    /// (0-60 s) anyone can acquire. Returns whether there was a lease to break.
    pub async fn break_lease(&self, election: &str, break_period: Duration) -> Result<bool> {
        validate_election_name(election)?;
        if break_period > MAX_LEASE {
            return Err(Error::invalid_argument(format!(
                "break period {break_period:?} is longer than Azure's 60 s limit"
            )));
        }
        let blob = self.blob_name(election);
        let call = lease_call(&blob, "break").header("x-ms-lease-break-period", break_period.as_secs().to_string());
        let reply = self.rest.send(call).await?;
        match reply.status {
            StatusCode::ACCEPTED => Ok(true),
            StatusCode::CONFLICT | StatusCode::NOT_FOUND => Ok(false),
            _ => Err(reply.error(&format!("breaking the lease of {blob:?}"))),
        }
    }

    pub(crate) fn blob_name(&self, election: &str) -> String {
        format!("{}{election}", self.prefix)
    }

    async fn read(&self, blob: &str) -> Result<Option<BlobState>> {
        let reply = self.rest.send(Call::new(Method::GET, Some(blob))).await?;
        match reply.status {
            StatusCode::OK => Ok(Some(BlobState {
                etag: reply.etag()?,
                locked: reply.header("x-ms-lease-status") == Some("locked"),
                record: Record::from_json(blob, &reply.body)?,
                date: reply.date(),
            })),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.error(&format!("reading blob {blob:?}"))),
        }
    }

    /// Writes `record` as the blob's content under a condition, as the lease holder if `lease_id`.
    async fn write(&self, blob: &str, record: &Record, cond: Cond<'_>, lease_id: Option<&str>) -> Result<Write> {
        let body = record.to_json()?;
        for _ in 0..2 {
            let mut call = Call::new(Method::PUT, Some(blob))
                .header("x-ms-blob-type", "BlockBlob")
                .header("content-type", "application/json")
                .body(body.clone());
            call = match cond {
                Cond::Match(etag) => call.header("if-match", etag),
                Cond::Absent => call.header("if-none-match", "*"),
            };
            if let Some(id) = lease_id {
                call = call.header("x-ms-lease-id", id);
            }
            let reply = self.rest.send(call).await?;
            match reply.status {
                StatusCode::CREATED => return Ok(Write::Done(reply.etag()?)),
                StatusCode::NOT_FOUND if reply.code() == "ContainerNotFound" => {
                    self.container_ready.store(false, Ordering::Relaxed);
                    self.ensure_container().await?;
                }
                StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED => {
                    return Ok(Write::Refused(reply.code().to_owned()))
                }
                _ => return Err(reply.error(&format!("writing blob {blob:?}"))),
            }
        }
        Err(Error::backend(format!("container {:?} vanished while writing {blob:?}", self.rest.container)))
    }

    /// Acquire Lease with `lease_id` as the proposed id, `If-Match` the version we expect.
    async fn acquire_lease(&self, blob: &str, lease_id: &str, secs: u64, etag: &str) -> Result<Reply> {
        let call = lease_call(blob, "acquire")
            .header("x-ms-proposed-lease-id", lease_id)
            .header("x-ms-lease-duration", secs.to_string())
            .header("if-match", etag);
        self.rest.send(call).await
    }

    fn our_lease(&self, election: &str, record: &Record, lease_id: &str, etag: String) -> Lease {
        Lease { handle: LeaseHandle::new(Held { lease_id: lease_id.to_owned(), etag }), ..record.lease(election) }
    }

    /// The blob is free: claim it with the next token and lease exactly that version.
    async fn claim(
        &self,
        req: &AcquireRequest,
        blob: &str,
        lease_id: &str,
        secs: u64,
        found: Option<BlobState>,
    ) -> Result<Option<Acquire>> {
        let (previous, etag, date) = match &found {
            Some(s) => (s.record.as_ref().map_or(0, |r| r.token), Some(s.etag.as_str()), s.date),
            None => (0, None, None),
        };
        let record = Record {
            token: previous + 1,
            instance_id: req.instance_id.clone(),
            participant_id: req.participant_id.clone(),
            acquired_at_ms: millis(date.unwrap_or_else(SystemTime::now)),
            metadata: req.metadata.clone(),
        };
        let cond = etag.map_or(Cond::Absent, Cond::Match);
        let etag = match self.write(blob, &record, cond, None).await? {
            Write::Done(etag) => etag,
            Write::Refused(_) => return self.held_after_race(req, blob).await,
        };
        let reply = self.acquire_lease(blob, lease_id, secs, &etag).await?;
        match reply.status {
            StatusCode::CREATED | StatusCode::OK => {
                Ok(Some(Acquire::Acquired(self.our_lease(&req.election, &record, lease_id, etag))))
            }
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND => {
                self.held_after_race(req, blob).await
            }
            _ => Err(reply.error(&format!("acquiring the lease of {blob:?}"))),
        }
    }

    /// Another acquirer got in between: report it (`None`: look again, the record is ours).
    async fn held_after_race(&self, req: &AcquireRequest, blob: &str) -> Result<Option<Acquire>> {
        let record = self.read(blob).await?.and_then(|s| s.record);
        if record.as_ref().is_some_and(|r| r.instance_id == req.instance_id) {
            return Ok(None);
        }
        Ok(Some(Acquire::Held(record.map(|r| r.lease(&req.election)))))
    }

    /// The blob is leased and its record is ours: refresh the lease (same id), keep the token.
    async fn refresh(
        &self,
        req: &AcquireRequest,
        blob: &str,
        lease_id: &str,
        secs: u64,
        state: BlobState,
        record: Record,
    ) -> Result<Option<Acquire>> {
        let reply = self.acquire_lease(blob, lease_id, secs, &state.etag).await?;
        match (reply.status, reply.code()) {
            (StatusCode::CREATED | StatusCode::OK, _) => {}
            // A lease we did not take (an operator's, say) sits on our record, or it is being
            // broken: not ours, and nobody else can take it either until it is free.
            (StatusCode::CONFLICT, _) => return Ok(Some(Acquire::Held(None))),
            // The blob changed (or vanished) since we read it: read again.
            (StatusCode::PRECONDITION_FAILED | StatusCode::NOT_FOUND, _) => return Ok(None),
            _ => return Err(reply.error(&format!("acquiring the lease of {blob:?}"))),
        }
        let mut etag = state.etag;
        let mut record = record;
        if record.metadata != req.metadata {
            record.metadata = req.metadata.clone();
            match self.write(blob, &record, Cond::Match(&etag), Some(lease_id)).await? {
                Write::Done(e) => etag = e,
                Write::Refused(_) => return Ok(None),
            }
        }
        Ok(Some(Acquire::Acquired(self.our_lease(&req.election, &record, lease_id, etag))))
    }

    /// Runs a lease action (`renew`, `release`) on our lease, `If-Match` the version we last
    /// wrote; if that version moved on, checks that the record is still our tenure and tries once
    /// more with the new version. `Ok(None)`: not ours.
    async fn on_our_lease(&self, lease: &Lease, action: &str) -> Result<Option<Held>> {
        validate_election_name(&lease.election)?;
        let blob = self.blob_name(&lease.election);
        let mut held = match lease.handle.get::<Held>() {
            Some(h) => h.clone(),
            None => Held { lease_id: lease_id(&lease.instance_id), etag: String::new() },
        };
        for _ in 0..2 {
            if held.etag.is_empty() {
                match self.read(&blob).await? {
                    Some(s) if s.locked && s.record.as_ref().is_some_and(|r| same_tenure(r, lease)) => {
                        held.etag = s.etag
                    }
                    _ => return Ok(None),
                }
            }
            let call = lease_call(&blob, action).header("x-ms-lease-id", &held.lease_id).header("if-match", &held.etag);
            let reply = self.rest.send(call).await?;
            match reply.status {
                StatusCode::OK => return Ok(Some(held)),
                StatusCode::PRECONDITION_FAILED => held.etag.clear(),
                StatusCode::CONFLICT | StatusCode::NOT_FOUND => return Ok(None),
                _ => return Err(reply.error(&format!("{action} of the lease of {blob:?}"))),
            }
        }
        Ok(None)
    }
}

fn lease_call<'a>(blob: &'a str, action: &str) -> Call<'a> {
    Call::new(Method::PUT, Some(blob)).query("comp", "lease").header("x-ms-lease-action", action.to_owned())
}

fn same_tenure(record: &Record, lease: &Lease) -> bool {
    record.instance_id == lease.instance_id && record.token == lease.token.get()
}

/// The lease id proposed for an instance: the instance id itself when it is a UUID (as
/// `Election` makes them), else a UUID derived from it, so the same instance always proposes the
/// same id.
pub(crate) fn lease_id(instance_id: &str) -> String {
    match uuid::Uuid::parse_str(instance_id) {
        Ok(u) => u.hyphenated().to_string(),
        Err(_) => {
            let digest = sha2::Sha256::digest(instance_id.as_bytes());
            let mut bytes = [0u8; 16];
            bytes.copy_from_slice(&digest[..16]);
            uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
        }
    }
}

/// Azure's lease duration in whole seconds for `ttl`, refusing what Azure cannot grant.
fn lease_seconds(ttl: Duration) -> Result<u64> {
    if ttl < MIN_LEASE || ttl > MAX_LEASE || ttl.subsec_nanos() != 0 {
        return Err(Error::invalid_argument(format!(
            "lease_duration {} is not possible on Azure Blob Storage: leases last 15 to 60 whole seconds",
            humanize(ttl)
        )));
    }
    Ok(ttl.as_secs())
}

fn humanize(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[async_trait]
impl LeaseStore for AzureBlobStore {
    fn as_any(&self) -> Option<&dyn std::any::Any> {
        Some(self)
    }
    async fn try_acquire(&self, req: &AcquireRequest) -> Result<Acquire> {
        validate_election_name(&req.election)?;
        validate_metadata(&req.metadata)?;
        let secs = lease_seconds(req.ttl)?;
        let blob = self.blob_name(&req.election);
        let lease_id = lease_id(&req.instance_id);
        // Each pass answers unless the blob changed under us between two requests.
        for _ in 0..4 {
            let outcome = match self.read(&blob).await? {
                Some(state) if state.locked => match state.record.clone() {
                    Some(record) if record.instance_id == req.instance_id => {
                        self.refresh(req, &blob, &lease_id, secs, state, record).await?
                    }
                    record => Some(Acquire::Held(record.map(|r| r.lease(&req.election)))),
                },
                found => self.claim(req, &blob, &lease_id, secs, found).await?,
            };
            if let Some(outcome) = outcome {
                return Ok(outcome);
            }
        }
        Err(Error::backend(format!("blob {blob:?} kept changing while acquiring; will try again")))
    }

    async fn renew(&self, lease: &Lease, _ttl: Duration) -> Result<Option<Lease>> {
        // Renew Lease restarts the duration given at acquire (Election always passes the same).
        Ok(self.on_our_lease(lease, "renew").await?.map(|held| Lease {
            handle: LeaseHandle::new(held),
            expires_in: None,
            expires_at: None,
            ..lease.clone()
        }))
    }

    async fn release(&self, lease: &Lease) -> Result<bool> {
        Ok(self.on_our_lease(lease, "release").await?.is_some())
    }

    async fn update_metadata(&self, lease: &Lease, metadata: &Metadata) -> Result<Option<Lease>> {
        validate_election_name(&lease.election)?;
        validate_metadata(metadata)?;
        let blob = self.blob_name(&lease.election);
        let lease_id = lease_id(&lease.instance_id);
        for _ in 0..3 {
            let Some(state) = self.read(&blob).await? else { return Ok(None) };
            let Some(mut record) = state.record.filter(|r| state.locked && same_tenure(r, lease)) else {
                return Ok(None);
            };
            record.metadata = metadata.clone();
            match self.write(&blob, &record, Cond::Match(&state.etag), Some(&lease_id)).await? {
                Write::Done(etag) => return Ok(Some(self.our_lease(&lease.election, &record, &lease_id, etag))),
                // Our own concurrent write moved the version on: read again.
                Write::Refused(code) if code == "ConditionNotMet" => continue,
                Write::Refused(_) => return Ok(None),
            }
        }
        Err(Error::backend(format!("blob {blob:?} kept changing while updating metadata")))
    }

    async fn withdraw(&self, _election: &str, _instance_id: &str) -> Result<()> {
        Ok(()) // no candidate queue
    }

    async fn current(&self, election: &str) -> Result<Option<LeaderInfo>> {
        validate_election_name(election)?;
        let state = self.read(&self.blob_name(election)).await?;
        Ok(state.filter(|s| s.locked).and_then(|s| s.record).map(|r| r.lease(election)))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<LeaderInfo>> {
        validate_prefix(prefix)?;
        let full = self.blob_name(prefix);
        let mut names = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let mut call = Call::new(Method::GET, None).query("restype", "container").query("comp", "list");
            call = call.query("prefix", full.clone());
            if let Some(m) = &marker {
                call = call.query("marker", m.clone());
            }
            let reply = self.rest.send(call).await?;
            match reply.status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => return Ok(Vec::new()),
                _ => return Err(reply.error(&format!("listing container {:?}", self.rest.container))),
            }
            let (page, next) = listing::parse(&String::from_utf8_lossy(&reply.body));
            names.extend(
                page.into_iter()
                    .filter(|b| b.locked)
                    .filter_map(|b| b.name.strip_prefix(&self.prefix).map(str::to_owned))
                    .filter(|n| validate_election_name(n).is_ok()),
            );
            match next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        // Listing shows lease status but not content: read each leased blob (a few at a time).
        let mut found: Vec<LeaderInfo> = futures::stream::iter(names)
            .map(|name| async move { self.current(&name).await })
            .buffer_unordered(8)
            .try_filter_map(|x| async move { Ok(x) })
            .try_collect()
            .await?;
        found.sort_by(|a, b| a.election.cmp(&b.election));
        Ok(found)
    }

    fn watch(&self, _election: &str, _instance_id: Option<&str>) -> Option<BoxStream<'static, ()>> {
        None // Azure has no push channel: followers poll at retry_interval.
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            push_notifications: false,
            pushes_expiry: false,
            server_side_expiry: true,
            durable_tokens: true,
            cross_host: true,
            survives_store_failover: true,
            lists_elections: true,
            reap_multiplier: 1,
        }
    }

    fn check_options(&self, options: &ElectionOptions) -> Result<()> {
        lease_seconds(options.lease_duration).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    //! Failures between the steps of an acquire, made by hand against the test server.
    use super::*;

    fn store() -> Option<AzureBlobStore> {
        let url = std::env::var("LEADER_TEST_AZBLOB_URL").ok().filter(|u| !u.is_empty());
        let required = std::env::var("LEADER_TEST_REQUIRE").unwrap_or_default();
        assert!(
            url.is_some() || !required.split(',').any(|p| p.trim() == "azblob"),
            "LEADER_TEST_AZBLOB_URL is not set but LEADER_TEST_REQUIRE names azblob"
        );
        url.map(|u| AzureBlobStore::from_url(&u).expect("a valid LEADER_TEST_AZBLOB_URL"))
    }

    fn request(election: &str) -> AcquireRequest {
        AcquireRequest {
            election: election.to_owned(),
            participant_id: "p".to_owned(),
            instance_id: uuid::Uuid::new_v4().to_string(),
            ttl: MIN_LEASE,
            metadata: Metadata::new(),
        }
    }

    fn token(a: Acquire) -> u64 {
        match a {
            Acquire::Acquired(l) => l.token.get(),
            other => panic!("expected Acquired, got {other:?}"),
        }
    }

    /// Makes the claim of `req` with token `token` over the current version, as step 2 does.
    async fn claim_by_hand(store: &AzureBlobStore, req: &AcquireRequest, token: u64) -> String {
        let blob = store.blob_name(&req.election);
        let state = store.read(&blob).await.unwrap().expect("the blob exists");
        let record = Record {
            token,
            instance_id: req.instance_id.clone(),
            participant_id: req.participant_id.clone(),
            acquired_at_ms: None,
            metadata: Metadata::new(),
        };
        match store.write(&blob, &record, Cond::Match(&state.etag), None).await.unwrap() {
            Write::Done(etag) => etag,
            Write::Refused(code) => panic!("claim refused: {code}"),
        }
    }

    #[tokio::test]
    async fn a_claim_without_a_lease_is_overwritten_with_the_next_token() {
        let Some(store) = store() else { return };
        let election = format!("claim-crash-{:08x}", fastrand::u32(..));
        let a = request(&election);
        let first = store.try_acquire(&a).await.unwrap();
        let Acquire::Acquired(lease) = first else { panic!("expected Acquired") };
        assert!(store.release(&lease).await.unwrap());
        // A dies after its claim (token 2) and before leasing it.
        let b = request(&election);
        claim_by_hand(&store, &b, 2).await;
        assert!(store.current(&election).await.unwrap().is_none(), "an unleased claim is nobody's lease");
        // Its own retry, or anyone else, takes the next token: 2 was never reported, never reused.
        assert_eq!(token(store.try_acquire(&b).await.unwrap()), 3);
    }

    #[tokio::test]
    async fn a_lease_whose_answer_was_lost_is_recovered_with_its_token() {
        let Some(store) = store() else { return };
        let election = format!("lost-answer-{:08x}", fastrand::u32(..));
        let a = request(&election);
        let Acquire::Acquired(lease) = store.try_acquire(&a).await.unwrap() else { panic!("expected Acquired") };
        assert!(store.release(&lease).await.unwrap());
        // B claims token 2 and its Acquire Lease is applied, but the answer never arrives.
        let b = request(&election);
        let etag = claim_by_hand(&store, &b, 2).await;
        let reply =
            store.acquire_lease(&store.blob_name(&election), &lease_id(&b.instance_id), 15, &etag).await.unwrap();
        assert_eq!(reply.status, StatusCode::CREATED);
        // Others see B as the holder; B's retry gets its tenure back, same token.
        match store.try_acquire(&a).await.unwrap() {
            Acquire::Held(Some(h)) => assert_eq!((h.instance_id.as_str(), h.token.get()), (b.instance_id.as_str(), 2)),
            other => panic!("expected Held(B), got {other:?}"),
        }
        assert_eq!(token(store.try_acquire(&b).await.unwrap()), 2);
    }

    #[tokio::test]
    async fn racing_claims_lease_only_the_last_version() {
        let Some(store) = store() else { return };
        let election = format!("race-{:08x}", fastrand::u32(..));
        let a = request(&election);
        let Acquire::Acquired(lease) = store.try_acquire(&a).await.unwrap() else { panic!("expected Acquired") };
        assert!(store.release(&lease).await.unwrap());
        // B claims, then C overwrites B's claim before B leases: B's lease (If-Match its claim) fails.
        let (b, c) = (request(&election), request(&election));
        let b_etag = claim_by_hand(&store, &b, 2).await;
        claim_by_hand(&store, &c, 3).await;
        let blob = store.blob_name(&election);
        let reply = store.acquire_lease(&blob, &lease_id(&b.instance_id), 15, &b_etag).await.unwrap();
        assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
        assert!(store.current(&election).await.unwrap().is_none());
    }

    #[test]
    fn lease_ids_are_stable_uuids() {
        let u = uuid::Uuid::new_v4().to_string();
        assert_eq!(lease_id(&u), u);
        let derived = lease_id("not-a-uuid");
        assert_eq!(derived, lease_id("not-a-uuid"));
        assert!(uuid::Uuid::parse_str(&derived).is_ok());
        assert_ne!(derived, lease_id("another"));
    }

    #[test]
    fn lease_seconds_follow_azure_limits() {
        assert_eq!(lease_seconds(Duration::from_secs(15)).unwrap(), 15);
        assert_eq!(lease_seconds(Duration::from_secs(60)).unwrap(), 60);
        for bad in [Duration::from_secs(14), Duration::from_secs(61), Duration::from_millis(20_500)] {
            assert!(lease_seconds(bad).is_err(), "{bad:?}");
        }
    }
}
