//! Evidence of what really runs: the container log files agents write under
//! `<agent data dir>/logs/<pod uid>/main.log` (one `{unix nanos} {run} {text}` record per
//! line), read from the outside.
//!
//! Chaos pods run the exerciser's `print N`, which writes `line 1`, `line 2`, ... one every
//! 100 ms. So in one log file every line is either the next number (the same run) or
//! `line 1` (a new run: a restart). Two instances of one pod on one agent (say, a restarted
//! agent that also kept or resumed a stale copy) interleave their numbers, which shows as any
//! other step. A pod's log directory on two agents means the pod ran on two nodes (pods never
//! move). Both are checked at every scan, and a scan runs every 200 ms during the rounds.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The container name chaos pods use.
const CONTAINER_LOG: &str = "main.log";

/// What one container log file showed so far.
#[derive(Debug, Clone, Default)]
pub struct LogState {
    offset: u64,
    partial: String,
    last: Option<u64>,
    /// `line N` lines read.
    pub lines: u64,
    /// Runs seen (each `line 1` starts one).
    pub runs: u64,
}

impl LogState {
    /// Takes one line of the log; `Err` with a description when it breaks the sequence.
    pub fn take(&mut self, record: &str) -> Result<(), String> {
        // A line torn by a SIGKILL mid-write does not parse and is skipped.
        let Some(n) = text_of(record)
            .strip_prefix("line ")
            .and_then(|n| n.trim().parse::<u64>().ok())
        else {
            return Ok(());
        };
        self.lines += 1;
        if n == 1 {
            self.runs += 1;
        }
        let previous = self.last.replace(n);
        match previous {
            Some(p) if n != 1 && n != p + 1 => Err(format!(
                "line {n} follows line {p}: two instances of the pod interleave"
            )),
            _ => Ok(()),
        }
    }
}

/// The log files of every agent, and the violations they showed.
#[derive(Debug)]
pub struct LogWatch {
    nodes: Vec<(String, PathBuf)>,
    files: BTreeMap<(String, String), LogState>,
    present: BTreeMap<String, BTreeSet<String>>,
    home: BTreeMap<String, String>,
    violations: Vec<String>,
}

impl LogWatch {
    /// Watches the agents `nodes` (name, data dir).
    pub fn new(nodes: Vec<(String, PathBuf)>) -> LogWatch {
        LogWatch {
            nodes,
            files: BTreeMap::new(),
            present: BTreeMap::new(),
            home: BTreeMap::new(),
            violations: Vec::new(),
        }
    }

    /// Reads what every log file gained since the last scan.
    pub fn scan(&mut self) {
        for (node, data_dir) in self.nodes.clone() {
            let uids = list_uids(&data_dir.join("logs"));
            self.files
                .retain(|(n, uid), _| *n != node || uids.contains(uid));
            for uid in &uids {
                self.check_home(&node, uid);
                let path = data_dir.join("logs").join(uid).join(CONTAINER_LOG);
                let state = self.files.entry((node.clone(), uid.clone())).or_default();
                if let Err(problem) = read_new_lines(&path, state) {
                    self.violations
                        .push(format!("pod uid {uid} on {node}: {problem}"));
                }
            }
            self.present.insert(node, uids);
        }
    }

    /// The pod uids with a log directory on `node` at the last scan.
    pub fn uids_on(&self, node: &str) -> BTreeSet<String> {
        self.present.get(node).cloned().unwrap_or_default()
    }

    /// What pod `uid`'s log on `node` showed.
    pub fn log(&self, node: &str, uid: &str) -> Option<&LogState> {
        self.files.get(&(node.to_owned(), uid.to_owned()))
    }

    /// The violations seen since the last call.
    pub fn take_violations(&mut self) -> Vec<String> {
        std::mem::take(&mut self.violations)
    }

    fn check_home(&mut self, node: &str, uid: &str) {
        let home = self
            .home
            .entry(uid.to_owned())
            .or_insert_with(|| node.to_owned());
        if home != node {
            let message = format!("pod uid {uid} ran on {home} and on {node}");
            if !self.violations.contains(&message) {
                self.violations.push(message);
            }
        }
    }
}

