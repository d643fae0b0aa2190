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
    /// `Q`: nobody is elected for `left` more.
    Wait {
        /// How long until the script elects again.
        left: Duration,
        /// Why.
        why: WaitReason,
    },
    /// `P`: the server's `maxmemory-policy` (an `allkeys-*` one) may have evicted the election's record.
    Policy(String),
    /// `L`: the command reached the server after its deadline and changed nothing.
    Late,
}

/// Why the acquire script elects nobody for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitReason {
    /// The server (a primary since its start) started less than the wait ago; its data may miss
    /// leases granted before.
    Start,
    /// The server was promoted from replica less than the wait ago.
    Promotion,
    /// The lease key is gone before the lease's end: evicted or deleted by hand.
    Gone,
}

/// A reply and the server time it carries (µs), when it carries one.
pub(crate) struct Parsed {
    pub(crate) reply: Reply,
    pub(crate) server_us: Option<u64>,
}

/// Parses a reply of the scripts for `election`.
pub(crate) fn parse(election: &str, fields: Vec<String>) -> Result<Reply> {
    parse_timed(election, fields).map(|p| p.reply)
}

/// Parses a reply of the scripts for `election`, with the server time in it.
pub(crate) fn parse_timed(election: &str, fields: Vec<String>) -> Result<Parsed> {
    let bad = |what: &str| Error::backend(format!("unexpected reply from the lease script for {election:?}: {what}"));
    let tag = fields.first().ok_or_else(|| bad("empty array"))?;
    let num = |i: usize, what: &str| -> Result<u64> {
        fields.get(i).and_then(|s| s.parse().ok()).ok_or_else(|| bad(&format!("{tag} reply without {what}")))
    };
    let parsed = match tag.as_str() {
        "N" => Parsed { reply: Reply::Nothing, server_us: fields.get(1).and_then(|s| s.parse().ok()) },
        "L" => Parsed { reply: Reply::Late, server_us: Some(num(1, "server time")?) },
        "P" => Parsed {
            reply: Reply::Policy(fields.get(2).cloned().unwrap_or_default()),
            server_us: Some(num(1, "server time")?),
        },
        "Q" => {
            let left = Duration::from_millis(num(2, "length")?);
            num(4, "instant")?;
            let why = match fields.get(3).map(String::as_str) {
                Some("start") => WaitReason::Start,
                Some("promotion") => WaitReason::Promotion,
                Some("gone") => WaitReason::Gone,
                other => return Err(bad(&format!("wait reason {other:?}"))),
            };
            Parsed { reply: Reply::Wait { left, why }, server_us: Some(num(1, "server time")?) }
        }
        "A" if fields.len() == 1 => Parsed { reply: Reply::Ours(None), server_us: None },
        "A" | "H" => {
            let [_, value, pttl, now_us] = fields.as_slice() else {
                return Err(bad(&format!("{} fields, expected 4", fields.len())));
            };
            let lease = lease_of(election, value, pttl, now_us).map_err(|what| bad(&what))?;
            let server_us = now_us.parse().ok();
            let reply = if tag == "A" { Reply::Ours(Some(lease)) } else { Reply::Theirs(lease) };
            Parsed { reply, server_us }
        }
        other => return Err(bad(&format!("tag {other:?}"))),
    };
    Ok(parsed)
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
        let Reply::Wait { left, why } = parse("e", s(&["Q", "17", "1500", "start", "12"])).unwrap() else {
            panic!("not Q")
        };
        assert_eq!((left, why), (Duration::from_millis(1500), WaitReason::Start));
        assert!(matches!(
            parse("e", s(&["Q", "17", "5", "gone", "20"])).unwrap(),
            Reply::Wait { why: WaitReason::Gone, .. }
        ));
        assert!(matches!(
            parse("e", s(&["Q", "17", "5", "promotion", "3"])).unwrap(),
            Reply::Wait { why: WaitReason::Promotion, .. }
        ));
        assert!(parse("e", s(&["Q", "17", "5", "why-not", "3"])).is_err());
        assert!(parse("e", s(&["Q", "1500"])).is_err());
        let late = parse_timed("e", s(&["L", "99"])).unwrap();
        assert!(matches!(late.reply, Reply::Late) && late.server_us == Some(99));
        assert!(matches!(parse("e", s(&["P", "1", "allkeys-lru"])).unwrap(), Reply::Policy(p) if p == "allkeys-lru"));
        assert_eq!(parse_timed("e", s(&["N", "42"])).unwrap().server_us, Some(42));
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
