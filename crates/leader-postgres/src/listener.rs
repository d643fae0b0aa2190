//! Push hints: one dedicated, unpooled connection per store that `LISTEN`s on the table's channel.
//! Acquire (of a new tenure) and release `NOTIFY` with the election's name in the same statement,
//! so the hint is sent exactly when the change commits.
//!
//! The connection is opened when the first follower watches, and reopened by itself with backoff
//! when it is lost (server restart, `pg_terminate_backend`, a failed ping). While it is down,
//! `watch` answers `None` and open watch streams end, so the election driver polls. Each
//! (re)connection wakes every watcher once: a release that happened while nobody listened is then
//! seen by a fresh read.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{self, BoxStream, StreamExt};
use tokio::sync::{broadcast, watch};
use tokio_postgres::Config;

use crate::connection::{connect_unpooled, Tls};
use crate::ident::quote;

/// A silent connection is probed this often; a probe that does not answer in time drops it.
const PING_EVERY: Duration = Duration::from_secs(10);
const PING_TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
enum Event {
    /// A NOTIFY with this election name.
    Notify(Arc<str>),
    /// LISTEN is in place (again): everyone should look once.
    Connected,
    /// The connection is gone: streams end.
    Lost,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    NotStarted,
    Connecting,
    Up,
    Down,
}

struct Shared {
    events: broadcast::Sender<Event>,
    state: Mutex<State>,
    config: Config,
    tls: Tls,
    channel: String,
}

/// The store's listener. Dropping it (with the store) stops the task and closes the connection.
pub(crate) struct Listener {
    shared: Arc<Shared>,
    /// Dropped with the listener; the task ends when it sees that.
    stop: watch::Sender<()>,
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Listener {
    pub fn new(mut config: Config, tls: Tls, channel: String) -> Self {
        // Recognisable in pg_stat_activity (and by the tests that terminate it).
        let name = format!("{}-listen", config.get_application_name().unwrap_or("leader-postgres"));
        config.application_name(name);
        let (events, _) = broadcast::channel(256);
        let shared = Arc::new(Shared { events, state: Mutex::new(State::NotStarted), config, tls, channel });
        Listener { shared, stop: watch::Sender::new(()) }
    }

    /// Whether LISTEN is in place right now.
    pub fn is_up(&self) -> bool {
        *lock(&self.shared.state) == State::Up
    }

    /// A stream of hints for `election`, or `None` while the connection is down (poll instead).
    pub fn watch(&self, election: &str) -> Option<BoxStream<'static, ()>> {
        let rx = {
            let mut state = lock(&self.shared.state);
            match *state {
                State::Down => return None,
                State::NotStarted => {
                    let handle = tokio::runtime::Handle::try_current().ok()?;
                    *state = State::Connecting;
                    handle.spawn(run(self.shared.clone(), self.stop.subscribe()));
                }
                State::Connecting | State::Up => {}
            }
            // Subscribed under the state lock: the task changes the state under it before it sends
            // `Lost`, so a stream handed out here cannot miss the end of its connection.
            self.shared.events.subscribe()
        };
        let election: Arc<str> = election.into();
        Some(
            stream::unfold((rx, election), |(mut rx, election)| async move {
                loop {
                    match rx.recv().await {
                        Ok(Event::Notify(name)) if name == election => break,
                        Ok(Event::Notify(_)) => continue,
                        Ok(Event::Connected) => break,
                        Ok(Event::Lost) | Err(broadcast::error::RecvError::Closed) => return None,
                        // Missed some: one spurious wake-up is harmless, a missed one is not.
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                    }
                }
                Some(((), (rx, election)))
            })
            .boxed(),
        )
    }
}

impl Shared {
    fn set(&self, state: State, event: Option<Event>) {
        let mut s = lock(&self.state);
        *s = state;
        if let Some(event) = event {
            let _ = self.events.send(event); // no receivers: nobody watches, nothing to do
        }
    }
}

async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<()>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        shared.set(State::Connecting, None);
        let connect = async {
            let events = shared.events.clone();
            let (client, done) =
                connect_unpooled(&shared.config, &shared.tls, shared.channel.clone(), move |payload| {
                    let _ = events.send(Event::Notify(payload.into()));
                })
                .await?;
            client.batch_execute(&format!("LISTEN {}", quote(&shared.channel))).await?;
            Ok::<_, tokio_postgres::Error>((client, done))
        };
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect) => r,
            _ = stop.changed() => return,
        };
        match connected {
            Ok(Ok((client, mut done))) => {
                tracing::debug!(channel = %shared.channel, "leader-postgres: listening");
                shared.set(State::Up, Some(Event::Connected));
                backoff = BACKOFF_MIN;
                loop {
                    tokio::select! {
                        _ = &mut done => break,
                        _ = tokio::time::sleep(PING_EVERY) => {
                            let ping = tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await;
                            if !matches!(ping, Ok(Ok(_))) {
                                tracing::debug!("leader-postgres: listen connection does not answer; reconnecting");
                                break;
                            }
                        }
                        _ = stop.changed() => {
                            done.abort();
                            return;
                        }
                    }
                }
                done.abort();
                drop(client);
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "leader-postgres: listen connection failed"),
            Err(_) => tracing::debug!("leader-postgres: listen connection timed out"),
        }
        shared.set(State::Down, Some(Event::Lost));
        let pause = backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        backoff = (backoff * 2).min(BACKOFF_MAX);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}
