//! Script replies (arrays of strings, see `scripts`) read back into [`Lease`]s.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use leader_core::{Error, FencingToken, Lease, Metadata, Result};

/// What a script answered.
#[derive(Debug)]
pub(crate) enum Reply {
    /// `A`: the caller's lease (acquired, refreshed, renewed, updated, released).
    Ours(Option<Lease>),
    /// `H`: another instance's lease (or, from the read script, whoever holds it).
    Theirs(Lease),
    /// `N`: no lease, or not the caller's.
    Nothing,
    /// `Q`: the server is in its restart quarantine for this many more milliseconds.
    Quarantine(Duration),
}

/// Parses a reply of the scripts for `election`.
pub(crate) fn parse(election: &str, fields: Vec<String>) -> Result<Reply> {
    let bad = |what: &str| Error::backend(format!("unexpected reply from the lease script for {election:?}: {what}"));
    let tag = fields.first().ok_or_else(|| bad("empty array"))?;
    match tag.as_str() {
        "N" => Ok(Reply::Nothing),
        "Q" => {
            let ms: u64 = fields.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| bad("quarantine without length"))?;
            Ok(Reply::Quarantine(Duration::from_millis(ms)))
        }
        "A" if fields.len() == 1 => Ok(Reply::Ours(None)),
        "A" | "H" => {
            let [_, value, pttl, now_us] = fields.as_slice() else {
                return Err(bad(&format!("{} fields, expected 4", fields.len())));
            };
            let lease = lease_of(election, value, pttl, now_us).map_err(|what| bad(&what))?;
            Ok(if tag == "A" { Reply::Ours(Some(lease)) } else { Reply::Theirs(lease) })
        }
        other => Err(bad(&format!("tag {other:?}"))),
    }
}

/// A lease from its stored value (`instance \n token \n participant \n acquired_at_us \n metadata`),
/// its `PTTL` and the server's time, or what is wrong with them.
fn lease_of(election: &str, value: &str, pttl: &str, now_us: &str) -> std::result::Result<Lease, String> {
    let mut parts = value.splitn(5, '\n');
    let mut next = |what: &str| parts.next().ok_or_else(|| format!("lease value {value:?} has no {what}"));
    let (instance, token, participant, acquired, metadata) =
        (next("instance")?, next("token")?, next("participant")?, next("acquired_at")?, next("metadata")?);
    let num = |s: &str, what: &str| s.parse::<u64>().map_err(|_| format!("{what} {s:?} is not a number"));
    let token = num(token, "token")?;
    let acquired_us = num(acquired, "acquired_at")?;
    let now_us = num(now_us, "server time")?;
    let metadata: Metadata =
        serde_json::from_str(metadata).map_err(|e| format!("metadata is not a JSON object: {e}"))?;
    let pttl: i64 = pttl.parse().map_err(|_| format!("PTTL {pttl:?} is not a number"))?;
    // PTTL is -1 only if someone removed the expiry by hand; the lease then has no end.
    let expires_in = u64::try_from(pttl).ok().map(Duration::from_millis);
    Ok(Lease {
        election: election.to_owned(),
        instance_id: instance.to_owned(),
        participant_id: participant.to_owned(),
        token: FencingToken::new(token),
        acquired_at: Some(UNIX_EPOCH + Duration::from_micros(acquired_us)),
        expires_at: expires_in.map(|left| server_time(now_us) + left),
        expires_in,
        metadata,
        handle: Default::default(),
    })
}

fn server_time(us: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_each_tag() {
        let full =
            s(&["H", "inst\n1700000000000001\npart\n1700000000000000\n{\"k\":\"v\"}", "2500", "1700000000000100"]);
        let Reply::Theirs(lease) = parse("e", full).unwrap() else { panic!("not H") };
        assert_eq!(lease.token.get(), 1_700_000_000_000_001);
        assert_eq!(lease.expires_in, Some(Duration::from_millis(2500)));
        assert_eq!(lease.metadata.get("k").map(String::as_str), Some("v"));
        assert!(matches!(parse("e", s(&["N"])).unwrap(), Reply::Nothing));
        assert!(matches!(parse("e", s(&["A"])).unwrap(), Reply::Ours(None)));
        assert!(matches!(parse("e", s(&["Q", "1500"])).unwrap(), Reply::Quarantine(d) if d.as_millis() == 1500));
        assert!(parse("e", s(&["Z"])).is_err());
        assert!(parse("e", s(&["A", "x"])).is_err());
        assert!(parse("e", s(&["A", "inst\n12\npart\n13", "5", "14"])).is_err(), "no metadata");
        assert!(parse("e", s(&["A", "inst\nx\npart\n13\n{}", "5", "14"])).is_err(), "bad token");
        let Reply::Ours(Some(l)) = parse("e", s(&["A", "i\n12\np q\n13\n{}", "-1", "14"])).unwrap() else {
            panic!("not A")
        };
        assert_eq!((l.instance_id.as_str(), l.participant_id.as_str(), l.token.get()), ("i", "p q", 12));
        assert_eq!(l.expires_in, None);
        assert!(parse("e", vec![]).is_err());
    }
}
