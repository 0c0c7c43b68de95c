//! What a container's probes decide, as pure data and a transition function (no I/O; the
//! `prober` module runs the probes and feeds their outcomes in).
//!
//! The kubelet's rules: a startup probe holds back the other two until it has succeeded
//! once; a probe runs only `initialDelaySeconds` after the container started; a probe
//! changes its verdict after `successThreshold` successes or `failureThreshold` failures in
//! a row. A container with a startup or readiness probe starts not ready and is ready once
//! started and (with a readiness probe) passing it. A failed liveness or startup verdict
//! restarts the container (the container task applies the restart policy and back-off).
//! Every failed try is an `Unhealthy` event, as the kubelet records it.

use std::time::Duration;

use wasmfleet_protocol::pod::probe::{PodEventKind, Probe, ProbeKind, Probes};

/// How one try went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The port answered (HTTP: a status in 200..=399).
    Success,
    /// It did not, and why.
    Failure(String),
}

/// What the prober does after an outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Report this event about the container.
    Event(PodEventKind, String),
    /// The startup probe succeeded: the container has started (Kubernetes' `started`).
    SetStarted,
    /// The container's readiness changed.
    SetReady(bool),
    /// Kill the container: this probe failed `failureThreshold` times in a row.
    Restart(ProbeKind),
}

/// One probe's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Tracker {
    kind: ProbeKind,
    initial_delay: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    passing: bool,
    successes: u32,
    failures: u32,
}

impl Tracker {
    fn new(kind: ProbeKind, probe: &Probe) -> Self {
        Self {
            kind,
            initial_delay: Duration::from_secs(probe.initial_delay_seconds.into()),
            success_threshold: probe.success_threshold.max(1),
            failure_threshold: probe.failure_threshold.max(1),
            // Liveness passes until proven otherwise; startup and readiness must succeed.
            passing: kind == ProbeKind::Liveness,
            successes: 0,
            failures: 0,
        }
    }

    /// Counts an outcome; `Some(verdict)` when the probe's verdict flips.
    fn count(&mut self, outcome: &Outcome) -> Option<bool> {
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                (!self.passing && self.successes >= self.success_threshold).then(|| {
                    self.passing = true;
                    true
                })
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                // A startup probe that never passed fails too: it restarts the container.
                let flips = self.failures >= self.failure_threshold
                    && (self.passing || self.kind == ProbeKind::Startup);
                flips.then(|| {
                    self.passing = false;
                    false
                })
            }
        }
    }
}

/// The probes of one run of a container and what they concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    startup: Option<Tracker>,
    liveness: Option<Tracker>,
    readiness: Option<Tracker>,
    // Whether a verdict restarted the container: nothing more is decided for this run.
    ended: bool,
}

impl Machine {
    /// The machine of a run that just started.
    pub fn new(probes: &Probes) -> Self {
        Self {
            startup: probes
                .startup
                .as_ref()
                .map(|p| Tracker::new(ProbeKind::Startup, p)),
            liveness: probes
                .liveness
                .as_ref()
                .map(|p| Tracker::new(ProbeKind::Liveness, p)),
            readiness: probes
                .readiness
                .as_ref()
                .map(|p| Tracker::new(ProbeKind::Readiness, p)),
            ended: false,
        }
    }

    fn tracker(&mut self, kind: ProbeKind) -> Option<&mut Tracker> {
        match kind {
            ProbeKind::Startup => self.startup.as_mut(),
            ProbeKind::Liveness => self.liveness.as_mut(),
            ProbeKind::Readiness => self.readiness.as_mut(),
        }
    }

    /// Whether the startup probe (if any) has succeeded.
    pub fn started(&self) -> bool {
        self.startup.as_ref().is_none_or(|t| t.passing)
    }

    /// Whether the container counts as ready while it runs.
    pub fn ready(&self) -> bool {
        self.started() && self.readiness.as_ref().is_none_or(|t| t.passing)
    }

    /// Whether `kind` should be tried now, `since_start` after the run started.
    pub fn due(&self, kind: ProbeKind, since_start: Duration) -> bool {
        let tracker = match kind {
            ProbeKind::Startup => self.startup.as_ref().filter(|t| !t.passing),
            ProbeKind::Liveness => self.liveness.as_ref().filter(|_| self.started()),
            ProbeKind::Readiness => self.readiness.as_ref().filter(|_| self.started()),
        };
        !self.ended && tracker.is_some_and(|t| since_start >= t.initial_delay)
    }

