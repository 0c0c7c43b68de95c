//! A container's log: a bounded buffer of recent lines plus a broadcast of new ones.
//!
//! The guest's stdout and stderr are both written here (as `kubectl logs` shows them
//! interleaved). Bytes are cut into lines as they arrive; a line longer than
//! [`MAX_LINE_BYTES`] is truncated. The buffer keeps the last [`MAX_LINES`] lines and at most
//! [`MAX_BUFFER_BYTES`], dropping the oldest first. The buffer outlives a single run of the
//! container, so logs survive restarts; it is *finished* once the container will never run
//! again, which ends every follower.
//!
//! Each line carries the time it was read and the *run* of the container that wrote it
//! ([`LogBuffer::begin_run`] starts the next one), so a request ([`LogSelection`]) can ask
//! for the current run's lines or the previous run's (`kubectl logs --previous`), lines
//! since a time, and their times (`--timestamps`).
//!
//! A *persistent* buffer ([`LogBuffer::persistent`]) also appends every line to a
//! [`LogFile`] (as `{unix nanos} {run} {text}`) and starts from that file's newest lines,
//! so the log survives an agent restart too. Disk trouble never reaches the guest: the first I/O error is logged as a
//! warning and the buffer carries on in memory only.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::broadcast;

use super::logfile::{self, LogFile};

/// The most lines kept per container.
pub const MAX_LINES: usize = 5_000;
/// The most bytes of line text kept per container.
pub const MAX_BUFFER_BYTES: usize = 1 << 20;
/// Longer lines are truncated to this many bytes.
pub const MAX_LINE_BYTES: usize = 16 << 10;
/// How many new lines a slow follower may fall behind before it skips some.
const FOLLOW_CAPACITY: usize = 1024;
/// The most bytes a line's time and run add to it in the log file.
const RECORD_OVERHEAD: usize = 32;

/// One line of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// When the agent read it, in nanoseconds since the Unix epoch (0 when not known: a line
    /// persisted before times were recorded).
    pub at_unix_nanos: i64,
    /// The run of the container that wrote it: 1 for the first run this log recorded (0 for
    /// lines persisted before runs were recorded).
    pub run: u32,
    /// The text, without its newline.
    pub text: Arc<str>,
}

impl LogLine {
    /// The line as the log file keeps it: `{unix nanos} {run} {text}`.
    fn record(&self) -> String {
        format!("{} {} {}", self.at_unix_nanos, self.run, self.text)
    }

    /// A line read back from the log file. A record without the time and run prefix (the
    /// file of an older agent) is all text, of unknown time and run 0.
    fn parse(record: &str) -> Self {
        let parsed = record.split_once(' ').and_then(|(at, rest)| {
            let (run, text) = rest.split_once(' ')?;
            Some((at.parse().ok()?, run.parse().ok()?, text))
        });
        let (at_unix_nanos, run, text) = parsed.unwrap_or((0, 0, record));
        LogLine {
            at_unix_nanos,
            run,
            text: Arc::from(truncate(text, MAX_LINE_BYTES)),
        }
    }
}

/// Which lines of a log a reader wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogSelection {
    /// Only the last N of the selected lines.
    pub tail: Option<usize>,
    /// Keep receiving new lines (not with `previous`: that run is over).
    pub follow: bool,
    /// The previous run's lines instead of the current run's: the run before the running
    /// one, or, while the container waits to run again, the run that ended last.
    pub previous: bool,
    /// Only lines read at or after this time (nanoseconds since the Unix epoch).
    pub since_unix_nanos: Option<i64>,
}

/// There is no previous run to show (`--previous` of a container that never restarted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the container has no previous terminated run")]
pub struct NoPreviousRun;

/// What followers receive.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// A new complete line.
    Line(LogLine),
    /// The container will not run again; no more lines will come.
    Finished,
}

/// A cheap, cloneable handle to one container's log.
#[derive(Debug, Clone)]
pub struct LogBuffer {
    inner: Arc<Mutex<LogState>>,
}

#[derive(Debug)]
struct LogState {
    lines: VecDeque<LogLine>,
    bytes: usize,
    // The newest run that began (or, before any began, the newest run in the file).
    run: u32,
    // Whether that run is still going.
    running: bool,
    finished: bool,
    // Where lines are also written; `None` for a memory-only log, and after a write error.
    file: Option<LogFile>,
    // Sent to under the same lock that appends to `lines`, so a subscriber that takes its
    // snapshot under the lock sees every line exactly once.
    events: broadcast::Sender<LogEvent>,
}

