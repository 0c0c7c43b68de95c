//! The loaded programs kept in memory, and their eviction.
//!
//! A loaded program holds its compiled code mapped in memory (megabytes per module). A
//! program a container still runs is in use (its `Arc` is shared) and always stays; of the
//! idle ones only the most recently used [`IDLE_PROGRAMS`] stay, so a restart of a recent
//! pod does not reload, while a node that has run hundreds of distinct modules does not
//! keep them all. An evicted program reloads from the on-disk artifact cache.

use std::collections::HashMap;
use std::sync::Arc;

use super::Program;

/// How many programs no container uses stay loaded.
pub const IDLE_PROGRAMS: usize = 8;

/// Loaded programs by digest, with their last use.
#[derive(Default)]
pub struct Programs {
    entries: HashMap<String, Entry>,
    clock: u64,
}

struct Entry {
    program: Program,
    last_use: u64,
}

impl Programs {
    /// The program of `digest`, marked as just used.
    pub fn get(&mut self, digest: &str) -> Option<Program> {
        self.clock += 1;
        let entry = self.entries.get_mut(digest)?;
        entry.last_use = self.clock;
        Some(entry.program.clone())
    }

    /// Keeps `program`, then evicts the least recently used idle programs past the budget
    /// (`program` itself is being handed out, so it counts as in use this time).
    pub fn insert(&mut self, program: Program) {
        self.clock += 1;
        let entry = Entry {
            program,
            last_use: self.clock,
        };
        self.entries
            .insert(entry.program.digest().to_owned(), entry);
        self.evict(IDLE_PROGRAMS);
    }

    /// Evicts the least recently used idle programs past the budget (call it when programs
    /// go idle: nothing else would unload them until the next load).
    pub fn trim(&mut self) {
        self.evict(IDLE_PROGRAMS);
    }

    /// How many programs are loaded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the program of `digest` is loaded.
    pub fn contains(&self, digest: &str) -> bool {
        self.entries.contains_key(digest)
    }

    fn evict(&mut self, keep_idle: usize) {
        let mut idle: Vec<(u64, String)> = self
            .entries
            .iter()
            .filter(|(_, entry)| Arc::strong_count(&entry.program.prepared) == 1)
            .map(|(digest, entry)| (entry.last_use, digest.clone()))
            .collect();
        if idle.len() <= keep_idle {
            return;
        }
        idle.sort_unstable();
        for (_, digest) in &idle[..idle.len() - keep_idle] {
            tracing::debug!(%digest, "unloading an idle program");
            self.entries.remove(digest);
        }
    }
}
