//! Where the time of a pod's start goes, read back from the processes' own logs (for the
//! benchmark tools, not for tests).
//!
//! The server and the agent log each step of a pod's start at debug level (the default
//! filter of spawned processes), each line led by its time. A [`Step`] names the process
//! and the words of its line; [`Timeline::trace`] finds each step's first line after the
//! step before it, so a chain of causally ordered steps becomes a list of times. All the
//! processes run on this machine, so their clocks agree.

use std::path::Path;

use jiff::Timestamp;

/// One step of a chain: the first line of `log` after the previous step that contains
/// `words` (and `filter`, when given).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// What the step is, for the report.
    pub label: &'static str,
    /// Which log: [`Source::Server`] or [`Source::Agent`].
    pub log: Source,
    /// The words of its line.
    pub words: &'static str,
    /// Whether the line must also name the pod (its uid, or `NAMESPACE/NAME`).
    pub names_pod: bool,
}

/// Which process wrote a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The server.
    Server,
    /// The agent.
    Agent,
}

/// The lines of the server's and one agent's logs, with their times.
pub struct Timeline {
    server: Vec<(Timestamp, String)>,
    agent: Vec<(Timestamp, String)>,
}

impl Timeline {
    /// Reads `server.log` and `agent-NODE.log` from `dir`.
    pub fn read(dir: &Path, node: &str) -> std::io::Result<Timeline> {
        Ok(Timeline {
            server: lines(&dir.join("server.log"))?,
            agent: lines(&dir.join(format!("agent-{node}.log")))?,
        })
    }

    /// The time of each of `steps`, in order, starting after `start`; `pod` is the text a
    /// step that names the pod must contain. A step not found is `None`, and the search
    /// goes on from the last step found.
    pub fn trace(&self, start: Timestamp, steps: &[Step], pod: &[&str]) -> Vec<Option<Timestamp>> {
        let mut after = start;
        steps
            .iter()
            .map(|step| {
                let log = match step.log {
                    Source::Server => &self.server,
                    Source::Agent => &self.agent,
                };
                let found = log.iter().find(|(at, text)| {
                    *at >= after
                        && text.contains(step.words)
                        && (!step.names_pod || pod.iter().any(|p| text.contains(p)))
                });
                let at = found.map(|(at, _)| *at);
                after = at.unwrap_or(after);
                at
            })
            .collect()
    }
}

/// The lines of a log that start with a time, without colour codes.
fn lines(path: &Path) -> std::io::Result<Vec<(Timestamp, String)>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let plain = without_colours(line);
            let (at, rest) = plain.split_once(' ')?;
            Some((at.parse().ok()?, rest.to_owned()))
        })
        .collect())
}

/// `line` without ANSI escape sequences (`ESC [ ... letter`).
fn without_colours(line: &str) -> String {
    let mut plain = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|c| c.is_ascii_alphabetic());
        } else {
            plain.push(c);
        }
    }
    plain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_codes_are_removed() {
        let line = "\u{1b}[2m2026-12-07T20:55:01.123456Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m x";
        assert_eq!(without_colours(line), "2026-12-07T20:55:01.123456Z  INFO x");
    }

    #[test]
    fn each_step_is_searched_after_the_one_before() {
        let at = |s: &str| s.parse::<Timestamp>().unwrap();
        let timeline = Timeline {
            server: vec![
                (at("2026-01-01T00:00:01Z"), "b pod=ns/p".into()),
                (at("2026-01-01T00:00:03Z"), "a".into()),
            ],
            agent: vec![(at("2026-01-01T00:00:02Z"), "a uid=1".into())],
        };
        let step = |label, log, words, names_pod| Step {
            label,
            log,
            words,
            names_pod,
        };
        let steps = [
            step("b", Source::Server, "b", true),
            step("a agent", Source::Agent, "a", true),
            step("a server", Source::Server, "a", false),
            step("missing", Source::Agent, "zzz", false),
        ];
        let times = timeline.trace(at("2026-01-01T00:00:00Z"), &steps, &["pod=ns/p", "uid=1"]);
        assert_eq!(
            times,
            vec![
                Some(at("2026-01-01T00:00:01Z")),
                Some(at("2026-01-01T00:00:02Z")),
                Some(at("2026-01-01T00:00:03Z")),
                None
            ]
        );
    }
}
