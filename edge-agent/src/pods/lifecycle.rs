//! One container's lifecycle and its pod's phase, as pure data and functions (no I/O).
//!
//! A container starts `Waiting(ContainerCreating)`, runs, and terminates. The restart
//! policy decides whether it runs again; as in the kubelet, the first restart of a crash
//! streak is immediate and later ones wait an exponential back-off
//! (`Waiting(CrashLoopBackOff)`, [`Backoff`]); module failures wait the back-off too
//! (`Waiting(ErrModulePull)` / `Waiting(CreateContainerError)`). A run ended because the
//! container's image changed ([`Event::Replaced`]) restarts at once, whatever the policy. The pod phase is derived
//! from its containers exactly as the kubelet's `getPhase` does it.

use std::time::Duration;

use wasmfleet_protocol::backoff::BackoffPolicy;
use wasmfleet_protocol::pod::{ContainerState, ContainerStatus, PodPhase, RestartPolicy};

/// Why a container is waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingReason {
    /// Fetching and compiling its module.
    ContainerCreating,
    /// The module could not be fetched; retried with back-off.
    ErrModulePull,
    /// The module was fetched but cannot run (invalid wasm, not a command).
    CreateContainerError,
    /// The pod asks for what this node refuses (a `hostPath` its agent does not allow).
    CreateContainerConfigError,
    /// Backing off before a restart.
    CrashLoopBackOff,
}

impl WaitingReason {
    /// The Kubernetes reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContainerCreating => "ContainerCreating",
            Self::ErrModulePull => "ErrModulePull",
            Self::CreateContainerError => "CreateContainerError",
            Self::CreateContainerConfigError => "CreateContainerConfigError",
            Self::CrashLoopBackOff => "CrashLoopBackOff",
        }
    }

    fn parse(reason: &str) -> Self {
        match reason {
            "ErrModulePull" => Self::ErrModulePull,
            "CreateContainerError" => Self::CreateContainerError,
            "CreateContainerConfigError" => Self::CreateContainerConfigError,
            "CrashLoopBackOff" => Self::CrashLoopBackOff,
            _ => Self::ContainerCreating,
        }
    }
}

/// Why a container terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TerminationReason {
    /// Exit code 0.
    Completed,
    /// A non-zero exit or a trap.
    Error,
    /// It hit its memory limit.
    OomKilled,
    /// It was running when the agent went away; how it ended is unknown.
    Unknown,
}

impl TerminationReason {
    /// The Kubernetes reason string.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "Completed",
            Self::Error => "Error",
            Self::OomKilled => "OOMKilled",
            Self::Unknown => "Unknown",
        }
    }

    fn parse(reason: &str) -> Self {
        match reason {
            "Completed" => Self::Completed,
            "OOMKilled" => Self::OomKilled,
            "Unknown" => Self::Unknown,
            _ => Self::Error,
        }
    }
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The exit code.
    pub exit_code: i32,
    /// Why it ended.
    pub reason: TerminationReason,
    /// A human explanation.
    pub message: String,
    /// When the run started, Unix ms.
    pub started_unix_ms: u64,
    /// When it ended, Unix ms.
    pub finished_unix_ms: u64,
}

/// A container's current state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Not running.
    Waiting {
        /// Why.
        reason: WaitingReason,
        /// A human explanation.
        message: String,
    },
    /// Running since the given time (Unix ms).
    Running {
        /// Start time.
        started_unix_ms: u64,
    },
    /// Finished, and will not run again.
    Terminated(Termination),
}

/// What happened to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Fetching or loading the module failed.
    ModuleFailed {
        /// `ErrModulePull` or `CreateContainerError`.
        reason: WaitingReason,
        /// What went wrong.
        message: String,
    },
    /// A run started.
    Started {
        /// When, Unix ms.
        at_unix_ms: u64,
    },
    /// The run ended by itself.
    Exited {
        /// Its exit code.
        exit_code: i32,
        /// Why.
        reason: TerminationReason,
        /// A human explanation.
        message: String,
        /// When, Unix ms.
        at_unix_ms: u64,
    },
    /// The agent ended the run because the container's image changed; it starts again at
    /// once on the new module, whatever the restart policy (as the kubelet does when a
    /// container's spec changes).
    Replaced {
        /// Why, for the run's termination message.
        message: String,
        /// When, Unix ms.
        at_unix_ms: u64,
    },
}

