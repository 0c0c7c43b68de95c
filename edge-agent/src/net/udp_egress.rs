//! UDP from pods to addresses outside the cluster that their egress rules allow.
//!
//! A pod's UDP socket is bound on its loopback alias, which cannot send off the host, so
//! each flow of a socket to an allowed outside address gets a proxy (the masquerade of a
//! pod network): a UDP socket on the pod's own alias, on an ephemeral port, that takes
//! the guest socket's datagrams and sends them from a host socket connected to the
//! destination, and sends what the destination answers back to the guest socket. The
//! guest sends to the proxy instead of the destination, and its flow table
//! ([`super::udp_flows`]) shows the destination as the source of the answers, as for a
//! ClusterIP. A proxy serves only the one guest socket it was opened for (datagrams from
//! any other address are dropped) and lives as long as that flow does: the flow table
//! holds its [`DropGuard`], so a flow that ends (idle, replaced, or its socket dropped)
//! closes it. At most [`MAX_PROXIES`] are open on the node at once; past that a new
//! flow's datagram is refused (`new-socket-limit`).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::UdpSocket;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::datagrams::MAX_DATAGRAM;

/// The most UDP egress proxies open on the node at once.
pub const MAX_PROXIES: usize = 4096;

/// The node's UDP egress proxies; cheap to clone.
#[derive(Debug, Clone)]
pub struct UdpEgress {
    tracker: TaskTracker,
    stop: CancellationToken,
    open: Arc<AtomicUsize>,
}

/// Why a proxy could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    /// [`MAX_PROXIES`] are open.
    #[error("{MAX_PROXIES} UDP egress flows are open on this node")]
    TooMany,
    /// A socket could not be opened.
    #[error("cannot open a UDP egress socket: {0}")]
    Socket(#[from] std::io::Error),
}

impl UdpEgress {
    /// Proxies run on `tracker` until `stop` (or until their flow ends).
    pub fn new(tracker: TaskTracker, stop: CancellationToken) -> Self {
        Self {
            tracker,
            stop,
            open: Arc::default(),
        }
    }

    /// Opens a proxy for the guest socket bound at `owner` (a pod alias and port) to the
    /// outside address `destination`: the proxy's address (on the same alias), and the
    /// guard that closes it when dropped.
    pub fn open(
        &self,
        owner: SocketAddr,
        destination: SocketAddr,
    ) -> Result<(SocketAddr, DropGuard), EgressError> {
        let slot = Slot::take(&self.open).ok_or(EgressError::TooMany)?;
        let proxy = nonblocking(std::net::UdpSocket::bind(SocketAddr::new(owner.ip(), 0))?)?;
        let host = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        host.connect(destination)?;
        let host = nonblocking(host)?;
        let address = proxy.local_addr()?;
        let token = self.stop.child_token();
        let until = token.clone();
        self.tracker.spawn(async move {
            relay(proxy, host, owner, until).await;
            drop(slot);
        });
        Ok((address, token.drop_guard()))
    }
}

fn nonblocking(socket: std::net::UdpSocket) -> std::io::Result<UdpSocket> {
    socket.set_nonblocking(true)?;
    UdpSocket::from_std(socket)
}

/// One of [`MAX_PROXIES`], given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(open: &Arc<AtomicUsize>) -> Option<Self> {
        open.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < MAX_PROXIES).then_some(n + 1)
        })
        .ok()?;
        Some(Self(Arc::clone(open)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Copies the owner's datagrams out and the destination's answers back until `until`.
async fn relay(proxy: UdpSocket, host: UdpSocket, owner: SocketAddr, until: CancellationToken) {
    let mut out = vec![0u8; MAX_DATAGRAM];
    let mut back = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            () = until.cancelled() => break,
            received = proxy.recv_from(&mut out) => {
                if let Ok((len, from)) = received
                    && from == owner
                    && let Err(err) = host.send(&out[..len]).await
                {
                    tracing::trace!(%err, "a UDP egress datagram was not sent");
                }
            }
            received = host.recv(&mut back) => {
                // An error is an ICMP answer to an earlier datagram: the flow goes on.
                if let Ok(len) = received
                    && let Err(err) = proxy.send_to(&back[..len], owner).await
                {
                    tracing::trace!(%err, "a UDP egress answer was not delivered");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_proxy_carries_its_owners_datagrams_only_and_closes_with_its_guard() {
        let outside = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let owner = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let egress = UdpEgress::new(TaskTracker::new(), CancellationToken::new());
        let (proxy, guard) = egress
            .open(owner.local_addr().unwrap(), outside.local_addr().unwrap())
            .unwrap();
        assert_eq!(proxy.ip(), owner.local_addr().unwrap().ip());
        stranger.send_to(b"spoof", proxy).await.unwrap();
        owner.send_to(b"ping", proxy).await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = outside.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"ping", "the stranger's datagram was dropped");
        outside.send_to(b"pong", from).await.unwrap();
        let (len, source) = owner.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], source), (&b"pong"[..], proxy));
        assert_eq!(egress.open.load(Ordering::Acquire), 1);
        drop(guard);
        egress.tracker.close();
        egress.tracker.wait().await;
        assert_eq!(egress.open.load(Ordering::Acquire), 0);
    }
}
