//! The bench's floor: one raw Acquire Lease request on the same HTTP client as the store.

use leader_core::{async_trait, validate_election_name, Error, RawFloor, Result};
use reqwest::{Method, StatusCode};

use crate::rest::{Call, Rest};
use crate::store::{lease_id, MIN_LEASE};

/// Issues Acquire Lease alone (proposed id = the instance's lease id, 15 s), as `try_acquire` does
/// once the blob is read and claimed.
pub(crate) struct LeaseFloor {
    pub(crate) rest: Rest,
    pub(crate) blob_prefix: String,
}

#[async_trait]
impl RawFloor for LeaseFloor {
    fn describe(&self) -> String {
        "one Lease Blob request (x-ms-lease-action: acquire, same lease id)".to_owned()
    }

    async fn raw_acquire(&self, election: &str, instance_id: &str) -> Result<()> {
        validate_election_name(election)?;
        let blob = format!("{}{election}", self.blob_prefix);
        let id = lease_id(instance_id);
        for _ in 0..2 {
            let call = Call::new(Method::PUT, Some(&blob))
                .query("comp", "lease")
                .header("x-ms-lease-action", "acquire")
                .header("x-ms-proposed-lease-id", id.clone())
                .header("x-ms-lease-duration", MIN_LEASE.as_secs().to_string());
            let reply = self.rest.send(call).await?;
            match reply.status {
                StatusCode::OK | StatusCode::CREATED => return Ok(()),
                // First use: make the container and an empty blob, then lease it.
                StatusCode::NOT_FOUND => self.create(&blob).await?,
                _ => return Err(reply.error(&format!("raw acquire of the lease of {blob:?}"))),
            }
        }
        Err(Error::backend(format!("blob {blob:?} could not be created for the raw acquire")))
    }
}

impl LeaseFloor {
    async fn create(&self, blob: &str) -> Result<()> {
        let reply = self.rest.send(Call::new(Method::PUT, None).query("restype", "container")).await?;
        if !(reply.status == StatusCode::CREATED || reply.code() == "ContainerAlreadyExists") {
            return Err(reply.error("creating the container"));
        }
        let call =
            Call::new(Method::PUT, Some(blob)).header("x-ms-blob-type", "BlockBlob").header("if-none-match", "*");
        let reply = self.rest.send(call).await?;
        if !(reply.status == StatusCode::CREATED || reply.status == StatusCode::CONFLICT) {
            return Err(reply.error(&format!("creating blob {blob:?}")));
        }
        Ok(())
    }
}