/// What the container's task does after an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Carry on (the container is running).
    Continue,
    /// Wait this long, then fetch/start again.
    RetryAfter(Duration),
    /// The container will not run again.
    Done,
}

/// The kubelet's back-off of a container: [`BackoffPolicy`] steps from `base` doubling up
/// to 5 minutes, forgotten after a run of 10 minutes. A crash streak's first restart does not
/// wait ([`Backoff::restart_delay`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay and the longest.
    pub policy: BackoffPolicy,
    /// A run at least this long resets the back-off.
    pub reset_after: Duration,
}

impl Backoff {
    /// The kubelet's schedule (5 min cap, reset after 10 min) with the given base.
    pub fn with_base(base: Duration) -> Self {
        Self {
            policy: BackoffPolicy {
                base,
                max: Duration::from_secs(300),
            },
            reset_after: Duration::from_secs(600),
        }
    }

    /// The delay before retry number `attempt` (0-based) of a module that failed.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.policy.step(attempt)
    }

    /// The delay before restart number `restart` (0-based) of a crash streak: none for the
    /// first, as the kubelet restarts a crashed container at once and only then backs off,
    /// then `base`, `2 * base`, ... up to the cap.
    pub fn restart_delay(&self, restart: u32) -> Duration {
        match restart.checked_sub(1) {
            None => Duration::ZERO,
            Some(attempt) => self.delay(attempt),
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::with_base(Duration::from_secs(10))
    }
}

/// Whether a container that exited with `exit_code` runs again under `policy`.
pub fn should_restart(policy: RestartPolicy, exit_code: i32) -> bool {
    match policy {
        RestartPolicy::Always => true,
        RestartPolicy::OnFailure => exit_code != 0,
        RestartPolicy::Never => false,
    }
}

