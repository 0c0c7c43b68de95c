//! UDP on NodePort and LoadBalancer listeners: every client address is a flow (conntrack's
//! role) to the endpoint its first datagram picked ([`super::Shared::pick`]: in turn, or
//! by client IP with `sessionAffinity: ClientIP`; only this node's endpoints with
//! `externalTrafficPolicy: Local`), and the endpoint's answers go back to the client from
//! the listener's address.
//!
//! A flow sends from its own socket on the alias of the node's own address in its pod
//! range (`.1`, which k3s gives the `cni0` bridge and no pod gets), so the endpoint pod
//! sees that address as the client (as behind kube-proxy's masquerade) and its answers
//! come back to the flow, also from a pod on another node (through
//! [`crate::net::remote_datagrams`]). A flow ends after [`IDLE_TIMEOUT`] without
//! datagrams either way; at most [`MAX_FLOWS`] per listener, beyond which new clients'
//! datagrams are dropped (and logged). A datagram that has nowhere to go (no ready
//! endpoint, this node's pod range not known yet) is dropped and why is logged once per
//! Service, as a TCP connection is closed: a client on the host has no other signal.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_protocol::network::loopback_alias;

use super::{Listener, Shared, lock};
use crate::net::datagrams::{ClientFlows, IDLE_TIMEOUT, MAX_DATAGRAM, Room};

/// The most flows one UDP listener keeps at once.
pub const MAX_FLOWS: usize = 1024;

/// Serves one UDP listener until `token`.
pub(super) async fn serve(
    socket: UdpSocket,
    listener: Listener,
    shared: Arc<Shared>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
    let socket = Arc::new(socket);
    let mut flows = ClientFlows::new(MAX_FLOWS);
    let (ended, mut endings) = mpsc::unbounded_channel::<(SocketAddr, u64)>();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, client) = tokio::select! {
            () = token.cancelled() => break,
            Some((client, id)) = endings.recv() => {
                flows.end(client, id);
                continue;
            }
            received = socket.recv_from(&mut buf) => match received {
                Ok(received) => received,
                Err(_) => continue,
            },
        };
        let Some(payload) = flows.deliver(client, Bytes::copy_from_slice(&buf[..len])) else {
            continue;
        };
        if let Room::Full { first } = flows.room() {
            if first {
                tracing::warn!(%listener, limit = MAX_FLOWS, "too many UDP flows on a NodePort/LoadBalancer listener; dropping new clients' datagrams");
            }
            continue;
        }
        let Some((upstream, endpoint)) = open_flow(&shared, listener, client).await else {
            continue;
        };
        let (id, queue) = flows.start(client, payload);
        let flow = Flow {
            socket: Arc::clone(&socket),
            upstream,
            endpoint,
            client,
        };
        let (shared, token, ended) = (Arc::clone(&shared), token.clone(), ended.clone());
        tracker.spawn(async move {
            flow.run(&shared, queue, token).await;
            let _ = ended.send((client, id));
        });
    }
}

/// A new flow's socket, connected to the endpoint its client gets, and that endpoint.
async fn open_flow(
    shared: &Shared,
    listener: Listener,
    client: SocketAddr,
) -> Option<(UdpSocket, SocketAddr)> {
    let (endpoint, target) = shared.pick(listener, client)?;
    let Some(source) = shared.directory.node_pod_address() else {
        if lock(&shared.refused).insert(target.clone()) {
            tracing::warn!(service = %target.service(), port = target.port,
                "dropping UDP datagrams to a NodePort/LoadBalancer Service: this node's pod range is not known yet");
        }
        return None;
    };
    if let Err(why) = shared.directory.reach_datagrams(endpoint) {
        tracing::debug!(%endpoint, ?why, "dropping a UDP datagram to an unreachable endpoint");
        return None;
    }
    let opened = async {
        let upstream = UdpSocket::bind(SocketAddr::new(loopback_alias(source).into(), 0)).await?;
        upstream.connect(endpoint).await?;
        Ok::<_, std::io::Error>(upstream)
    };
    match opened.await {
        Ok(upstream) => {
            lock(&shared.refused).remove(&target);
            Some((upstream, endpoint))
        }
        Err(err) => {
            tracing::warn!(%endpoint, %err, "cannot open a UDP flow to an endpoint");
            None
        }
    }
}

/// One client's flow.
struct Flow {
    /// The listener's socket: answers leave from its address.
    socket: Arc<UdpSocket>,
    /// Connected to the endpoint.
    upstream: UdpSocket,
    endpoint: SocketAddr,
    client: SocketAddr,
}

impl Flow {
    /// Carries datagrams both ways until idle, the client's queue closes, or `token`.
    async fn run(
        self,
        shared: &Shared,
        mut queue: mpsc::Receiver<Bytes>,
        token: CancellationToken,
    ) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let step = async {
                tokio::select! {
                    () = token.cancelled() => false,
                    payload = queue.recv() => match payload {
                        // Every datagram keeps a remote endpoint's forwarder open.
                        Some(payload) if shared.directory.reach_datagrams(self.endpoint).is_err() => {
                            drop(payload);
                            false
                        }
                        Some(payload) => {
                            if let Err(err) = self.upstream.send(&payload).await {
                                tracing::trace!(endpoint = %self.endpoint, %err, "a datagram to an endpoint failed");
                            }
                            true
                        }
                        None => false,
                    },
                    received = self.upstream.recv(&mut buf) => match received {
                        Ok(len) => {
                            if let Err(err) = self.socket.send_to(&buf[..len], self.client).await {
                                tracing::trace!(client = %self.client, %err, "an answer to a client failed");
                            }
                            true
                        }
                        // Nothing listens on the endpoint's port (ICMP): the flow goes on.
                        Err(err) => err.kind() == std::io::ErrorKind::ConnectionRefused,
                    },
                }
            };
            if tokio::time::timeout(IDLE_TIMEOUT, step).await != Ok(true) {
                break;
            }
        }
    }
}
