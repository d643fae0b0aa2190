//! Candidate nodes: their names (`n_<instance_id>_<sequence>`), their data (JSON with participant,
//! instance and metadata) and the [`Lease`] a node stands for.

use std::time::{Duration, SystemTime};

use leader_core::{Error, FencingToken, Lease, LeaseHandle, Metadata, Result};
use serde::{Deserialize, Serialize};
use zookeeper_client::Stat;

/// Every candidate node's name starts with this, then the instance id, then `_` and the sequence
/// number the server appends. The instance id in the name is the GUID protection of the recipe:
/// after a lost create reply, listing the children finds our node instead of creating a second.
const PREFIX: &str = "n_";

/// What a candidate node holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct NodeData {
    pub(crate) participant_id: String,
    pub(crate) instance_id: String,
    #[serde(default)]
    pub(crate) metadata: Metadata,
}

impl NodeData {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Serialising strings and a string map cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// One child of an election node, parsed from its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub(crate) name: String,
    pub(crate) instance_id: String,
    pub(crate) sequence: i64,
}

/// The prefix a new node of `instance_id` is created with (the server appends the sequence).
pub(crate) fn node_prefix(election_path: &str, instance_id: &str) -> String {
    format!("{election_path}/{PREFIX}{instance_id}_")
}

/// Parses the children of an election node into candidates sorted by sequence (lowest, the
/// leader, first). Names not of our format are ignored: another recipe's nodes do not take part.
pub(crate) fn candidates(children: Vec<String>) -> Vec<Candidate> {
    let mut out: Vec<Candidate> = children
        .into_iter()
        .filter_map(|name| {
            let rest = name.strip_prefix(PREFIX)?;
            let (instance, seq) = rest.rsplit_once('_')?;
            if instance.is_empty() || seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            let sequence = seq.parse::<i64>().ok()?;
            Some(Candidate { instance_id: instance.to_owned(), sequence, name })
        })
        .collect();
    out.sort_by_key(|c| c.sequence);
    out
}

/// Instance ids become part of a node name: 1-128 characters of `A-Z a-z 0-9 . _ - :`.
pub(crate) fn validate_instance_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "instance id {id:?} cannot be part of a ZooKeeper node name; it needs 1-128 letters, digits, '.', '_', '-', ':'"
        )))
    }
}

/// What a lease handle of this store holds: which node, created by which session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeHandle {
    pub(crate) path: String,
    pub(crate) session_id: i64,
}

/// The lease a node stands for. `own` adds the handle (our own node, in our session).
pub(crate) fn lease_of(election: &str, path: &str, name: &str, data: &[u8], stat: &Stat, own: Option<i64>) -> Lease {
    let data = serde_json::from_slice::<NodeData>(data).unwrap_or_else(|e| {
        // A node of our name format with foreign data: show what the name says.
        tracing::warn!(node = %path, error = %e, "candidate node data is not ours; using its name");
        let instance_id = candidates(vec![name.to_owned()]).pop().map(|c| c.instance_id).unwrap_or_default();
        NodeData { participant_id: instance_id.clone(), instance_id, metadata: Metadata::new() }
    });
    Lease {
        election: election.to_owned(),
        participant_id: data.participant_id,
        instance_id: data.instance_id,
        token: token_of(stat),
        acquired_at: u64::try_from(stat.ctime).ok().map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        // ZooKeeper cannot say when a session will expire; it pushes the deletion instead.
        expires_at: None,
        expires_in: None,
        metadata: data.metadata,
        handle: match own {
            Some(session_id) => LeaseHandle::new(NodeHandle { path: path.to_owned(), session_id }),
            None => LeaseHandle::default(),
        },
    }
}

/// The fencing token of a node: the zxid of the transaction that created it (`czxid`).
///
/// Sequence numbers are not usable: they count the children changes of the election node and
/// restart at 0 when that node is deleted and created again. A zxid is the ensemble's transaction
/// counter (epoch in the high 32 bits, counter in the low): it never goes backwards for the life
/// of the ensemble's data, across sessions, server restarts and leader elections. Every
/// acquisition is a new node, created after every node that led before it, so its czxid is larger.
pub(crate) fn token_of(stat: &Stat) -> FencingToken {
    FencingToken::new(u64::try_from(stat.czxid).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_sorts_candidates() {
        let c = candidates(vec![
            "n_b-1_0000000012".into(),
            "n_a_x_0000000003".into(),
            "latch-0000000001".into(),
            "n__0000000001".into(),
            "n_c_12a".into(),
            "n_d_0000000000000000123".into(),
        ]);
        let names: Vec<_> = c.iter().map(|c| (c.instance_id.as_str(), c.sequence)).collect();
        assert_eq!(names, vec![("a_x", 3), ("b-1", 12), ("d", 123)]);
    }

    #[test]
    fn instance_ids() {
        validate_instance_id("3f2a7c4e-0b7e-4d0e-9a51-8d6c9f0e2b11").unwrap();
        for bad in ["", "a/b", "a b", &"x".repeat(129)] {
            assert!(validate_instance_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn data_round_trips() {
        let d = NodeData {
            participant_id: "host-1".into(),
            instance_id: "i".into(),
            metadata: [("k".to_owned(), "v".to_owned())].into(),
        };
        assert_eq!(serde_json::from_slice::<NodeData>(&d.encode()).unwrap(), d);
    }
}