/// Everything the agent tracks about one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    /// The current state.
    pub state: State,
    /// The previous run, once it was restarted.
    pub last_termination: Option<Termination>,
    /// How many times it was restarted.
    pub restart_count: u32,
    // Whether any run has started, so the next start counts as a restart.
    started_before: bool,
    // Restarts since the last long run; the exponent of the restart back-off.
    crash_streak: u32,
    // Module failures since the last start; the exponent of the retry back-off.
    module_streak: u32,
    // With a startup or readiness probe, whether the probes say the run is ready (each run
    // starts not ready); `None` without such probes: a running container is ready.
    probe_ready: Option<bool>,
    // With a startup probe, whether it has succeeded in the current run (each run starts
    // not started); `None` without one: a running container has started.
    probe_started: Option<bool>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A container that has not started yet.
    pub fn new() -> Self {
        Self {
            state: State::Waiting {
                reason: WaitingReason::ContainerCreating,
                message: String::new(),
            },
            last_termination: None,
            restart_count: 0,
            started_before: false,
            crash_streak: 0,
            module_streak: 0,
            probe_ready: None,
            probe_started: None,
        }
    }

    /// The same lifecycle for a container whose readiness its probes decide (it has a
    /// startup or readiness probe): each run starts not ready.
    pub fn gated_by_probes(mut self) -> Self {
        self.probe_ready = Some(false);
        self
    }

    /// The same lifecycle for a container with a startup probe: each run starts not
    /// started (Kubernetes' `started: false`) until the probe succeeds.
    pub fn with_startup_probe(mut self) -> Self {
        self.probe_started = Some(false);
        self
    }

    /// The startup probe of the current run succeeded (ignored without one).
    pub fn set_probe_started(&mut self) {
        if self.probe_started.is_some() {
            self.probe_started = Some(true);
        }
    }

    /// Whether the container runs but its startup probe has not succeeded yet.
    pub fn is_starting(&self) -> bool {
        matches!(self.state, State::Running { .. }) && self.probe_started == Some(false)
    }

    /// What the probes concluded about the current run (ignored without a gate).
    pub fn set_probe_ready(&mut self, ready: bool) {
        if self.probe_ready.is_some() {
            self.probe_ready = Some(ready);
        }
    }

    /// Applies `event` and says what to do next.
    pub fn apply(&mut self, event: Event, policy: RestartPolicy, backoff: &Backoff) -> Next {
        match event {
            Event::ModuleFailed { reason, message } => self.module_failed(reason, message, backoff),
            Event::Started { at_unix_ms } => self.started(at_unix_ms),
            Event::Exited {
                exit_code,
                reason,
                message,
                at_unix_ms,
            } => self.exited(exit_code, reason, message, at_unix_ms, policy, backoff),
            Event::Replaced {
                message,
                at_unix_ms,
            } => self.replaced(message, at_unix_ms),
        }
    }

    /// Whether it terminated for good.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Terminated(_))
    }

    fn module_failed(&mut self, reason: WaitingReason, message: String, backoff: &Backoff) -> Next {
        let delay = backoff.delay(self.module_streak);
        self.module_streak += 1;
        self.state = State::Waiting { reason, message };
        Next::RetryAfter(delay)
    }

    fn started(&mut self, at_unix_ms: u64) -> Next {
        if self.started_before {
            self.restart_count += 1;
        }
        self.started_before = true;
        self.module_streak = 0;
        if self.probe_ready.is_some() {
            self.probe_ready = Some(false);
        }
        if self.probe_started.is_some() {
            self.probe_started = Some(false);
        }
        self.state = State::Running {
            started_unix_ms: at_unix_ms,
        };
        Next::Continue
    }

    fn exited(
        &mut self,
        exit_code: i32,
        reason: TerminationReason,
        message: String,
        at_unix_ms: u64,
        policy: RestartPolicy,
        backoff: &Backoff,
    ) -> Next {
        let started_unix_ms = match self.state {
            State::Running { started_unix_ms } => started_unix_ms,
            _ => at_unix_ms,
        };
        let ran_for = Duration::from_millis(at_unix_ms.saturating_sub(started_unix_ms));
        if ran_for >= backoff.reset_after {
            self.crash_streak = 0;
        }
        let termination = Termination {
            exit_code,
            reason,
            message,
            started_unix_ms,
            finished_unix_ms: at_unix_ms,
        };
        if !should_restart(policy, exit_code) {
            self.state = State::Terminated(termination);
            return Next::Done;
        }
        let delay = backoff.restart_delay(self.crash_streak);
        self.crash_streak += 1;
        self.last_termination = Some(termination);
        self.state = if delay.is_zero() {
            creating()
        } else {
            State::Waiting {
                reason: WaitingReason::CrashLoopBackOff,
                message: format!("back-off {} restarting the container", human(delay)),
            }
        };
        Next::RetryAfter(delay)
    }

    fn replaced(&mut self, message: String, at_unix_ms: u64) -> Next {
        let started_unix_ms = match self.state {
            State::Running { started_unix_ms } => started_unix_ms,
            _ => at_unix_ms,
        };
        self.last_termination = Some(Termination {
            exit_code: crate::runtime::KILLED_EXIT_CODE,
            reason: TerminationReason::Error,
            message,
            started_unix_ms,
            finished_unix_ms: at_unix_ms,
        });
        // A new spec is a new back-off, as the kubelet keys it by the container's spec.
        self.crash_streak = 0;
        self.state = creating();
        Next::Continue
    }

    /// Rebuilds a lifecycle from a status persisted by an earlier agent process.
    pub fn restore(status: &ContainerStatus) -> Self {
        let state = match &status.state {
            ContainerState::Waiting { reason, message } => State::Waiting {
                reason: WaitingReason::parse(reason),
                message: message.clone(),
            },
            ContainerState::Running { started_unix_ms } => State::Running {
                started_unix_ms: *started_unix_ms,
            },
            ContainerState::Terminated { .. } => {
                State::Terminated(termination_from(&status.state).unwrap_or_else(unknown_end))
            }
        };
        let last_termination = status.last_state.as_ref().and_then(termination_from);
        let started_before = status.restart_count > 0
            || last_termination.is_some()
            || !matches!(state, State::Waiting { .. });
        Self {
            state,
            last_termination,
            restart_count: status.restart_count,
            started_before,
            crash_streak: 0,
            module_streak: 0,
            probe_ready: None,
            probe_started: None,
        }
    }

    /// Prepares a restored container that had not finished to run again in a new agent
    /// process: a run that was in progress becomes an `Unknown` termination.
    pub fn resume(&mut self, now_unix_ms: u64) {
        if let State::Running { started_unix_ms } = self.state {
            self.last_termination = Some(Termination {
                exit_code: UNKNOWN_EXIT_CODE,
                reason: TerminationReason::Unknown,
                message: "the agent restarted while the container was running".into(),
                started_unix_ms,
                finished_unix_ms: now_unix_ms,
            });
        }
        if !self.is_done() {
            self.state = creating();
        }
    }

    /// The wire status of this container.
    pub fn status(&self, name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.to_string(),
            restart_count: self.restart_count,
            state: wire_state(&self.state),
            last_state: self
                .last_termination
                .as_ref()
                .map(|t| wire_state(&State::Terminated(t.clone()))),
            ready: matches!(self.state, State::Running { .. }) && self.probe_ready != Some(false),
        }
    }
}

