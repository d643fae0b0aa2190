//! Against the Consul agent at `LEADER_TEST_CONSUL_URL` (skipped without it, unless
//! `LEADER_TEST_REQUIRE` names `consul`): a follower's session, made at its first attempt and idle
//! while it followed, is fresh when the follower starts to lead.
//!
//! Consul restarts a session's timer on create and renew only, not on `lock`, and invalidates a
//! session twice its TTL after the last of them (it promises only "not before the TTL"). A
//! follower whose session was made at T0 and that acquires at T0 + 1.5 TTL used to lock with that
//! session as it was: Consul invalidated it at T0 + 2 TTL, half a lease into the new tenure, and
//! deleted the key (`Behavior: delete`) while its holder still believed it led. The acquire now
//! renews the session first, so the key lives at least one TTL past the acquire.

use std::time::Duration;

use leader_consul::{ConsulStore, MIN_TTL};
use leader_core::{Acquire, AcquireRequest, LeaseStore, Metadata};
use tokio::time::Instant;

fn request(election: &str, who: &str) -> AcquireRequest {
    AcquireRequest {
        election: election.to_owned(),
        participant_id: who.to_owned(),
        instance_id: format!("{who}-{:016x}", fastrand::u64(..)),
        ttl: MIN_TTL,
        metadata: Metadata::new(),
    }
}

#[tokio::test]
async fn a_followers_session_is_fresh_when_it_starts_to_lead() {
    let Some(url) = leader_testkit::provider_url("consul") else { return };
    let (a, b) = (ConsulStore::connect(&url).expect("URL"), ConsulStore::connect(&url).expect("URL"));
    let election = format!("aged-session-{:08x}", fastrand::u32(..));
    let (ra, rb) = (request(&election, "a"), request(&election, "b"));
    let Acquire::Acquired(la) = a.try_acquire(&ra).await.expect("acquire a") else { panic!("a should lead") };
    // b's first attempt makes its session (T0) and finds a leading.
    let Acquire::Held(_) = b.try_acquire(&rb).await.expect("acquire b") else { panic!("b should follow") };
    let t0 = Instant::now();

    // a leads on (renewing) for 1.5 TTL, while b's session sits idle; then a releases.
    let mut la = la;
    while t0.elapsed() < MIN_TTL * 3 / 2 {
        tokio::time::sleep(MIN_TTL / 4).await;
        la = a.renew(&la, MIN_TTL).await.expect("renew a").expect("a still leads");
    }
    assert!(a.release(&la).await.expect("release a"));

    let sent = Instant::now();
    let Acquire::Acquired(lb) = b.try_acquire(&rb).await.expect("acquire b") else { panic!("b should lead now") };
    // Without renewing, b's tenure rests on Consul keeping its key for a whole TTL from the acquire:
    // look just before that. (Before the fix Consul deleted it about 0.5 TTL after the acquire.)
    tokio::time::sleep_until(sent + MIN_TTL - Duration::from_secs(1)).await;
    let holder = a.current(&election).await.expect("current").expect("b's key must still be there");
    assert_eq!((holder.instance_id.as_str(), holder.token), (rb.instance_id.as_str(), lb.token));
    assert!(b.release(&lb).await.expect("release b"));
}
