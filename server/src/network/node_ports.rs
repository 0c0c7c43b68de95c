//! NodePort allocation, pure: the node-port range and what a port needs to be handed out.
//!
//! Ports come from `30000-32767` (k3s's `--service-node-port-range` default). As in
//! Kubernetes (KEP-3668) the range has a static band at its bottom, of
//! `min(max(16, size / 32), 128)` ports (86 for the default range), that dynamic
//! allocation only uses once the rest is full, so users can pick ports there without
//! racing the allocator. A requested port must be in the range and free; a port keeps its
//! node port across updates ([`assign`]); a port is free again once no stored Service holds
//! it (its Service was deleted or went back to `ClusterIP`).

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

/// The node-port range.
pub const RANGE: RangeInclusive<u16> = 30000..=32767;

/// The first port of the dynamic band (the static band is below it).
fn dynamic_start() -> u16 {
    let size = u32::from(RANGE.end() - RANGE.start()) + 1;
    let band = (size / 32).clamp(16, 128);
    RANGE
        .start()
        .saturating_add(u16::try_from(band).unwrap_or(128))
}

/// The port a Service that asks for none gets: the lowest free one of the dynamic band,
/// else of the static band; `None` when the range is full.
pub fn free_node_port(taken: &BTreeSet<u16>) -> Option<u16> {
    let start = dynamic_start();
    (start..=*RANGE.end())
        .chain(*RANGE.start()..start)
        .find(|port| !taken.contains(port))
}

/// Why a port gets no node port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The request cannot be granted (Kubernetes' wording, for a 422 on the field).
    Invalid(String),
    /// Every port of the range is taken.
    Full,
}

/// The node port of one Service port: the one it `had` (it may be left out of an update,
/// not changed), else the one it `asked` for if it is in the range and free, else a free
/// one if it `wants` one (`None`: it stays without).
pub fn assign(
    had: Option<u16>,
    asked: Option<i64>,
    wants: bool,
    taken: &BTreeSet<u16>,
) -> Result<Option<u16>, Refused> {
    match (had, asked) {
        (Some(had), None) => Ok(Some(had)),
        (Some(had), Some(asked)) if asked == i64::from(had) => Ok(Some(had)),
        (Some(had), Some(asked)) => Err(Refused::Invalid(format!(
            "Invalid value: {asked}: may not change once set (it is {had})"
        ))),
        (None, Some(asked)) => check_requested(asked, taken)
            .map(Some)
            .map_err(Refused::Invalid),
        (None, None) if wants => free_node_port(taken).map(Some).ok_or(Refused::Full),
        (None, None) => Ok(None),
    }
}

/// Why a requested node port cannot be had (Kubernetes' wording), if it cannot.
pub fn check_requested(port: i64, taken: &BTreeSet<u16>) -> Result<u16, String> {
    let in_range = u16::try_from(port).ok().filter(|port| RANGE.contains(port));
    let Some(port) = in_range else {
        return Err(format!(
            "Invalid value: {port}: provided port is not in the valid range. The range of valid ports is {}-{}",
            RANGE.start(),
            RANGE.end()
        ));
    };
    if taken.contains(&port) {
        return Err(format!(
            "Invalid value: {port}: provided port is already allocated"
        ));
    }
    Ok(port)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_ports_come_from_above_the_static_band_first() {
        let mut taken = BTreeSet::new();
        assert_eq!(free_node_port(&taken), Some(30086));
        taken.insert(30086);
        assert_eq!(free_node_port(&taken), Some(30087));
        taken.extend(30087..=32767);
        assert_eq!(
            free_node_port(&taken),
            Some(30000),
            "the static band once the rest is full"
        );
        taken.extend(30000..30086);
        assert_eq!(free_node_port(&taken), None);
    }

    #[test]
    fn a_node_port_is_kept_asked_for_or_handed_out() {
        let taken = BTreeSet::from([30086]);
        assert_eq!(assign(Some(30100), None, true, &taken), Ok(Some(30100)));
        assert_eq!(
            assign(Some(30100), Some(30100), true, &taken),
            Ok(Some(30100))
        );
        assert!(matches!(
            assign(Some(30100), Some(30101), true, &taken),
            Err(Refused::Invalid(m)) if m.contains("may not change once set")
        ));
        assert_eq!(assign(None, Some(30101), false, &taken), Ok(Some(30101)));
        assert_eq!(assign(None, None, true, &taken), Ok(Some(30087)));
        assert_eq!(assign(None, None, false, &taken), Ok(None));
        let full: BTreeSet<u16> = RANGE.collect();
        assert_eq!(assign(None, None, true, &full), Err(Refused::Full));
    }

    #[test]
    fn a_requested_port_must_be_in_range_and_free() {
        let taken = BTreeSet::from([30080]);
        assert_eq!(check_requested(30081, &taken), Ok(30081));
        let err = check_requested(30080, &taken).unwrap_err();
        assert!(err.ends_with("provided port is already allocated"), "{err}");
        for outside in [80, 29999, 32768, -1, 70000] {
            let err = check_requested(outside, &taken).unwrap_err();
            assert!(
                err.contains("The range of valid ports is 30000-32767"),
                "{err}"
            );
        }
    }
}
