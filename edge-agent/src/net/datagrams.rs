//! UDP flows on byte streams: how datagrams travel in a tunnel stream between two agents.
//!
//! One flow (one client socket and one destination) is one stream of the tunnel
//! ([`super::tunnel::Link::open_datagrams`]); each datagram on it is a frame of a 2-byte
//! big-endian length and that many bytes of payload ([`write`], [`read`]). A payload is at
//! most [`MAX_DATAGRAM`] bytes (65,507: the largest UDP payload over IPv4). [`carry`]
//! moves datagrams both ways between a stream and a UDP socket until the flow has been
//! idle for [`IDLE_TIMEOUT`] (no datagram either way, as the flow tables of
//! [`super::udp_flows`]), the stream ends, or the node stops.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use tokio::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use super::udp_flows::IDLE_TIMEOUT;

/// The largest datagram payload carried (the largest UDP payload over IPv4).
pub const MAX_DATAGRAM: usize = 65_507;

/// Writes one datagram as a frame; a payload over [`MAX_DATAGRAM`] is `InvalidInput`.
pub async fn write<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> io::Result<()> {
    let len = u16::try_from(payload.len())
        .ok()
        .filter(|len| usize::from(*len) <= MAX_DATAGRAM)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a datagram of {} bytes is over {MAX_DATAGRAM}",
                    payload.len()
                ),
            )
        })?;
    let mut frame = Vec::with_capacity(2 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(payload);
    writer.write_all(&frame).await?;
    writer.flush().await
}

/// Reads one frame's datagram into `buf`; `None` when the stream ended between frames. A
/// stream that ends inside a frame, or a length over [`MAX_DATAGRAM`], is an error.
pub async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
) -> io::Result<Option<usize>> {
    let mut head = [0u8; 2];
    match reader.read(&mut head[..1]).await? {
        0 => return Ok(None),
        _ => reader.read_exact(&mut head[1..]).await?,
    };
    let len = usize::from(u16::from_be_bytes(head));
    if len > MAX_DATAGRAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {len} bytes is over {MAX_DATAGRAM}"),
        ));
    }
    buf.resize(len, 0);
    reader.read_exact(&mut buf[..len]).await?;
    Ok(Some(len))
}

/// The flows of one socket that several clients send to (a UDP forwarder's, a node-port
/// listener's), by client address: each flow is a task fed by a queue of
/// [`CLIENT_QUEUE`] datagrams (more are dropped, as a full socket buffer drops them).
#[derive(Debug)]
pub struct ClientFlows {
    flows: HashMap<SocketAddr, (u64, mpsc::Sender<Bytes>)>,
    next_id: u64,
    limit: usize,
    /// Whether the table has been full since the last flow started (so a full table is
    /// logged once per spell, not once per datagram).
    full: bool,
}

/// Whether a new flow may start ([`ClientFlows::room`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Room {
    /// Under the limit.
    Free,
    /// At the limit: the new client's datagram is dropped; `first` for the first refusal
    /// since a flow last started (the one to log).
    Full {
        /// The first refusal of this spell.
        first: bool,
    },
}

/// Datagrams queued for one client's flow.
pub const CLIENT_QUEUE: usize = 64;

/// A flow [`ClientFlows::start`]ed: its id (for [`ClientFlows::end`]) and its queue.
pub type Started = (u64, mpsc::Receiver<Bytes>);

impl ClientFlows {
    /// No flows yet; at most `limit` at once.
    pub fn new(limit: usize) -> Self {
        Self {
            flows: HashMap::new(),
            next_id: 0,
            limit,
            full: false,
        }
    }

    /// Queues `payload` on `client`'s live flow; gives it back when the client has none.
    pub fn deliver(&mut self, client: SocketAddr, payload: Bytes) -> Option<Bytes> {
        match self.flows.get(&client).filter(|(_, q)| !q.is_closed()) {
            Some((_, queue)) => {
                let _ = queue.try_send(payload);
                None
            }
            None => Some(payload),
        }
    }