/// The retained lines at one moment, and (when following) the lines that come after them.
#[derive(Debug)]
pub struct LogSnapshot {
    /// The selected lines, oldest first.
    pub lines: Vec<LogLine>,
    /// New lines after `lines`; `None` when not following or already finished.
    pub follow: Option<broadcast::Receiver<LogEvent>>,
}

impl Default for LogBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LogBuffer {
    /// An empty, unfinished, memory-only log.
    pub fn new() -> Self {
        Self::with_file(None)
    }

    /// A log kept in memory and appended to the file at `path` (see [`LogFile`]), starting
    /// with the newest lines already there (from an earlier run of the agent). The file
    /// and its directory are created on the first line. If the file cannot be read, that
    /// is logged and the log starts empty.
    pub fn persistent(path: impl Into<PathBuf>) -> Self {
        let path = path.into();
        // File bytes include each line's time, run and newline, which the memory budget does
        // not count.
        let budget = (MAX_BUFFER_BYTES + MAX_LINES * RECORD_OVERHEAD) as u64;
        let previous = logfile::read_tail(&path, budget).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "cannot read the persisted container log; starting it empty");
            Vec::new()
        });
        let buffer = Self::with_file(Some(LogFile::new(path)));
        {
            let mut state = buffer.lock();
            for record in previous {
                let line = LogLine::parse(&record);
                state.run = state.run.max(line.run);
                state.retain(line);
            }
        }
        buffer
    }

    fn with_file(file: Option<LogFile>) -> Self {
        let (events, _) = broadcast::channel(FOLLOW_CAPACITY);
        Self {
            inner: Arc::new(Mutex::new(LogState {
                lines: VecDeque::new(),
                bytes: 0,
                run: 0,
                running: false,
                finished: false,
                file,
                events,
            })),
        }
    }

    /// Appends one line (truncating it if too long), tells followers, and flushes it to
    /// the log file, if any.
    pub fn push_line(&self, line: &str) {
        let mut state = self.lock();
        state.push(line);
        state.flush_file();
    }

    /// Appends one line without flushing the file: for a batch of lines that ends with
    /// [`LogBuffer::flush`].
    fn push_unflushed(&self, line: &str) {
        self.lock().push(line);
    }

    /// Hands buffered lines to the log file, if any.
    fn flush(&self) {
        self.lock().flush_file();
    }

    /// Stops writing to the log file (flushing what is buffered): from now on the log is
    /// in memory only. Call before deleting the file, so nothing re-creates it.
    pub fn detach_file(&self) {
        let mut state = self.lock();
        state.flush_file();
        state.file = None;
    }

    /// A new run of the container begins: the lines from now on are its.
    pub fn begin_run(&self) {
        let mut state = self.lock();
        state.run += 1;
        state.running = true;
    }

    /// The current run ended (the container exited or was killed).
    pub fn end_run(&self) {
        self.lock().running = false;
    }

    /// Marks the log finished: followers end after the lines they already have.
    pub fn finish(&self) {
        let mut state = self.lock();
        state.flush_file();
        state.running = false;
        if !state.finished {
            state.finished = true;
            let _ = state.events.send(LogEvent::Finished);
        }
    }

    /// Whether [`LogBuffer::finish`] was called.
    pub fn is_finished(&self) -> bool {
        self.lock().finished
    }

    /// The lines `selection` asks for, and a follower when it follows and the log is not
    /// finished.
    pub fn snapshot(&self, selection: &LogSelection) -> Result<LogSnapshot, NoPreviousRun> {
        let state = self.lock();
        let run = state.selected_run(selection.previous)?;
        let since = selection.since_unix_nanos.unwrap_or(i64::MIN);
        let mut lines: Vec<LogLine> = state
            .lines
            .iter()
            .filter(|l| l.run == run && l.at_unix_nanos >= since)
            .cloned()
            .collect();
        if let Some(tail) = selection.tail {
            lines.drain(..lines.len().saturating_sub(tail));
        }
        let follow = selection.follow && !selection.previous && !state.finished;
        let follow = follow.then(|| state.events.subscribe());
        Ok(LogSnapshot { lines, follow })
    }

    /// The text of every retained line of every run, oldest first.
    pub fn lines(&self) -> Vec<String> {
        let state = self.lock();
        state.lines.iter().map(|l| l.text.to_string()).collect()
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding this lock cannot leave the state inconsistent in a way that
        // matters for logs, so a poisoned lock is simply taken over.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LogState {
    fn push(&mut self, text: &str) {
        let line = LogLine {
            at_unix_nanos: now_unix_nanos(),
            run: self.run,
            text: Arc::from(truncate(text, MAX_LINE_BYTES)),
        };
        self.write_file(&line);
        self.retain(line.clone());
        // No receivers is normal (nobody follows); nothing to do then.
        let _ = self.events.send(LogEvent::Line(line));
    }

    /// The run a selection shows: the newest, or with `previous` the one before the running
    /// one (or, between runs, the one that ended last).
    fn selected_run(&self, previous: bool) -> Result<u32, NoPreviousRun> {
        if !previous {
            return Ok(self.run);
        }
        let between_runs = !self.running && !self.finished;
        let run = if between_runs {
            self.run
        } else {
            self.run.saturating_sub(1)
        };
        if run == 0 {
            Err(NoPreviousRun)
        } else {
            Ok(run)
        }
    }

    /// Keeps `line`, dropping the oldest lines beyond the bounds.
    fn retain(&mut self, line: LogLine) {
        self.bytes += line.text.len();
        self.lines.push_back(line);
        while self.lines.len() > MAX_LINES || self.bytes > MAX_BUFFER_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.text.len(),
                None => break,
            }
        }
    }

    fn write_file(&mut self, line: &LogLine) {
        if let Some(file) = &mut self.file {
            let result = file.append(&line.record());
            self.check(result);
        }
    }

    fn flush_file(&mut self) {
        if let Some(file) = &mut self.file {
            let result = file.flush();
            self.check(result);
        }
    }

    /// After a file error, warns once and goes on in memory only: a full or broken disk
    /// must not stop the guest, and retrying every line would flood the agent's log.
    fn check(&mut self, result: std::io::Result<()>) {
        if let Err(error) = result {
            let path = self.file.take().map(|f| f.path().to_path_buf());
            let path = path.as_deref().unwrap_or(Path::new("?")).display();
            tracing::warn!(%path, %error, "cannot write the container log file; keeping this log in memory only");
        }
    }
}

