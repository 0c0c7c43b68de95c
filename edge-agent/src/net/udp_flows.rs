//! The UDP flows of one container's sockets (conntrack's role for datagrams): which
//! endpoint each ClusterIP destination of a socket goes to, so that a client's datagrams
//! keep going to one endpoint and the replies show the ClusterIP they were sent to.
//!
//! A flow lives while datagrams pass either way and ends after [`IDLE_TIMEOUT`] without
//! any (conntrack's UDP timeout); the next datagram picks an endpoint anew. The flow of a
//! socket connected to a ClusterIP lasts as long as the socket (the kernel keeps the
//! connected endpoint). Datagram
//! streams belong to their socket: the table also remembers which socket each stream is
//! of, since wasi hands the streams, not the socket, to `send` and `receive`.
//!
//! Flows to allowed addresses outside the cluster work the same way, through a proxy
//! ([`super::udp_egress`]) whose guard the flow holds: the proxy closes with the flow.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_util::sync::DropGuard;

/// How long a flow without datagrams lasts.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most flows one socket keeps (the oldest goes first).
pub const MAX_FLOWS_PER_SOCKET: usize = 256;

/// One flow: the endpoint's (or proxy's) host address and when a datagram last passed.
#[derive(Debug)]
struct Flow {
    host: SocketAddr,
    last: Instant,
    /// The socket is connected to the endpoint: the flow lasts as long as the socket.
    pinned: bool,
    /// Closes the flow's egress proxy when the flow ends.
    _proxy: Option<DropGuard>,
}

/// Where a new flow goes: a host address, and the guard of the proxy that serves it.
pub type Route = (SocketAddr, Option<DropGuard>);

impl Flow {
    fn live(&self, now: Instant) -> bool {
        self.pinned || now.saturating_duration_since(self.last) < IDLE_TIMEOUT
    }
}

/// The flows of every socket of one container, by socket handle.
#[derive(Debug, Default)]
pub struct UdpFlows {
    /// Datagram stream handle -> its socket's handle.
    streams: HashMap<u32, u32>,
    /// Socket handle -> its flows by the ClusterIP address the guest sends to.
    sockets: HashMap<u32, HashMap<SocketAddr, Flow>>,
}

impl UdpFlows {
    /// Remembers that the streams `incoming` and `outgoing` are of `socket`.
    pub fn link(&mut self, socket: u32, incoming: u32, outgoing: u32) {
        self.streams.insert(incoming, socket);
        self.streams.insert(outgoing, socket);
    }

    /// The socket of a datagram stream.
    pub fn socket_of(&self, stream: u32) -> Option<u32> {
        self.streams.get(&stream).copied()
    }

    /// Forgets a dropped stream.
    pub fn forget_stream(&mut self, stream: u32) {
        self.streams.remove(&stream);
    }

    /// Forgets a dropped socket and its flows.
    pub fn forget_socket(&mut self, socket: u32) {
        self.sockets.remove(&socket);
    }

    /// The host address a datagram of `socket` to the ClusterIP (or outside) address
    /// `service` goes to at `now`: the flow's endpoint while the flow lives, else
    /// `route()`'s pick, which starts a new flow.
    pub fn destination<E>(
        &mut self,
        socket: u32,
        service: SocketAddr,
        now: Instant,
        route: impl FnOnce() -> Result<Route, E>,
    ) -> Result<SocketAddr, E> {
        let flows = self.sockets.entry(socket).or_default();
        if let Some(flow) = flows.get_mut(&service)
            && flow.live(now)
        {
            flow.last = now;
            return Ok(flow.host);
        }
        let (host, proxy) = route()?;
        flows.retain(|_, flow| flow.live(now));
        if flows.len() >= MAX_FLOWS_PER_SOCKET
            && let Some(oldest) = flows.iter().min_by_key(|(_, f)| f.last).map(|(k, _)| *k)
        {
            flows.remove(&oldest);
        }
        let flow = Flow {
            host,
            last: now,
            pinned: false,
            _proxy: proxy,
        };
        flows.insert(service, flow);
        Ok(host)
    }

    /// Keeps the flow of `socket` to `service` for the socket's life (the socket was
    /// connected to its endpoint, which the kernel keeps however long it is idle).
    pub fn pin(&mut self, socket: u32, service: SocketAddr) {
        if let Some(flow) = self
            .sockets
            .get_mut(&socket)
            .and_then(|flows| flows.get_mut(&service))
        {
            flow.pinned = true;
        }
    }

