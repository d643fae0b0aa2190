//! [`Report`]: everything one run measured, as JSON and as the table the binary prints.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::sections::failover::CrashReport;
use crate::sections::handoff::HandoffReport;
use crate::sections::idle::{IdleReport, RoleCost};
use crate::sections::latency::LatencyReport;
use crate::sections::many::ManyReport;
use crate::stats::Summary;

/// One bench run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// The store URL, password redacted.
    pub store: String,
    /// The provider behind it (`memory`, `fs`, `postgres`, ...).
    pub provider: String,
    /// Lease duration of every election, in milliseconds.
    pub lease_ms: f64,
    /// Whether this was a `--quick` run (tiny N).
    pub quick: bool,
    /// Whether only the many-elections section ran (`--many-only`); sections 1-4 are then empty.
    #[serde(default)]
    pub many_only: bool,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// What the store says it can do.
    pub capabilities: Caps,
    /// Uncontended operation latency and the floor.
    pub latency: LatencyReport,
    /// Graceful handoff, push and polling.
    pub handoff: Vec<HandoffReport>,
    /// Crash failover.
    pub crash_failover: CrashReport,
    /// Idle cost per role.
    pub idle: IdleReport,
    /// Many elections on one handle.
    pub many_elections: Vec<ManyReport>,
    /// How to read this run (simulations, skipped rows).
    pub notes: Vec<String>,
}

/// [`leader::Capabilities`], serialisable.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Caps {
    /// Followers are woken by a push channel.
    pub push_notifications: bool,
    /// The push channel also reports expiry.
    pub pushes_expiry: bool,
    /// The store expires leases by its own clock.
    pub server_side_expiry: bool,
    /// Tokens survive a store restart.
    pub durable_tokens: bool,
    /// Participants may be on different hosts.
    pub cross_host: bool,
}

impl From<leader::Capabilities> for Caps {
    fn from(c: leader::Capabilities) -> Self {
        Caps {
            push_notifications: c.push_notifications,
            pushes_expiry: c.pushes_expiry,
            server_side_expiry: c.server_side_expiry,
            durable_tokens: c.durable_tokens,
            cross_host: c.cross_host,
        }
    }
}

/// A time (ms or µs) with as many decimals as make sense for its magnitude.
fn fmt_ms(v: f64) -> String {
    match v {
        v if v < 0.01 => format!("{v:.4}"),
        v if v < 1.0 => format!("{v:.3}"),
        v if v < 100.0 => format!("{v:.2}"),
        v => format!("{v:.0}"),
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_owned(), |r| format!("{r:.1}x"))
}