/// Cuts raw output bytes into lines. One per output stream, so that stdout and stderr
/// do not splice into each other's partial lines.
#[derive(Debug)]
pub struct LineSplitter {
    buffer: LogBuffer,
    partial: Vec<u8>,
    // Set once the current line hit the length limit: the rest of it is dropped.
    overflowed: bool,
}

impl LineSplitter {
    /// A splitter writing complete lines into `buffer`.
    pub fn new(buffer: LogBuffer) -> Self {
        Self {
            buffer,
            partial: Vec::new(),
            overflowed: false,
        }
    }

    /// Takes some output bytes. The complete lines among them reach the log file as one
    /// batch (one flush per write, not per line).
    pub fn write(&mut self, mut bytes: &[u8]) {
        let mut emitted = false;
        while let Some(pos) = bytes.iter().position(|b| *b == b'\n') {
            self.append(&bytes[..pos]);
            self.emit();
            emitted = true;
            bytes = &bytes[pos + 1..];
        }
        self.append(bytes);
        if emitted {
            self.buffer.flush();
        }
    }

    /// Emits a trailing partial line, if any (the stream ended without a newline).
    pub fn flush(&mut self) {
        if !self.partial.is_empty() || self.overflowed {
            self.emit();
            self.buffer.flush();
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        if bytes.len() > room {
            self.overflowed = true;
        }
        self.partial
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn emit(&mut self) {
        let text = String::from_utf8_lossy(&self.partial);
        let text = text.strip_suffix('\r').unwrap_or(&text);
        self.buffer.push_unflushed(text);
        self.partial.clear();
        self.overflowed = false;
    }
}

impl Drop for LineSplitter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Now, in nanoseconds since the Unix epoch (0 for a clock before it).
fn now_unix_nanos() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

/// The longest prefix of `line` that fits in `max` bytes and ends on a char boundary.
fn truncate(line: &str, max: usize) -> &str {
    if line.len() <= max {
        return line;
    }
    let mut end = max;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_split_into_lines_across_writes() {
        let buffer = LogBuffer::new();
        let mut splitter = LineSplitter::new(buffer.clone());
        splitter.write(b"hel");
        splitter.write(b"lo\nwor");
        splitter.write(b"ld\r\n\nlast");
        assert_eq!(buffer.lines(), ["hello", "world", ""]);
        drop(splitter);
        assert_eq!(buffer.lines(), ["hello", "world", "", "last"]);
    }

    #[test]
    fn an_overlong_line_is_truncated_and_the_next_line_is_intact() {
        let buffer = LogBuffer::new();
        let mut splitter = LineSplitter::new(buffer.clone());
        splitter.write(&vec![b'x'; MAX_LINE_BYTES + 100]);
        splitter.write(b"tail\nnext\n");
        let lines = buffer.lines();
        assert_eq!(lines[0].len(), MAX_LINE_BYTES);
        assert_eq!(lines[1], "next");
    }

    #[test]
    fn the_buffer_keeps_only_the_newest_lines() {
        let buffer = LogBuffer::new();
        for i in 0..MAX_LINES + 10 {
            buffer.push_line(&i.to_string());
        }
        let lines = buffer.lines();
        assert_eq!(lines.len(), MAX_LINES);
        assert_eq!(lines[0], "10");
    }

    #[test]
    fn the_buffer_keeps_at_most_its_byte_budget() {
        let buffer = LogBuffer::new();
        let line = "y".repeat(MAX_LINE_BYTES);
        for _ in 0..(MAX_BUFFER_BYTES / MAX_LINE_BYTES) + 5 {
            buffer.push_line(&line);
        }
        assert_eq!(buffer.lines().len(), MAX_BUFFER_BYTES / MAX_LINE_BYTES);
    }

    #[test]
    fn a_tail_returns_the_last_lines_only() {
        let buffer = LogBuffer::new();
        for line in ["a", "b", "c"] {
            buffer.push_line(line);
        }
        assert_eq!(texts(&buffer, &tail(2)), ["b", "c"]);
        assert_eq!(texts(&buffer, &tail(10)), ["a", "b", "c"]);
    }

    fn tail(n: usize) -> LogSelection {
        LogSelection {
            tail: Some(n),
            ..LogSelection::default()
        }
    }

    fn texts(buffer: &LogBuffer, selection: &LogSelection) -> Vec<String> {
        let snapshot = buffer.snapshot(selection).expect("selectable");
        snapshot.lines.iter().map(|l| l.text.to_string()).collect()
    }

    const PREVIOUS: LogSelection = LogSelection {
        tail: None,
        follow: false,
        previous: true,
        since_unix_nanos: None,
    };

    #[test]
    fn the_current_run_is_shown_and_previous_shows_the_one_before() {
        let buffer = LogBuffer::new();
        assert_eq!(buffer.snapshot(&PREVIOUS).err(), Some(NoPreviousRun));
        buffer.begin_run();
        buffer.push_line("first run");
        assert_eq!(buffer.snapshot(&PREVIOUS).err(), Some(NoPreviousRun));
        buffer.end_run();
        // Waiting to run again: both show the run that ended, as the kubelet does.
        assert_eq!(texts(&buffer, &LogSelection::default()), ["first run"]);
        assert_eq!(texts(&buffer, &PREVIOUS), ["first run"]);
        buffer.begin_run();
        buffer.push_line("second run");
        assert_eq!(texts(&buffer, &LogSelection::default()), ["second run"]);
        assert_eq!(texts(&buffer, &PREVIOUS), ["first run"]);
        buffer.end_run();
        buffer.finish();
        assert_eq!(texts(&buffer, &PREVIOUS), ["first run"]);
        assert_eq!(buffer.lines(), ["first run", "second run"]);
    }

    #[test]
    fn since_keeps_only_lines_read_from_then() {
        let buffer = LogBuffer::new();
        buffer.begin_run();
        buffer.push_line("before");
        let cut = buffer
            .snapshot(&LogSelection::default())
            .expect("lines")
            .lines[0]
            .at_unix_nanos
            + 1;
        std::thread::sleep(std::time::Duration::from_millis(2));
        buffer.push_line("after");
        let since = LogSelection {
            since_unix_nanos: Some(cut),
            ..LogSelection::default()
        };
        assert_eq!(texts(&buffer, &since), ["after"]);
    }

    #[test]
    fn runs_and_times_survive_a_reload_and_old_files_read_as_plain_text() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("main.log");
        std::fs::write(&path, "written by an older agent\n").expect("write");
        let buffer = LogBuffer::persistent(&path);
        buffer.begin_run();
        buffer.push_line("run one");
        buffer.end_run();
        buffer.begin_run();
        buffer.push_line("run two has spaces");
        buffer.finish();

        let reloaded = LogBuffer::persistent(&path);
        assert_eq!(
            texts(&reloaded, &LogSelection::default()),
            ["run two has spaces"]
        );
        assert_eq!(texts(&reloaded, &PREVIOUS), ["run two has spaces"]);
        let all = reloaded.snapshot(&LogSelection::default()).expect("lines");
        assert!(all.lines[0].at_unix_nanos > 1_700_000_000_000_000_000);
        assert_eq!(
            reloaded.lines(),
            ["written by an older agent", "run one", "run two has spaces"]
        );
        reloaded.begin_run();
        assert_eq!(texts(&reloaded, &PREVIOUS), ["run two has spaces"]);
    }

    #[test]
    fn a_follower_sees_new_lines_and_then_the_end() {
        let buffer = LogBuffer::new();
        buffer.push_line("old");
        let following = LogSelection {
            follow: true,
            ..LogSelection::default()
        };
        let snapshot = buffer.snapshot(&following).expect("current run");
        let mut follow = snapshot.follow.expect("follower");
        buffer.push_line("new");
        buffer.finish();
        assert!(matches!(follow.try_recv(), Ok(LogEvent::Line(l)) if &*l.text == "new"));
        assert!(matches!(follow.try_recv(), Ok(LogEvent::Finished)));
    }

    #[test]
    fn a_persistent_log_starts_with_the_lines_of_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("uid").join("main.log");
        let first = LogBuffer::persistent(&path);
        let mut splitter = LineSplitter::new(first.clone());
        splitter.write(b"one\ntwo\npartial");
        drop(splitter);
        first.finish();

        let second = LogBuffer::persistent(&path);
        assert_eq!(second.lines(), ["one", "two", "partial"]);
        second.push_line("three");
        assert_eq!(
            LogBuffer::persistent(&path).lines(),
            ["one", "two", "partial", "three"]
        );
    }

