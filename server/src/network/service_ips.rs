//! ClusterIP allocation, pure: the service CIDR's rules and the next free virtual IP.
//!
//! The network and broadcast addresses are never handed out, and the first host address
//! (`10.43.0.1` by default) is kept for the API server's own Service, as Kubernetes does.
//! New Services get the lowest free address; a Service may ask for a particular one
//! (`spec.clusterIP`), which must be in the CIDR and free. An address is free again once
//! its Service is deleted.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use wasmfleet_protocol::network::ClusterCidr;

/// The smallest and largest prefix accepted for the service CIDR.
const PREFIXES: std::ops::RangeInclusive<u8> = 12..=28;

/// Checks a service CIDR against the cluster (pod) CIDR it lives beside.
pub fn check_service_cidr(service: Ipv4Net, cluster: ClusterCidr) -> Result<(), String> {
    if !PREFIXES.contains(&service.prefix_len()) {
        return Err(format!(
            "the service CIDR {service} must have a prefix between /{} and /{}",
            PREFIXES.start(),
            PREFIXES.end()
        ));
    }
    if service != service.trunc() {
        return Err(format!(
            "the service CIDR {service} is not a network address (did you mean {}?)",
            service.trunc()
        ));
    }
    let pods = cluster.net();
    if service.contains(&pods.network()) || pods.contains(&service.network()) {
        return Err(format!(
            "the service CIDR {service} overlaps the cluster CIDR {pods}"
        ));
    }
    if service.network().is_loopback() {
        return Err(format!("the service CIDR {service} is in 127.0.0.0/8"));
    }
    Ok(())
}

/// The lowest free ClusterIP of `cidr`.
pub fn free_service_ip(cidr: Ipv4Net, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    cidr.hosts().skip(1).find(|ip| !taken.contains(ip))
}

/// Why a requested ClusterIP cannot be had (Kubernetes' wording), if it cannot.
pub fn check_requested(
    cidr: Ipv4Net,
    ip: Ipv4Addr,
    taken: &BTreeSet<Ipv4Addr>,
) -> Result<(), String> {
    if !cidr.contains(&ip) || ip == cidr.network() || ip == cidr.broadcast() {
        return Err(format!(
            "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {cidr}"
        ));
    }
    if taken.contains(&ip) {
        return Err(format!(
            "failed to allocate IP {ip}: provided IP is already allocated"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cidr() -> Ipv4Net {
        "10.43.0.0/16".parse().unwrap()
    }

    #[test]
    fn the_first_host_is_kept_and_the_lowest_free_address_is_next() {
        let mut taken = BTreeSet::new();
        let first = free_service_ip(cidr(), &taken).unwrap();
        assert_eq!(first, Ipv4Addr::new(10, 43, 0, 2));
        taken.insert(first);
        assert_eq!(
            free_service_ip(cidr(), &taken),
            Some(Ipv4Addr::new(10, 43, 0, 3))
        );
        let tiny: Ipv4Net = "10.43.0.0/30".parse().unwrap();
        let full = BTreeSet::from([Ipv4Addr::new(10, 43, 0, 2)]);
        assert_eq!(free_service_ip(tiny, &full), None);
    }

    #[test]
    fn a_requested_address_must_be_in_range_and_free() {
        let taken = BTreeSet::from([Ipv4Addr::new(10, 43, 0, 9)]);
        assert!(check_requested(cidr(), Ipv4Addr::new(10, 43, 1, 1), &taken).is_ok());
        let err = check_requested(cidr(), Ipv4Addr::new(10, 43, 0, 9), &taken).unwrap_err();
        assert!(err.contains("already allocated"), "{err}");
        let err = check_requested(cidr(), Ipv4Addr::new(10, 44, 0, 1), &taken).unwrap_err();
        assert!(err.contains("not in the valid range"), "{err}");
    }

    #[test]
    fn a_service_cidr_must_not_overlap_the_pods() {
        let cluster = ClusterCidr::default();
        assert!(check_service_cidr(cidr(), cluster).is_ok());
        assert!(check_service_cidr("10.42.0.0/16".parse().unwrap(), cluster).is_err());
        assert!(check_service_cidr("10.0.0.0/8".parse().unwrap(), cluster).is_err());
        assert!(check_service_cidr("10.43.0.1/16".parse().unwrap(), cluster).is_err());
        assert!(check_service_cidr("10.43.0.0/30".parse().unwrap(), cluster).is_err());
    }
}