    /// Whether a new flow may start (flows whose task ended do not count).
    pub fn room(&mut self) -> Room {
        self.flows.retain(|_, (_, queue)| !queue.is_closed());
        if self.flows.len() < self.limit {
            return Room::Free;
        }
        Room::Full {
            first: !std::mem::replace(&mut self.full, true),
        }
    }

    /// Starts `client`'s flow with `payload` queued first.
    pub fn start(&mut self, client: SocketAddr, payload: Bytes) -> Started {
        let (queue, queued) = mpsc::channel(CLIENT_QUEUE);
        let _ = queue.try_send(payload);
        self.full = false;
        self.next_id += 1;
        self.flows.insert(client, (self.next_id, queue));
        (self.next_id, queued)
    }

    /// Forgets the flow `id` of `client` (its task ended), unless a newer one replaced it.
    pub fn end(&mut self, client: SocketAddr, id: u64) {
        if self.flows.get(&client).is_some_and(|(live, _)| *live == id) {
            self.flows.remove(&client);
        }
    }

    /// Whether no flow is open.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

/// The UDP side of a carried flow.
pub enum Local<'a> {
    /// A socket connected to the one address of the flow (the serving node's socket to
    /// its pod): datagrams are received from it and sent to it.
    Connected(&'a UdpSocket),
    /// A socket shared by several flows (a forwarder's): this flow's datagrams arrive on
    /// `queue`, and the stream's are sent to `client`.
    Shared {
        /// The shared socket.
        socket: &'a UdpSocket,
        /// Where the flow's answers go.
        client: SocketAddr,
        /// The datagrams the socket received from `client`.
        queue: mpsc::Receiver<Bytes>,
    },
}

/// Moves datagrams both ways between `stream` and `local` until the flow is idle for
/// [`IDLE_TIMEOUT`], either side ends, or `stop`.
pub async fn carry<S>(stream: S, local: Local<'_>, stop: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let last = Mutex::new(Instant::now());
    let touch = || {
        *last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now()
    };
    let (socket, client, mut queue) = match local {
        Local::Connected(socket) => (socket, None, None),
        Local::Shared {
            socket,
            client,
            queue,
        } => (socket, Some(client), Some(queue)),
    };
    // Each direction is a loop of its own: a frame is never cut in half by the other.
    let inbound = async {
        let mut buf = Vec::new();
        while let Ok(Some(len)) = read(&mut reader, &mut buf).await {
            touch();
            let sent = match client {
                Some(client) => socket.send_to(&buf[..len], client).await,
                None => socket.send(&buf[..len]).await,
            };
            if let Err(err) = sent {
                tracing::trace!(%err, "a tunnelled datagram was not delivered");
            }
        }
    };
    let outbound = async {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let payload = match &mut queue {
                Some(queue) => match queue.recv().await {
                    Some(payload) => payload,
                    None => break,
                },
                None => match socket.recv(&mut buf).await {
                    Ok(len) => Bytes::copy_from_slice(&buf[..len]),
                    // A refused earlier datagram (ICMP port unreachable): keep the flow.
                    Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => continue,
                    Err(_) => break,
                },
            };
            touch();
            if write(&mut writer, &payload).await.is_err() {
                break;
            }
        }
        writer.shutdown().await.ok();
    };
    let idle = async {
        loop {
            let since = last
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .elapsed();
            match IDLE_TIMEOUT.checked_sub(since) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left).await,
                _ => break,
            }
        }
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = inbound => {}
        () = outbound => {}
        () = idle => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn datagrams_travel_as_length_prefixed_frames() {
        let mut wire = Vec::new();
        write(&mut wire, b"hello").await.unwrap();
        write(&mut wire, b"").await.unwrap();
        write(&mut wire, &[7u8; MAX_DATAGRAM]).await.unwrap();
        assert_eq!(&wire[..7], b"\x00\x05hello");
        let mut reader = wire.as_slice();
        let mut buf = Vec::new();
        assert_eq!(read(&mut reader, &mut buf).await.unwrap(), Some(5));
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(read(&mut reader, &mut buf).await.unwrap(), Some(0));
        assert_eq!(
            read(&mut reader, &mut buf).await.unwrap(),
            Some(MAX_DATAGRAM)
        );
        assert_eq!(read(&mut reader, &mut buf).await.unwrap(), None);
    }

    #[tokio::test]
    async fn oversized_and_cut_frames_are_errors() {
        let mut wire = Vec::new();
        let err = write(&mut wire, &[0u8; MAX_DATAGRAM + 1])
            .await
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(wire.is_empty());
        let mut buf = Vec::new();
        let too_long = [0xff_u8, 0xff, 1, 2];
        let err = read(&mut too_long.as_slice(), &mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let cut = [0u8, 4, 1, 2];
        let err = read(&mut cut.as_slice(), &mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
        let half_head = [0u8];
        assert!(read(&mut half_head.as_slice(), &mut buf).await.is_err());
    }

    #[tokio::test]
    async fn a_connected_socket_and_a_stream_exchange_datagrams() {
        let pod = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket.connect(pod.local_addr().unwrap()).await.unwrap();
        let (near, far) = tokio::io::duplex(1 << 17);
        let stop = CancellationToken::new();
        let carried = tokio::spawn({
            let stop = stop.clone();
            async move { carry(far, Local::Connected(&socket), stop).await }
        });
        let (mut near_read, mut near_write) = tokio::io::split(near);
        write(&mut near_write, b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = pod.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..len], b"ping");
        pod.send_to(b"pong", from).await.unwrap();
        let mut frame = Vec::new();
        assert_eq!(read(&mut near_read, &mut frame).await.unwrap(), Some(4));
        assert_eq!(&frame[..4], b"pong");
        stop.cancel();
        carried.await.unwrap();
    }

    #[test]
    fn client_flows_queue_per_client_up_to_a_limit_and_end_by_id() {
        let a: SocketAddr = "127.42.0.5:4000".parse().unwrap();
        let b: SocketAddr = "127.42.0.6:4000".parse().unwrap();
        let mut flows = ClientFlows::new(1);
        let ping = Bytes::from_static(b"ping");
        assert_eq!(flows.deliver(a, ping.clone()), Some(ping.clone()));
        let (first, mut queue) = flows.start(a, ping.clone());
        assert_eq!(flows.deliver(a, Bytes::from_static(b"two")), None);
        assert_eq!(queue.try_recv().unwrap(), ping);
        assert_eq!(queue.try_recv().unwrap(), Bytes::from_static(b"two"));
        assert_eq!(
            flows.room(),
            Room::Full { first: true },
            "one flow is the limit"
        );
        assert_eq!(flows.deliver(b, ping.clone()), Some(ping.clone()));
        // Logged once per spell of a full table.
        assert_eq!(flows.room(), Room::Full { first: false });
        // A flow whose task ended (its queue dropped) makes room and takes no datagrams.
        drop(queue);
        assert_eq!(flows.deliver(a, ping.clone()), Some(ping.clone()));
        assert_eq!(flows.room(), Room::Free);
        let (second, _queue) = flows.start(a, ping.clone());
        // The first flow's late ending does not end its successor.
        flows.end(a, first);
        assert!(!flows.is_empty());
        flows.end(a, second);
        assert!(flows.is_empty());
        // Datagrams beyond a flow's queue are dropped.
        let (_, mut queue) = flows.start(b, ping.clone());
        for _ in 0..CLIENT_QUEUE * 2 {
            assert_eq!(flows.deliver(b, ping.clone()), None);
        }
        let mut queued = 0;
        while queue.try_recv().is_ok() {
            queued += 1;
        }
        assert_eq!(queued, CLIENT_QUEUE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_flow_ends_after_its_idle_timeout_and_not_before() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (_queue, queued) = mpsc::channel(1);
        let (near, far) = tokio::io::duplex(1024);
        let local = Local::Shared {
            socket: &socket,
            client: "127.0.0.1:9".parse().unwrap(),
            queue: queued,
        };
        let started = tokio::time::Instant::now();
        carry(far, local, CancellationToken::new()).await;
        assert_eq!(started.elapsed(), IDLE_TIMEOUT);
        drop(near);
    }
}