fn list_uids(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|entry| entry.path().is_dir())
                .filter_map(|entry| entry.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The text of a log file record: what follows its time and run (a record without them is
/// all text).
fn text_of(record: &str) -> &str {
    let mut fields = record.splitn(3, ' ');
    match (fields.next(), fields.next(), fields.next()) {
        (Some(at), Some(run), Some(text))
            if at.parse::<i64>().is_ok() && run.parse::<u32>().is_ok() =>
        {
            text
        }
        _ => record,
    }
}

/// Feeds the lines appended to `path` since `state.offset` into `state` (starting over when
/// the file was replaced by a shorter one).
fn read_new_lines(path: &Path, state: &mut LogState) -> Result<(), String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Ok(());
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len < state.offset {
        *state = LogState::default();
    }
    let mut bytes = Vec::new();
    let read = file
        .seek(SeekFrom::Start(state.offset))
        .and_then(|_| file.read_to_end(&mut bytes));
    if read.is_err() {
        return Ok(());
    }
    state.offset += bytes.len() as u64;
    state.partial.push_str(&String::from_utf8_lossy(&bytes));
    let Some(end) = state.partial.rfind('\n') else {
        return Ok(());
    };
    let complete: String = state.partial.drain(..=end).collect();
    let mut problems = Vec::new();
    for line in complete.lines() {
        if let Err(problem) = state.take(line) {
            problems.push(problem);
        }
    }
    match problems.first() {
        Some(first) => Err(first.clone()),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(lines: &[&str]) -> (LogState, Vec<String>) {
        let mut state = LogState::default();
        let errors = lines.iter().filter_map(|l| state.take(l).err()).collect();
        (state, errors)
    }

    #[test]
    fn runs_and_restarts_are_fine() {
        let (state, errors) = feed(&["line 1", "line 2", "line 3", "line 1", "line 2"]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((state.lines, state.runs), (5, 2));
    }

    #[test]
    fn interleaved_instances_are_caught() {
        let (_, errors) = feed(&["line 1", "line 2", "line 1", "line 3", "line 2"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn records_are_read_past_their_time_and_run() {
        let (state, errors) = feed(&[
            "1796601601500000000 1 line 1",
            "1796601601600000000 1 line 2",
            "1796601601700000000 2 line 1",
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!((state.lines, state.runs), (3, 2));
    }

    #[test]
    fn torn_lines_are_skipped() {
        let (state, errors) = feed(&["line 1", "lin", "line 1", "line 2"]);
        assert!(errors.is_empty());
        assert_eq!(state.runs, 2);
    }

    #[test]
    fn a_pod_on_two_nodes_is_caught() {
        let dir = tempfile::tempdir().expect("temp dir");
        for node in ["a", "b"] {
            let pod = dir.path().join(node).join("logs/uid-1");
            std::fs::create_dir_all(&pod).expect("mkdir");
            std::fs::write(pod.join(CONTAINER_LOG), "line 1\nline 2\n").expect("write");
        }
        let mut watch = LogWatch::new(vec![
            ("a".into(), dir.path().join("a")),
            ("b".into(), dir.path().join("b")),
        ]);
        watch.scan();
        let violations = watch.take_violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(watch.log("a", "uid-1").map(|l| l.lines), Some(2));
    }

    #[test]
    fn appended_lines_are_read_incrementally() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pod = dir.path().join("logs/u");
        std::fs::create_dir_all(&pod).expect("mkdir");
        let log = pod.join(CONTAINER_LOG);
        std::fs::write(&log, "line 1\nline").expect("write");
        let mut watch = LogWatch::new(vec![("a".into(), dir.path().to_owned())]);
        watch.scan();
        assert_eq!(watch.log("a", "u").map(|l| l.lines), Some(1));
        std::fs::write(&log, "line 1\nline 2\nline 3\n").expect("write");
        watch.scan();
        assert_eq!(watch.log("a", "u").map(|l| l.lines), Some(3));
        assert!(watch.take_violations().is_empty());
    }
}
