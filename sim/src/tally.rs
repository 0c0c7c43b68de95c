//! The fleet's counters, shared by every hollow agent; the live summary line and the final
//! report read them.

use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// Counters of the whole fleet. Gauges go up and down; totals only up.
#[derive(Debug)]
pub struct Tally {
    /// When the simulator started.
    begun: Instant,
    /// How many agents it runs.
    agents: u64,
    /// Agents started so far (they connect in the background).
    pub started: AtomicU64,
    /// Agents with a live MQTT session (gauge).
    pub connected: AtomicU64,
    /// Agents that have received a desired set from the server (their Node is registered).
    pub synced: AtomicU64,
    /// Pods the hollow agents hold, all reported Running (gauge).
    pub pods: AtomicU64,
    /// Pods started, in total: a pod started twice on a node counts twice.
    pub pod_starts: AtomicU64,
    /// Pods stopped, in total.
    pub pod_stops: AtomicU64,
    /// Status reports built (sent when the agent is connected), in total.
    pub reports: AtomicU64,
    /// MQTT sessions begun, in total (reconnects included).
    pub sessions: AtomicU64,
    /// Sessions lost without the agent asking, in total.
    pub disconnects: AtomicU64,
    /// When every agent was first connected, and first synced.
    milestones: Mutex<Milestones>,
}

#[derive(Debug, Default)]
struct Milestones {
    all_connected: Option<Duration>,
    all_synced: Option<Duration>,
}

impl Tally {
    /// Zeroed counters for `agents` agents, starting now.
    pub fn new(agents: u32) -> Tally {
        Tally {
            begun: Instant::now(),
            agents: u64::from(agents),
            started: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            pods: AtomicU64::new(0),
            pod_starts: AtomicU64::new(0),
            pod_stops: AtomicU64::new(0),
            reports: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
            milestones: Mutex::new(Milestones::default()),
        }
    }

    /// An agent's session came up or went down (`lost`: not by its own disconnect).
    pub fn session(&self, up: bool, lost: bool) {
        if up {
            self.sessions.fetch_add(1, Relaxed);
            let now = self.connected.fetch_add(1, Relaxed) + 1;
            if now == self.agents {
                self.milestones()
                    .all_connected
                    .get_or_insert(self.begun.elapsed());
            }
        } else {
            self.connected.fetch_sub(1, Relaxed);
            if lost {
                self.disconnects.fetch_add(1, Relaxed);
            }
        }
    }

    /// An agent received its first desired set.
    pub fn first_sync(&self) {
        if self.synced.fetch_add(1, Relaxed) + 1 == self.agents {
            self.milestones()
                .all_synced
                .get_or_insert(self.begun.elapsed());
        }
    }

    fn milestones(&self) -> std::sync::MutexGuard<'_, Milestones> {
        self.milestones
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One summary line; `reports_per_sec` over the last interval.
    pub fn line(&self, reports_per_sec: f64) -> String {
        format!(
            "[{:>6.1}s] agents {}/{} started, {} connected, {} synced; pods {} running \
             ({} started, {} stopped); {reports_per_sec:.0} reports/s; {} sessions, {} lost",
            self.begun.elapsed().as_secs_f64(),
            self.started.load(Relaxed),
            self.agents,
            self.connected.load(Relaxed),
            self.synced.load(Relaxed),
            self.pods.load(Relaxed),
            self.pod_starts.load(Relaxed),
            self.pod_stops.load(Relaxed),
            self.sessions.load(Relaxed),
            self.disconnects.load(Relaxed),
        )
    }

    /// The final report, several lines.
    pub fn report(&self) -> String {
        let milestones = self.milestones();
        let at = |d: Option<Duration>| {
            d.map_or_else(
                || "never".to_owned(),
                |d| format!("{:.1}s", d.as_secs_f64()),
            )
        };
        let elapsed = self.begun.elapsed().as_secs_f64();
        let mut out = String::from("wasmfleet-sim final report\n");
        let _ = writeln!(out, "  ran for            {elapsed:.1}s");
        let _ = writeln!(out, "  agents             {}", self.agents);
        let _ = writeln!(out, "  all connected at   {}", at(milestones.all_connected));
        let _ = writeln!(out, "  all synced at      {}", at(milestones.all_synced));
        let _ = writeln!(
            out,
            "  sessions           {} ({} lost)",
            self.sessions.load(Relaxed),
            self.disconnects.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "  pods started       {}",
            self.pod_starts.load(Relaxed)
        );
        let _ = writeln!(out, "  pods stopped       {}", self.pod_stops.load(Relaxed));
        let _ = writeln!(out, "  pods at the end    {}", self.pods.load(Relaxed));
        let reports = self.reports.load(Relaxed);
        let _ = write!(
            out,
            "  status reports     {reports} ({:.1}/s)",
            reports as f64 / elapsed.max(0.001)
        );
        out
    }
}

/// Prints a summary line to stdout every `interval` until `stop` fires.
pub async fn print_summaries(
    tally: std::sync::Arc<Tally>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    let mut last = (Instant::now(), tally.reports.load(Relaxed));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let now = (Instant::now(), tally.reports.load(Relaxed));
        let rate = (now.1 - last.1) as f64 / now.0.duration_since(last.0).as_secs_f64().max(0.001);
        last = now;
        println!("{}", tally.line(rate));
    }
}
