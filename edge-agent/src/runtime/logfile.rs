//! A container's log on disk, so that it survives an agent restart (as kubelet keeps
//! container logs in files).
//!
//! The log is plain text, one line per line, in two segments: `NAME.log` (appended to) and
//! `NAME.log.1` (the previous segment). When appending would grow `NAME.log` past
//! [`SEGMENT_BYTES`], it is renamed over `NAME.log.1` and a fresh `NAME.log` is started, so
//! the files never hold more than about 2 × [`SEGMENT_BYTES`] and always the newest
//! [`SEGMENT_BYTES`] or more. Rotating is a rename, not a copy, so it costs the same
//! however much the guest prints.
//!
//! Writes go through a [`BufWriter`] that the owner flushes after each batch of lines, so
//! a killed agent loses at most the batch being written. A line torn by such a kill is
//! ended with a newline when the file is next opened, so the next line starts cleanly.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The size at which the current segment is rotated.
pub const SEGMENT_BYTES: u64 = 1 << 20;

/// An append-only, rotating log file. The file is opened (and its directory created) on
/// the first append, so a container that never prints leaves nothing on disk.
#[derive(Debug)]
pub struct LogFile {
    path: PathBuf,
    writer: Option<BufWriter<File>>,
    // Bytes in the current segment, including what is still buffered.
    written: u64,
}

impl LogFile {
    /// The log at `path` (not opened yet).
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            writer: None,
            written: 0,
        }
    }

    /// The current segment's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line (which must not contain a newline), rotating first if the current
    /// segment would grow past [`SEGMENT_BYTES`]. Not flushed: call [`LogFile::flush`].
    pub fn append(&mut self, line: &str) -> io::Result<()> {
        let needed = line.len() as u64 + 1;
        self.open()?;
        if self.written > 0 && self.written + needed > SEGMENT_BYTES {
            self.rotate()?;
            self.open()?;
        }
        let writer = self.open()?;
        writer.write_all(line.as_bytes())?;
        writer.write_all(b"\n")?;
        self.written += needed;
        Ok(())
    }

    /// Hands buffered lines to the OS.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.writer {
            Some(writer) => writer.flush(),
            None => Ok(()),
        }
    }

    fn open(&mut self) -> io::Result<&mut BufWriter<File>> {
        if self.writer.is_none() {
            let (file, len) = open_for_append(&self.path)?;
            self.writer = Some(BufWriter::new(file));
            self.written = len;
        }
        self.writer
            .as_mut()
            .ok_or_else(|| io::Error::other("log file not open"))
    }

    fn rotate(&mut self) -> io::Result<()> {
        if let Some(mut writer) = self.writer.take() {
            writer.flush()?;
        }
        std::fs::rename(&self.path, previous_segment(&self.path))?;
        self.written = 0;
        Ok(())
    }
}

/// The path of the segment before `path`.
pub fn previous_segment(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    PathBuf::from(name)
}

/// The newest lines of the log at `path` (both segments), at most about `max_bytes` of
/// them, oldest first. A missing log has no lines.
pub fn read_tail(path: &Path, max_bytes: u64) -> io::Result<Vec<String>> {
    let (current, whole) = read_last(path, max_bytes)?;
    let mut lines = Vec::new();
    let used = current.len() as u64;
    if whole && used < max_bytes {
        let (older, _) = read_last(&previous_segment(path), max_bytes - used)?;
        lines.extend(split_lines(&older));
    }
    lines.extend(split_lines(&current));
    Ok(lines)
}

/// Opens `path` for appending (creating it and its directory), ending a torn last line.
/// Returns the file and its length.
fn open_for_append(path: &Path) -> io::Result<(File, u64)> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)?;
    let mut len = file.metadata()?.len();
    if len > 0 {
        file.seek(SeekFrom::End(-1))?;
        let mut last = [0u8; 1];
        file.read_exact(&mut last)?;
        if last[0] != b'\n' {
            // O_APPEND: this lands at the end whatever the read position.
            file.write_all(b"\n")?;
            len += 1;
        }
    }
    Ok((file, len))
}