/// Waiting for its module (or to start again at once).
fn creating() -> State {
    State::Waiting {
        reason: WaitingReason::ContainerCreating,
        message: String::new(),
    }
}

/// The exit code reported for a run whose end the agent did not see (as the kubelet does).
pub const UNKNOWN_EXIT_CODE: i32 = 255;

fn unknown_end() -> Termination {
    Termination {
        exit_code: UNKNOWN_EXIT_CODE,
        reason: TerminationReason::Unknown,
        message: String::new(),
        started_unix_ms: 0,
        finished_unix_ms: 0,
    }
}

fn termination_from(state: &ContainerState) -> Option<Termination> {
    match state {
        ContainerState::Terminated {
            exit_code,
            reason,
            message,
            started_unix_ms,
            finished_unix_ms,
        } => Some(Termination {
            exit_code: *exit_code,
            reason: TerminationReason::parse(reason),
            message: message.clone(),
            started_unix_ms: *started_unix_ms,
            finished_unix_ms: *finished_unix_ms,
        }),
        _ => None,
    }
}

fn wire_state(state: &State) -> ContainerState {
    match state {
        State::Waiting { reason, message } => ContainerState::Waiting {
            reason: reason.as_str().to_string(),
            message: message.clone(),
        },
        State::Running { started_unix_ms } => ContainerState::Running {
            started_unix_ms: *started_unix_ms,
        },
        State::Terminated(t) => ContainerState::Terminated {
            exit_code: t.exit_code,
            reason: t.reason.as_str().to_string(),
            message: t.message.clone(),
            started_unix_ms: t.started_unix_ms,
            finished_unix_ms: t.finished_unix_ms,
        },
    }
}

/// A delay as Kubernetes prints it (`10s`, `2m40s`, `250ms`).
fn human(delay: Duration) -> String {
    let secs = delay.as_secs();
    match (secs, delay.subsec_millis()) {
        (0, ms) => format!("{ms}ms"),
        (s, _) if s < 60 => format!("{s}s"),
        (s, _) if s % 60 == 0 => format!("{}m", s / 60),
        (s, _) => format!("{}m{}s", s / 60, s % 60),
    }
}