impl Report {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let _ = self.write_table(&mut t);
        t
    }

    fn write_table(&self, t: &mut String) -> std::fmt::Result {
        let caps = &self.capabilities;
        writeln!(
            t,
            "leader-bench  store {}  provider {}  lease {} ms{}  started {}",
            self.store,
            self.provider,
            fmt_ms(self.lease_ms),
            if self.quick { "  (--quick)" } else { "" },
            self.started_at
        )?;
        writeln!(
            t,
            "capabilities: push_notifications={} pushes_expiry={} server_side_expiry={} durable_tokens={} cross_host={}",
            caps.push_notifications, caps.pushes_expiry, caps.server_side_expiry, caps.durable_tokens, caps.cross_host
        )?;

        if !self.many_only {
            self.write_sections_1_to_4(t)?;
        }
        self.write_many(t)?;

        if !self.notes.is_empty() {
            writeln!(t)?;
            for n in &self.notes {
                writeln!(t, "note: {n}")?;
            }
        }
        Ok(())
    }

    fn write_sections_1_to_4(&self, t: &mut String) -> std::fmt::Result {
        let l = &self.latency;
        writeln!(t)?;
        writeln!(t, "1. Uncontended latency (µs), {} iterations after {} warm-up", l.iterations, l.warmup)?;
        writeln!(t, "   floor = {}", l.floor)?;
        writeln!(
            t,
            "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
            "op", "n", "p50", "p90", "p99", "max", "floor p50", "x floor"
        )?;
        for (name, s, r) in [
            ("acquire", &l.acquire, l.ratio_p50.acquire),
            ("renew", &l.renew, l.ratio_p50.renew),
            ("release", &l.release, l.ratio_p50.release),
            ("floor", &l.raw_floor, Some(1.0)),
        ] {
            writeln!(
                t,
                "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
                name,
                s.n,
                fmt_ms(s.p50_ms * 1000.0),
                fmt_ms(s.p90_ms * 1000.0),
                fmt_ms(s.p99_ms * 1000.0),
                fmt_ms(s.max_ms * 1000.0),
                fmt_ms(l.raw_floor.p50_ms * 1000.0),
                fmt_ratio(r)
            )?;
        }

        writeln!(t)?;
        writeln!(t, "2. Graceful handoff: leader's stop() called -> follower's Acquired (ms)")?;
        writeln!(t, "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9}", "mode", "n", "p50", "p99", "max", "mean")?;
        for h in &self.handoff {
            write_summary_row(t, &h.mode, &h.summary)?;
        }

        let c = &self.crash_failover;
        writeln!(t)?;
        writeln!(
            t,
            "3. Crash failover: holder killed -> a participant here leads (ms); lease {} ms",
            fmt_ms(c.lease_ms)
        )?;
        writeln!(
            t,
            "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8}",
            "mode", "runs", "p50", "p99", "max", "mean", "/ lease"
        )?;
        let kind = if c.mode.starts_with("process") { "process" } else { "in-proc" };
        writeln!(
            t,
            "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9} {:>8}",
            kind,
            c.summary.n,
            fmt_ms(c.summary.p50_ms),
            fmt_ms(c.summary.p99_ms),
            fmt_ms(c.summary.max_ms),
            fmt_ms(c.summary.mean_ms),
            match c.summary.p50_ms / c.lease_ms {
                r if r >= 0.1 => format!("{r:.2}"),
                r => format!("{r:.4}"),
            }
        )?;
        writeln!(t, "   holder: {}", c.mode)?;

        let i = &self.idle;
        writeln!(t)?;
        writeln!(
            t,
            "4. Idle cost over {:.1} s ({:.1} leases): store calls per second",
            i.window_ms / 1000.0,
            i.leases
        )?;
        writeln!(
            t,
            "   {:<17} {:>8} {:>7} {:>7} {:>8}  calls in window",
            "role", "ops/s", "watches", "errors", "timeouts"
        )?;
        for (role, cost) in
            [("leader", &i.leader), ("follower (push)", &i.follower), ("follower (poll)", &i.follower_polling)]
        {
            write_role(t, role, cost)?;
        }

        Ok(())
    }

    fn write_many(&self, t: &mut String) -> std::fmt::Result {
        writeln!(t)?;
        writeln!(
            t,
            "5. Many elections on one store handle: leases renewed and store round trips per second; renew \
             call latency in ms"
        )?;
        writeln!(
            t,
            "   {:>6} {:>7} {:>7} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9} {:>6} {:>8}",
            "K",
            "leading",
            "at end",
            "setup ms",
            "renewed/s",
            "calls/s",
            "server/s",
            "renew p50",
            "renew p99",
            "errors",
            "timeouts"
        )?;
        for m in &self.many_elections {
            writeln!(
                t,
                "   {:>6} {:>7} {:>7} {:>9} {:>10.1} {:>9.1} {:>9} {:>9} {:>9} {:>6} {:>8}",
                m.k,
                m.leading,
                m.still_leading,
                fmt_ms(m.setup_ms),
                m.renewals_per_sec,
                m.ops_per_sec,
                m.server_round_trips_per_sec.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")),
                fmt_ms(m.renew.p50_ms),
                fmt_ms(m.renew.p99_ms),
                m.errors,
                m.timeouts
            )?;
        }
        Ok(())
    }
}

fn write_summary_row(t: &mut String, name: &str, s: &Summary) -> std::fmt::Result {
    writeln!(
        t,
        "   {:<9} {:>6} {:>9} {:>9} {:>9} {:>9}",
        name,
        s.n,
        fmt_ms(s.p50_ms),
        fmt_ms(s.p99_ms),
        fmt_ms(s.max_ms),
        fmt_ms(s.mean_ms)
    )
}

fn write_role(t: &mut String, role: &str, c: &RoleCost) -> std::fmt::Result {
    let calls = c.calls.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ");
    writeln!(
        t,
        "   {:<17} {:>8.2} {:>7} {:>7} {:>8}  {}",
        role,
        c.ops_per_sec,
        c.watches,
        c.errors,
        c.timeouts,
        if calls.is_empty() { "none".to_owned() } else { calls }
    )
}