    #[test]
    fn a_persistent_log_keeps_only_its_bounds_when_reloaded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("main.log");
        let buffer = LogBuffer::persistent(&path);
        for i in 0..MAX_LINES + 10 {
            buffer.push_line(&i.to_string());
        }
        let reloaded = LogBuffer::persistent(&path).lines();
        assert_eq!(reloaded.len(), MAX_LINES);
        assert_eq!(reloaded.first().map(String::as_str), Some("10"));
    }

    #[test]
    fn an_unwritable_log_file_leaves_the_log_working_in_memory() {
        let dir = tempfile::tempdir().expect("temp dir");
        let not_a_dir = dir.path().join("file");
        std::fs::write(&not_a_dir, b"").expect("write");
        let buffer = LogBuffer::persistent(not_a_dir.join("main.log"));
        buffer.push_line("still");
        buffer.push_line("here");
        assert_eq!(buffer.lines(), ["still", "here"]);
        assert!(buffer.lock().file.is_none(), "gave up on the file");
    }

    #[test]
    fn a_detached_log_no_longer_writes_its_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("pod").join("main.log");
        let buffer = LogBuffer::persistent(&path);
        buffer.push_line("kept");
        buffer.detach_file();
        std::fs::remove_dir_all(dir.path().join("pod")).expect("remove");
        buffer.push_line("memory only");
        assert!(!path.exists());
        assert_eq!(buffer.lines(), ["kept", "memory only"]);
    }

    #[test]
    fn following_a_finished_log_gives_no_follower() {
        let buffer = LogBuffer::new();
        buffer.finish();
        let following = LogSelection {
            follow: true,
            ..LogSelection::default()
        };
        let snapshot = buffer.snapshot(&following).expect("current run");
        assert!(snapshot.follow.is_none());
    }
}