    /// Counts the outcome of a try of `kind` and says what follows.
    pub fn record(&mut self, kind: ProbeKind, outcome: &Outcome) -> Vec<Action> {
        if self.ended {
            return Vec::new();
        }
        let was_ready = self.ready();
        let mut actions = Vec::new();
        if let Outcome::Failure(why) = outcome {
            actions.push(Action::Event(PodEventKind::ProbeFailed(kind), why.clone()));
        }
        let Some(verdict) = self.tracker(kind).and_then(|t| t.count(outcome)) else {
            return actions;
        };
        if verdict && kind == ProbeKind::Startup {
            actions.push(Action::SetStarted);
        }
        if !verdict && kind != ProbeKind::Readiness {
            self.ended = true;
            actions.push(Action::Event(PodEventKind::Restarting(kind), String::new()));
            actions.push(Action::Restart(kind));
        }
        if self.ready() != was_ready {
            actions.push(Action::SetReady(self.ready()));
        }
        actions
    }
}

#[cfg(test)]
mod tests {
    use wasmfleet_protocol::pod::ProbeAction;

    use super::*;

    fn probe(delay: u32, success: u32, failure: u32) -> Probe {
        Probe {
            action: ProbeAction::TcpSocket { port: 7 },
            initial_delay_seconds: delay,
            period_seconds: 1,
            timeout_seconds: 1,
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    fn fail() -> Outcome {
        Outcome::Failure("connection refused".into())
    }

    fn unhealthy(kind: ProbeKind) -> Action {
        Action::Event(PodEventKind::ProbeFailed(kind), "connection refused".into())
    }

    #[test]
    fn without_probes_a_running_container_is_ready_and_nothing_is_due() {
        let machine = Machine::new(&Probes::default());
        assert!(machine.ready());
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            assert!(!machine.due(kind, Duration::from_secs(60)));
        }
    }

    #[test]
    fn readiness_starts_false_and_follows_the_thresholds() {
        let mut m = Machine::new(&Probes {
            readiness: Some(probe(0, 2, 2)),
            ..Probes::default()
        });
        assert!(!m.ready());
        let r = ProbeKind::Readiness;
        assert_eq!(m.record(r, &Outcome::Success), []);
        assert_eq!(m.record(r, &Outcome::Success), [Action::SetReady(true)]);
        assert_eq!(m.record(r, &fail()), [unhealthy(r)]);
        assert_eq!(
            m.record(r, &Outcome::Success),
            [],
            "a success resets the failures"
        );
        assert_eq!(m.record(r, &fail()), [unhealthy(r)]);
        assert_eq!(
            m.record(r, &fail()),
            [unhealthy(r), Action::SetReady(false)],
            "a readiness failure never restarts"
        );
        assert_eq!(m.record(r, &fail()), [unhealthy(r)]);
        assert!(!m.ready());
    }

    #[test]
    fn liveness_restarts_after_the_failure_threshold_and_then_decides_nothing() {
        let mut m = Machine::new(&Probes {
            liveness: Some(probe(0, 1, 3)),
            ..Probes::default()
        });
        let l = ProbeKind::Liveness;
        assert!(m.ready(), "a liveness probe alone does not gate readiness");
        assert_eq!(m.record(l, &fail()), [unhealthy(l)]);
        assert_eq!(m.record(l, &fail()), [unhealthy(l)]);
        assert_eq!(
            m.record(l, &fail()),
            [
                unhealthy(l),
                Action::Event(PodEventKind::Restarting(l), String::new()),
                Action::Restart(l)
            ]
        );
        assert_eq!(m.record(l, &fail()), []);
        assert!(!m.due(l, Duration::from_secs(60)));
    }

    #[test]
    fn the_initial_delay_holds_a_probe_back() {
        let m = Machine::new(&Probes {
            liveness: Some(probe(5, 1, 1)),
            ..Probes::default()
        });
        assert!(!m.due(ProbeKind::Liveness, Duration::from_secs(4)));
        assert!(m.due(ProbeKind::Liveness, Duration::from_secs(5)));
    }

    #[test]
    fn a_startup_probe_gates_the_others_until_it_succeeds_and_restarts_when_it_fails() {
        let probes = Probes {
            startup: Some(probe(0, 1, 2)),
            liveness: Some(probe(0, 1, 1)),
            readiness: None,
        };
        let (s, now) = (ProbeKind::Startup, Duration::from_secs(1));
        let mut m = Machine::new(&probes);
        assert!(!m.ready(), "not ready before it started");
        assert!(m.due(s, now) && !m.due(ProbeKind::Liveness, now));
        assert!(!m.started());
        assert_eq!(
            m.record(s, &Outcome::Success),
            [Action::SetStarted, Action::SetReady(true)]
        );
        assert!(m.started());
        assert!(!m.due(s, now), "a startup probe stops once it succeeded");
        assert!(m.due(ProbeKind::Liveness, now));

        let mut failing = Machine::new(&probes);
        assert_eq!(failing.record(s, &fail()), [unhealthy(s)]);
        assert_eq!(
            failing.record(s, &fail()),
            [
                unhealthy(s),
                Action::Event(PodEventKind::Restarting(s), String::new()),
                Action::Restart(s)
            ]
        );
    }
}
