//! Three participants (tasks of this process) elect a leader on the in-memory store; the leader
//! steps down and another takes over. Every change each participant sees is printed.
//!
//! `cargo run --example quickstart_memory`

use std::time::{Duration, Instant};

use futures::StreamExt;
use leader::{ChangeKind, Election, ElectionOptions};

#[tokio::main]
async fn main() -> leader::Result<()> {
    let started = Instant::now();
    let store = leader::connect("memory://quickstart").await?;
    let options = ElectionOptions::from_lease(Duration::from_secs(3));

    let mut participants = Vec::new();
    for name in ["alpha", "bravo", "charlie"] {
        let election =
            Election::builder(store.clone(), "quickstart").participant_id(name).options(options.clone()).build()?;
        let mut changes = election.changes();
        tokio::spawn(async move {
            while let Some(c) = changes.next().await {
                let holder = c
                    .current
                    .as_ref()
                    .map_or("nobody".to_owned(), |l| format!("{} (token {})", l.participant_id, l.token));
                println!(
                    "[{:>6.3}s] {name:<8} {:?} {:?}: leader is {holder}",
                    started.elapsed().as_secs_f64(),
                    c.kind,
                    c.reason
                );
            }
        });
        election.start().await?;
        participants.push(election);
    }

    // Wait for the first leader, let it lead a moment, then hand over.
    let first = loop {
        if let Some(e) = participants.iter().find(|e| e.is_leader()) {
            break e.clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    println!("[{:>6.3}s] {} steps down", started.elapsed().as_secs_f64(), first.participant_id());
    let handed_over = Instant::now();
    let mut next = participants
        .iter()
        .filter(|e| e.participant_id() != first.participant_id())
        .map(|e| {
            let mut c = e.changes();
            async move {
                while let Some(change) = c.next().await {
                    if change.kind == ChangeKind::Acquired {
                        return change;
                    }
                }
                std::future::pending().await
            }
        })
        .map(Box::pin)
        .collect::<Vec<_>>();
    first.stop().await?;
    let (change, _, _) = futures::future::select_all(next.drain(..)).await;
    println!(
        "[{:>6.3}s] handoff to {} took {:?}",
        started.elapsed().as_secs_f64(),
        change.current.map(|l| l.participant_id).unwrap_or_default(),
        handed_over.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for e in &participants {
        e.stop().await?;
    }
    Ok(())
}