/// The last whole lines within `max_bytes` of the file at `path`, and whether that is the
/// whole file. A missing file is empty.
fn read_last(path: &Path, max_bytes: u64) -> io::Result<(Vec<u8>, bool)> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), true)),
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    // One byte more than the budget, to tell whether the cut falls on a line boundary.
    let start = len.saturating_sub(max_bytes.saturating_add(1));
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    if start == 0 {
        let whole = bytes.len() as u64 <= max_bytes;
        if whole {
            return Ok((bytes, true));
        }
    }
    // The first line is (at least partly) outside the budget: drop it, with its newline.
    let cut = bytes
        .iter()
        .position(|b| *b == b'\n')
        .map_or(bytes.len(), |pos| pos + 1);
    bytes.drain(..cut);
    Ok((bytes, false))
}

/// The lines of `bytes`; a last line without a newline (torn by a kill) still counts.
fn split_lines(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|b| *b == b'\n')
        .map(|line| String::from_utf8_lossy(line).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("pod").join("main.log")
    }

    #[test]
    fn appended_lines_are_read_back_after_a_flush() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = log_in(&dir);
        let mut log = LogFile::new(path.clone());
        log.append("one").expect("append");
        log.append("").expect("append");
        log.append("three").expect("append");
        log.flush().expect("flush");
        assert_eq!(
            read_tail(&path, 1 << 20).expect("read"),
            ["one", "", "three"]
        );
    }

    #[test]
    fn a_missing_log_has_no_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(read_tail(&log_in(&dir), 100).expect("read").is_empty());
    }

    #[test]
    fn a_torn_last_line_is_kept_and_ended_before_the_next_append() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = log_in(&dir);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "whole\ntor").expect("write");
        assert_eq!(read_tail(&path, 100).expect("read"), ["whole", "tor"]);
        let mut log = LogFile::new(path.clone());
        log.append("next").expect("append");
        log.flush().expect("flush");
        assert_eq!(
            read_tail(&path, 100).expect("read"),
            ["whole", "tor", "next"]
        );
    }

    #[test]
    fn a_tail_read_keeps_only_whole_lines_within_the_budget() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = log_in(&dir);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, "aaaa\nbb\ncc\n").expect("write");
        assert_eq!(read_tail(&path, 6).expect("read"), ["bb", "cc"]);
        assert_eq!(read_tail(&path, 5).expect("read"), ["cc"]);
        assert_eq!(read_tail(&path, 2).expect("read"), Vec::<String>::new());
    }

    #[test]
    fn rotation_bounds_the_files_and_keeps_the_newest_lines() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = log_in(&dir);
        let mut log = LogFile::new(path.clone());
        let line = "z".repeat(1000);
        let count = 3 * SEGMENT_BYTES / 1001;
        for i in 0..count {
            log.append(&format!("{i:08} {line}")).expect("append");
        }
        log.flush().expect("flush");

        let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
        assert!(size(&path) <= SEGMENT_BYTES);
        assert!(size(&previous_segment(&path)) <= SEGMENT_BYTES);
        let lines = read_tail(&path, 2 * SEGMENT_BYTES).expect("read");
        let last = lines.last().expect("lines");
        assert!(last.starts_with(&format!("{:08} ", count - 1)), "{last}");
        assert!(
            lines.len() as u64 * 1010 >= SEGMENT_BYTES,
            "{}",
            lines.len()
        );
        let numbers: Vec<u64> = lines
            .iter()
            .map(|l| l[..8].parse().expect("number"))
            .collect();
        assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "contiguous");
    }

    #[test]
    fn a_reopened_log_continues_where_it_was() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = log_in(&dir);
        for word in ["first", "second"] {
            let mut log = LogFile::new(path.clone());
            log.append(word).expect("append");
            log.flush().expect("flush");
        }
        assert_eq!(read_tail(&path, 100).expect("read"), ["first", "second"]);
    }
}