    /// The ClusterIP address a datagram that `socket` received from the host address
    /// `host` at `now` answers, if it belongs to a live flow (which it keeps alive).
    pub fn reply_source(
        &mut self,
        socket: u32,
        host: SocketAddr,
        now: Instant,
    ) -> Option<SocketAddr> {
        let flows = self.sockets.get_mut(&socket)?;
        let (service, flow) = flows
            .iter_mut()
            .filter(|(_, f)| f.host == host && f.live(now))
            .max_by_key(|(_, f)| f.last)?;
        flow.last = now;
        Some(*service)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn a_flow_keeps_its_endpoint_until_idle_and_maps_replies_back() {
        let mut flows = UdpFlows::default();
        let vip = addr("10.43.0.2:53");
        let t0 = Instant::now();
        let first = || Ok::<_, ()>((addr("127.42.0.5:5353"), None));
        let second = || Ok::<_, ()>((addr("127.42.0.6:5353"), None));
        assert_eq!(
            flows.destination(1, vip, t0, first),
            Ok(addr("127.42.0.5:5353"))
        );
        let t1 = t0 + Duration::from_secs(20);
        assert_eq!(
            flows.destination(1, vip, t1, second),
            Ok(addr("127.42.0.5:5353"))
        );
        let t2 = t1 + Duration::from_secs(20);
        assert_eq!(
            flows.reply_source(1, addr("127.42.0.5:5353"), t2),
            Some(vip)
        );
        assert_eq!(flows.reply_source(1, addr("127.42.0.9:5353"), t2), None);
        assert_eq!(flows.reply_source(2, addr("127.42.0.5:5353"), t2), None);
        // The reply kept the flow alive; 30 s of silence ends it.
        let t3 = t2 + IDLE_TIMEOUT;
        assert_eq!(
            flows.destination(1, vip, t3, second),
            Ok(addr("127.42.0.6:5353"))
        );
        assert_eq!(flows.reply_source(1, addr("127.42.0.5:5353"), t3), None);
        // Another socket has its own flows.
        assert_eq!(
            flows.destination(2, vip, t3, first),
            Ok(addr("127.42.0.5:5353"))
        );
    }

    #[test]
    fn a_refused_route_starts_no_flow_and_streams_find_their_socket() {
        let mut flows = UdpFlows::default();
        let now = Instant::now();
        let vip = addr("10.43.0.2:53");
        assert_eq!(flows.destination(1, vip, now, || Err("none")), Err("none"));
        assert_eq!(flows.reply_source(1, addr("127.42.0.5:53"), now), None);
        flows.link(1, 10, 11);
        assert_eq!(
            (flows.socket_of(10), flows.socket_of(11)),
            (Some(1), Some(1))
        );
        flows.forget_stream(10);
        flows.forget_socket(1);
        assert_eq!((flows.socket_of(10), flows.socket_of(11)), (None, Some(1)));
    }

    #[test]
    fn a_flow_holds_its_proxy_until_it_is_replaced_or_its_socket_goes() {
        let mut flows = UdpFlows::default();
        let outside = addr("192.0.2.1:53");
        let t0 = Instant::now();
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        let route = |token: &CancellationToken, host: &str| {
            let (token, host) = (token.clone(), addr(host));
            move || Ok::<_, ()>((host, Some(token.drop_guard())))
        };
        let proxy = flows.destination(1, outside, t0, route(&first, "127.42.1.5:40000"));
        assert_eq!(proxy, Ok(addr("127.42.1.5:40000")));
        assert_eq!(
            flows.reply_source(1, addr("127.42.1.5:40000"), t0),
            Some(outside)
        );
        assert!(!first.is_cancelled());
        // Idle for 30 s: the next datagram starts a new flow, the old proxy closes.
        let later = t0 + IDLE_TIMEOUT;
        let proxy = flows.destination(1, outside, later, route(&second, "127.42.1.5:40001"));
        assert_eq!(proxy, Ok(addr("127.42.1.5:40001")));
        assert!(first.is_cancelled());
        assert!(!second.is_cancelled());
        flows.forget_socket(1);
        assert!(second.is_cancelled());
    }
}
