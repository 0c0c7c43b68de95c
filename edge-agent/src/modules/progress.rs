//! Which chunks of a module download are received, requested, or still to ask for.
//!
//! Pure bookkeeping, no I/O: the download driver asks [`Progress::next_requests`] what to
//! request, reports arrivals, and forgets what is in flight after a timeout or a reconnect
//! so exactly the missing chunks are asked for again.

use std::collections::BTreeSet;

use wasmfleet_protocol::CHUNK_SIZE;

/// The state of one download.
#[derive(Debug, Clone)]
pub struct Progress {
    received: Vec<bool>,
    remaining: usize,
    in_flight: BTreeSet<u32>,
}

impl Progress {
    /// A download of `total` chunks, none received.
    pub fn new(total: u32) -> Self {
        let total = total as usize;
        Progress {
            received: vec![false; total],
            remaining: total,
            in_flight: BTreeSet::new(),
        }
    }

    /// Whether every chunk arrived.
    pub fn is_complete(&self) -> bool {
        self.remaining == 0
    }

    /// Missing chunks not yet requested, enough to have `window` in flight; they count as
    /// in flight from now on.
    pub fn next_requests(&mut self, window: usize) -> Vec<u32> {
        let room = window.saturating_sub(self.in_flight.len());
        let wanted: Vec<u32> = (0..self.received.len())
            .filter(|i| !self.received[*i])
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|i| !self.in_flight.contains(i))
            .take(room)
            .collect();
        self.in_flight.extend(wanted.iter().copied());
        wanted
    }

    /// Records that chunk `index` arrived; false if it was a duplicate.
    pub fn record(&mut self, index: u32) -> bool {
        self.in_flight.remove(&index);
        match self.received.get_mut(index as usize) {
            Some(seen) if !*seen => {
                *seen = true;
                self.remaining -= 1;
                true
            }
            _ => false,
        }
    }

    /// Forgets every outstanding request, so the next call asks for them again.
    pub fn forget_in_flight(&mut self) {
        self.in_flight.clear();
    }

    /// Gives back requests that could not be sent.
    pub fn unrequest(&mut self, chunks: &[u32]) {
        for chunk in chunks {
            self.in_flight.remove(chunk);
        }
    }
}

/// Checks a received chunk against the module the agent asked for.
pub fn check_chunk(
    expected_size: u64,
    index: u32,
    total: u32,
    size: u64,
    data_len: usize,
) -> Result<(), String> {
    let expected_total = wasmfleet_protocol::blob::chunk_count(expected_size);
    if size != expected_size {
        return Err(format!(
            "the server says the module has {size} bytes, the pod spec says {expected_size}"
        ));
    }
    if total != expected_total {
        return Err(format!(
            "the server says the module has {total} chunks, expected {expected_total}"
        ));
    }
    if index >= total {
        return Err(format!("chunk index {index} is out of range (0..{total})"));
    }
    let offset = chunk_offset(index);
    let expected_len = (expected_size - offset).min(CHUNK_SIZE as u64);
    if data_len as u64 != expected_len {
        return Err(format!(
            "chunk {index} has {data_len} bytes, expected {expected_len}"
        ));
    }
    Ok(())
}

/// Where chunk `index` starts in the module.
pub fn chunk_offset(index: u32) -> u64 {
    u64::from(index) * CHUNK_SIZE as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_fill_the_window_with_missing_chunks_in_order() {
        let mut progress = Progress::new(10);
        assert_eq!(progress.next_requests(4), vec![0, 1, 2, 3]);
        assert_eq!(progress.next_requests(4), Vec::<u32>::new());
        assert!(progress.record(1));
        assert_eq!(progress.next_requests(4), vec![4]);
    }

    #[test]
    fn after_a_timeout_only_missing_chunks_are_asked_for_again() {
        let mut progress = Progress::new(5);
        progress.next_requests(5);
        progress.record(0);
        progress.record(3);
        progress.forget_in_flight();
        assert_eq!(progress.next_requests(8), vec![1, 2, 4]);
    }

    #[test]
    fn duplicate_and_out_of_range_chunks_do_not_count() {
        let mut progress = Progress::new(2);
        assert!(progress.record(0));
        assert!(!progress.record(0));
        assert!(!progress.record(7));
        assert!(!progress.is_complete());
        assert!(progress.record(1));
        assert!(progress.is_complete());
    }

    #[test]
    fn unsent_requests_are_asked_for_again() {
        let mut progress = Progress::new(3);
        let sent = progress.next_requests(2);
        progress.unrequest(&sent);
        assert_eq!(progress.next_requests(2), vec![0, 1]);
    }

    #[test]
    fn a_chunk_must_match_the_module_in_size_count_and_length() {
        let size = CHUNK_SIZE as u64 + 10;
        assert_eq!(check_chunk(size, 0, 2, size, CHUNK_SIZE), Ok(()));
        assert_eq!(check_chunk(size, 1, 2, size, 10), Ok(()));
        assert!(check_chunk(size, 1, 2, size, 11).is_err());
        assert!(check_chunk(size, 2, 2, size, 10).is_err());
        assert!(check_chunk(size, 0, 3, size, CHUNK_SIZE).is_err());
        assert!(check_chunk(size, 0, 2, size + 1, CHUNK_SIZE).is_err());
    }
}