/// The pod phase, computed as the kubelet does from its containers.
pub fn pod_phase<'a>(
    policy: RestartPolicy,
    containers: impl IntoIterator<Item = &'a Lifecycle>,
) -> PodPhase {
    let (mut waiting, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for container in containers {
        let ended = match &container.state {
            State::Running { .. } => {
                running += 1;
                None
            }
            State::Terminated(t) => Some(t),
            // A container backing off after a run counts as stopped with that run's exit.
            State::Waiting { .. } => match &container.last_termination {
                Some(t) => Some(t),
                None => {
                    waiting += 1;
                    None
                }
            },
        };
        if let Some(t) = ended {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        }
    }
    if waiting > 0 {
        PodPhase::Pending
    } else if running > 0 {
        PodPhase::Running
    } else if stopped == 0 {
        PodPhase::Pending
    } else if policy == RestartPolicy::Always {
        PodPhase::Running
    } else if stopped == succeeded {
        PodPhase::Succeeded
    } else if policy == RestartPolicy::Never {
        PodPhase::Failed
    } else {
        PodPhase::Running
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1;
    const MINUTE: u64 = 60_000 * MS;

    fn backoff() -> Backoff {
        Backoff::with_base(Duration::from_secs(10))
    }

    fn exited(code: i32, at: u64) -> Event {
        Event::Exited {
            exit_code: code,
            reason: if code == 0 {
                TerminationReason::Completed
            } else {
                TerminationReason::Error
            },
            message: String::new(),
            at_unix_ms: at,
        }
    }

    fn started(at: u64) -> Event {
        Event::Started { at_unix_ms: at }
    }

    fn run_once(policy: RestartPolicy, code: i32) -> (Lifecycle, Next) {
        let mut c = Lifecycle::new();
        c.apply(started(100), policy, &backoff());
        let next = c.apply(exited(code, 200), policy, &backoff());
        (c, next)
    }

    #[test]
    fn a_new_container_is_waiting_for_its_module() {
        let c = Lifecycle::new();
        assert_eq!(
            c.status("main").state,
            ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new()
            }
        );
        assert!(!c.status("main").ready);
    }

    #[test]
    fn a_started_container_is_running_and_ready() {
        let mut c = Lifecycle::new();
        let next = c.apply(started(5), RestartPolicy::Never, &backoff());
        assert_eq!(next, Next::Continue);
        assert_eq!(c.state, State::Running { started_unix_ms: 5 });
        assert!(c.status("main").ready);
        assert_eq!(c.restart_count, 0);
    }

    #[test]
    fn a_container_with_a_startup_probe_is_starting_until_it_succeeds_in_each_run() {
        let mut c = Lifecycle::new().with_startup_probe();
        assert!(!c.is_starting(), "not running yet");
        c.apply(started(5), RestartPolicy::Always, &backoff());
        assert!(c.is_starting());
        c.set_probe_started();
        assert!(!c.is_starting());
        c.apply(exited(1, 6), RestartPolicy::Always, &backoff());
        c.apply(started(7), RestartPolicy::Always, &backoff());
        assert!(c.is_starting(), "the next run starts over");
        let mut plain = Lifecycle::new();
        plain.apply(started(5), RestartPolicy::Always, &backoff());
        assert!(
            !plain.is_starting(),
            "without a startup probe a running container started"
        );
    }

    #[test]
    fn a_container_gated_by_probes_is_ready_only_while_running_and_passing_each_run() {
        let mut c = Lifecycle::new().gated_by_probes();
        c.apply(started(5), RestartPolicy::Always, &backoff());
        assert!(!c.status("main").ready, "a gated run starts not ready");
        c.set_probe_ready(true);
        assert!(c.status("main").ready);
        c.apply(exited(1, 6), RestartPolicy::Always, &backoff());
        assert!(!c.status("main").ready, "not ready while backing off");
        c.apply(started(7), RestartPolicy::Always, &backoff());
        assert!(
            !c.status("main").ready,
            "the next run starts not ready again"
        );
        let mut ungated = Lifecycle::new();
        ungated.set_probe_ready(false);
        ungated.apply(started(5), RestartPolicy::Always, &backoff());
        assert!(
            ungated.status("main").ready,
            "without a gate the probes decide nothing"
        );
    }

    #[test]
    fn a_success_under_never_terminates_as_completed() {
        let (c, next) = run_once(RestartPolicy::Never, 0);
        assert_eq!(next, Next::Done);
        let State::Terminated(t) = &c.state else {
            panic!("not terminated: {:?}", c.state)
        };
        assert_eq!((t.exit_code, t.reason), (0, TerminationReason::Completed));
        assert_eq!((t.started_unix_ms, t.finished_unix_ms), (100, 200));
        assert_eq!(c.last_termination, None);
    }

    #[test]
    fn a_failure_under_never_terminates_with_its_exit_code() {
        let (c, next) = run_once(RestartPolicy::Never, 3);
        assert_eq!(next, Next::Done);
        assert!(matches!(&c.state, State::Terminated(t) if t.exit_code == 3));
    }

    #[test]
    fn a_first_failure_under_on_failure_restarts_at_once_then_backs_off() {
        let (mut c, next) = run_once(RestartPolicy::OnFailure, 3);
        assert_eq!(next, Next::RetryAfter(Duration::ZERO));
        assert_eq!(
            c.status("main").state,
            ContainerState::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new()
            },
            "no CrashLoopBackOff before the first restart"
        );
        assert_eq!(c.last_termination.as_ref().map(|t| t.exit_code), Some(3));
        c.apply(started(300), RestartPolicy::OnFailure, &backoff());
        assert_eq!(c.restart_count, 1);
        assert_eq!(
            c.status("main")
                .last_state
                .map(|s| matches!(s, ContainerState::Terminated { exit_code: 3, .. })),
            Some(true)
        );
        let next = c.apply(exited(4, 400), RestartPolicy::OnFailure, &backoff());
        assert_eq!(next, Next::RetryAfter(Duration::from_secs(10)));
        assert!(matches!(
            &c.state,
            State::Waiting { reason: WaitingReason::CrashLoopBackOff, message } if message.contains("10s")
        ));
        assert_eq!(c.restart_count, 1, "not restarted yet");
    }

    #[test]
    fn a_success_under_on_failure_is_done() {
        let (_, next) = run_once(RestartPolicy::OnFailure, 0);
        assert_eq!(next, Next::Done);
    }

    #[test]
    fn a_success_under_always_is_restarted() {
        let (c, next) = run_once(RestartPolicy::Always, 0);
        assert_eq!(next, Next::RetryAfter(Duration::ZERO));
        assert!(!c.is_done());
    }

    #[test]
    fn repeated_quick_crashes_restart_at_once_then_double_the_back_off_up_to_five_minutes() {
        let mut c = Lifecycle::new();
        let mut delays = Vec::new();
        for i in 0..8 {
            c.apply(started(i * MINUTE), RestartPolicy::Always, &backoff());
            match c.apply(exited(1, i * MINUTE + 1), RestartPolicy::Always, &backoff()) {
                Next::RetryAfter(d) => delays.push(d.as_secs()),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(delays, [0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(c.restart_count, 7);
    }

    #[test]
    fn a_run_of_ten_minutes_resets_the_back_off() {
        let mut c = Lifecycle::new();
        for i in 0..3 {
            c.apply(started(i), RestartPolicy::Always, &backoff());
            c.apply(exited(1, i + 1), RestartPolicy::Always, &backoff());
        }
        c.apply(started(1_000), RestartPolicy::Always, &backoff());
        let next = c.apply(
            exited(1, 1_000 + 10 * MINUTE),
            RestartPolicy::Always,
            &backoff(),
        );
        assert_eq!(next, Next::RetryAfter(Duration::ZERO), "restarted at once");
        c.apply(
            started(2_000 + 10 * MINUTE),
            RestartPolicy::Always,
            &backoff(),
        );
        let next = c.apply(
            exited(1, 2_001 + 10 * MINUTE),
            RestartPolicy::Always,
            &backoff(),
        );
        assert_eq!(next, Next::RetryAfter(Duration::from_secs(10)));
    }

    #[test]
    fn a_module_failure_waits_with_its_reason_and_backs_off() {
        let mut c = Lifecycle::new();
        let fail = || Event::ModuleFailed {
            reason: WaitingReason::ErrModulePull,
            message: "no such module".into(),
        };
        assert_eq!(
            c.apply(fail(), RestartPolicy::Never, &backoff()),
            Next::RetryAfter(Duration::from_secs(10))
        );
        assert_eq!(
            c.apply(fail(), RestartPolicy::Never, &backoff()),
            Next::RetryAfter(Duration::from_secs(20))
        );
        assert_eq!(
            c.status("main").state,
            ContainerState::Waiting {
                reason: "ErrModulePull".into(),
                message: "no such module".into()
            }
        );
        // A successful start is not a restart, and resets the module back-off.
        c.apply(started(1), RestartPolicy::Never, &backoff());
        assert_eq!(c.restart_count, 0);
        assert_eq!(
            c.apply(fail(), RestartPolicy::Never, &backoff()),
            Next::RetryAfter(Duration::from_secs(10))
        );
    }

    #[test]
    fn an_oom_kill_is_reported_with_its_reason() {
        let mut c = Lifecycle::new();
        c.apply(started(1), RestartPolicy::Never, &backoff());
        c.apply(
            Event::Exited {
                exit_code: 137,
                reason: TerminationReason::OomKilled,
                message: "memory limit exceeded".into(),
                at_unix_ms: 2,
            },
            RestartPolicy::Never,
            &backoff(),
        );
        assert!(matches!(
            c.status("main").state,
            ContainerState::Terminated { exit_code: 137, ref reason, .. } if reason == "OOMKilled"
        ));
    }

    #[test]
    fn a_status_survives_a_restore() {
        let (mut c, _) = run_once(RestartPolicy::OnFailure, 3);
        c.apply(started(300), RestartPolicy::OnFailure, &backoff());
        let restored = Lifecycle::restore(&c.status("main"));
        assert_eq!(restored.status("main"), c.status("main"));
    }

    #[test]
    fn a_restored_running_container_resumes_as_a_restart_with_an_unknown_last_state() {
        let mut c = Lifecycle::new();
        c.apply(started(100), RestartPolicy::Always, &backoff());
        let mut restored = Lifecycle::restore(&c.status("main"));
        restored.resume(500);
        assert!(matches!(
            restored.state,
            State::Waiting {
                reason: WaitingReason::ContainerCreating,
                ..
            }
        ));
        let last = restored.last_termination.clone().expect("last state");
        assert_eq!(
            (last.reason, last.exit_code),
            (TerminationReason::Unknown, 255)
        );
        restored.apply(started(600), RestartPolicy::Always, &backoff());
        assert_eq!(restored.restart_count, 1);
    }

    #[test]
    fn a_run_replaced_for_a_new_image_restarts_at_once_whatever_the_policy() {
        let mut c = Lifecycle::new();
        c.apply(started(100), RestartPolicy::Never, &backoff());
        let next = c.apply(
            Event::Replaced {
                message: "image changed".into(),
                at_unix_ms: 500,
            },
            RestartPolicy::Never,
            &backoff(),
        );
        assert_eq!(next, Next::Continue);
        assert_eq!(c.state, creating());
        let last = c.last_termination.clone().expect("last state");
        assert_eq!(
            (last.reason, last.exit_code, last.message.as_str()),
            (TerminationReason::Error, 137, "image changed")
        );
        assert_eq!((last.started_unix_ms, last.finished_unix_ms), (100, 500));
        c.apply(started(600), RestartPolicy::Never, &backoff());
        assert_eq!(c.restart_count, 1);
    }

    #[test]
    fn a_replaced_run_starts_a_new_back_off() {
        let mut c = Lifecycle::new();
        for i in 0..4 {
            c.apply(started(i), RestartPolicy::Always, &backoff());
            c.apply(exited(1, i + 1), RestartPolicy::Always, &backoff());
        }
        c.apply(started(10), RestartPolicy::Always, &backoff());
        let replaced = Event::Replaced {
            message: String::new(),
            at_unix_ms: 11,
        };
        c.apply(replaced, RestartPolicy::Always, &backoff());
        c.apply(started(12), RestartPolicy::Always, &backoff());
        let next = c.apply(exited(1, 13), RestartPolicy::Always, &backoff());
        assert_eq!(next, Next::RetryAfter(Duration::ZERO));
    }

    #[test]
    fn the_first_restart_does_not_wait_and_later_ones_double() {
        let delays: Vec<u64> = (0..5)
            .map(|n| backoff().restart_delay(n).as_secs())
            .collect();
        assert_eq!(delays, [0, 10, 20, 40, 80]);
        assert_eq!(backoff().restart_delay(u32::MAX), Duration::from_secs(300));
    }

    #[test]
    fn a_restored_terminated_container_stays_done() {
        let (c, _) = run_once(RestartPolicy::Never, 0);
        let mut restored = Lifecycle::restore(&c.status("main"));
        restored.resume(500);
        assert!(restored.is_done());
    }

    #[test]
    fn delays_print_like_kubernetes() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_secs(40)), "40s");
        assert_eq!(human(Duration::from_secs(160)), "2m40s");
        assert_eq!(human(Duration::from_secs(300)), "5m");
    }

    #[test]
    fn the_back_off_never_overflows() {
        assert_eq!(backoff().delay(u32::MAX), Duration::from_secs(300));
    }

    // --- pod phase ---

    fn waiting() -> Lifecycle {
        Lifecycle::new()
    }

    fn running() -> Lifecycle {
        let mut c = Lifecycle::new();
        c.apply(started(1), RestartPolicy::Always, &backoff());
        c
    }

    fn terminated(code: i32) -> Lifecycle {
        run_once(RestartPolicy::Never, code).0
    }

    fn backing_off(code: i32) -> Lifecycle {
        run_once(RestartPolicy::Always, code).0
    }

    #[test]
    fn a_pod_with_a_container_still_creating_is_pending() {
        assert_eq!(
            pod_phase(RestartPolicy::Always, &[running(), waiting()]),
            PodPhase::Pending
        );
    }

    #[test]
    fn a_pod_with_no_containers_is_pending() {
        assert_eq!(pod_phase(RestartPolicy::Always, &[]), PodPhase::Pending);
    }

    #[test]
    fn a_pod_with_a_running_container_is_running() {
        assert_eq!(
            pod_phase(RestartPolicy::Never, &[running(), terminated(1)]),
            PodPhase::Running
        );
    }

    #[test]
    fn a_pod_whose_containers_all_succeeded_is_succeeded() {
        for policy in [RestartPolicy::Never, RestartPolicy::OnFailure] {
            assert_eq!(
                pod_phase(policy, &[terminated(0), terminated(0)]),
                PodPhase::Succeeded
            );
        }
    }

    #[test]
    fn a_never_pod_with_a_failed_container_is_failed() {
        assert_eq!(
            pod_phase(RestartPolicy::Never, &[terminated(0), terminated(3)]),
            PodPhase::Failed
        );
    }

    #[test]
    fn an_on_failure_pod_restarting_a_failed_container_is_running() {
        let mut c = Lifecycle::new();
        c.apply(started(1), RestartPolicy::OnFailure, &backoff());
        c.apply(exited(1, 2), RestartPolicy::OnFailure, &backoff());
        assert_eq!(pod_phase(RestartPolicy::OnFailure, &[c]), PodPhase::Running);
    }

    #[test]
    fn an_always_pod_between_restarts_is_running() {
        assert_eq!(
            pod_phase(RestartPolicy::Always, &[backing_off(0)]),
            PodPhase::Running
        );
        assert_eq!(
            pod_phase(RestartPolicy::Always, &[backing_off(1)]),
            PodPhase::Running
        );
    }

    #[test]
    fn a_pod_failing_to_pull_its_first_module_is_pending() {
        let mut c = Lifecycle::new();
        c.apply(
            Event::ModuleFailed {
                reason: WaitingReason::ErrModulePull,
                message: "x".into(),
            },
            RestartPolicy::Never,
            &backoff(),
        );
        assert_eq!(pod_phase(RestartPolicy::Never, &[c]), PodPhase::Pending);
    }
}
