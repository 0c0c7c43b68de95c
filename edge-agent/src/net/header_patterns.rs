//! ingress-nginx's `canary-by-header-pattern` on the agent: regular expressions (in
//! `regex-lite`'s syntax, which the server checked at admission) matched against a header's
//! value anywhere in it, as `ngx.re.match` does.
//!
//! Each pattern is compiled once and kept (at most [`MAX_PATTERNS`]; past that the cache
//! starts over), so a request costs one match. A pattern that does not compile matches
//! nothing: the request goes on to the cookie and weight, never to the canary (ingress-nginx
//! sends it to the primary).

use std::collections::HashMap;
use std::sync::Mutex;

use regex_lite::Regex;

/// How many compiled patterns are kept.
pub const MAX_PATTERNS: usize = 256;

/// The compiled patterns, shared by the ingress's listeners.
#[derive(Debug, Default)]
pub struct HeaderPatterns {
    compiled: Mutex<HashMap<String, Option<Regex>>>,
}

impl HeaderPatterns {
    /// Whether `value` matches `pattern` somewhere.
    pub fn matches(&self, pattern: &str, value: &str) -> bool {
        let mut compiled = self
            .compiled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !compiled.contains_key(pattern) && compiled.len() >= MAX_PATTERNS {
            compiled.clear();
        }
        let regex = compiled.entry(pattern.to_owned()).or_insert_with(|| {
            Regex::new(pattern)
                .inspect_err(|err| {
                    tracing::warn!(%pattern, %err, "a canary-by-header-pattern does not compile; it matches nothing");
                })
                .ok()
        });
        regex.as_ref().is_some_and(|r| r.is_match(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_anywhere_unless_anchored_and_bad_ones_match_nothing() {
        let patterns = HeaderPatterns::default();
        assert!(patterns.matches("beta", "user-beta-1"));
        assert!(!patterns.matches("^beta", "user-beta-1"));
        assert!(patterns.matches("^(beta|qa)-[0-9]+$", "qa-42"));
        assert!(!patterns.matches("(", "("));
        for i in 0..=MAX_PATTERNS {
            assert!(patterns.matches(&format!("^{i}$"), &i.to_string()));
        }
    }
}
