//! Ports for the processes a test starts.
//!
//! Mosquitto cannot listen on port 0 and a restarted server must come back on its old ports,
//! so the harness picks ports itself and hands them over. It picks them below the kernel's
//! ephemeral range (32768 and up), where no outgoing connection (an agent's, kubectl's, curl's)
//! can take one between the pick and the bind, and below the NodePort range (30000-32767),
//! where agents listen for Services. Picks walk the range from a per-process start, so two
//! tests of one binary never get the same port.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const FIRST: u32 = 20_000;
const COUNT: u32 = 10_000;

/// A port nothing listens on at the moment, on `host`, outside the ephemeral range.
pub fn free_port(host: IpAddr) -> SocketAddr {
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(u32::MAX, start(), Ordering::Relaxed, Ordering::Relaxed);
    for _ in 0..COUNT {
        let port = FIRST + NEXT.fetch_add(1, Ordering::Relaxed) % COUNT;
        let port = u16::try_from(port).expect("the range is below 65536");
        if let Ok(listener) = TcpListener::bind((host, port)) {
            return listener
                .local_addr()
                .expect("a bound listener has an address");
        }
    }
    panic!("no free port in {FIRST}..{} on {host}", FIRST + COUNT);
}

/// Where this process starts walking: spread by process id and time, so the test binaries
/// that run one after another (and a benchmark beside them) start far apart.
fn start() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    (std::process::id().wrapping_mul(7919) ^ nanos) % COUNT
}
