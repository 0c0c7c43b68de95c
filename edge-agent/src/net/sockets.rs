//! `wasi:sockets` for pods: wasmtime-wasi's own implementation, with every address
//! passing through the pod's [`PodNet`] on the way in and out.
//!
//! The socket types of wasmtime-wasi are opaque, so this wraps the generated host traits
//! (`tcp`, `tcp-create-socket`, `udp`, `udp-create-socket`, `ip-name-lookup`) and delegates each call to wasmtime's
//! implementation after rewriting its arguments (see `notes/wasmtime-runtime.md` §6).
//! The wrappers shadow wasmtime's in the component linker ([`add_to_linker`]).
//! `socket_addr_check` stays the last gate on the rewritten host addresses
//! ([`PodNet::allows_host_bind`]).
//!
//! A pod without a network (delivered by an older server) has no `PodNet`: its socket
//! calls go to wasmtime unchanged, and the WASI context grants it no sockets at all.
//! UDP sockets bind like TCP ones (on the pod's alias); each datagram's destination is
//! mapped by [`PodNet::datagram_address`] before wasmtime sends it, ClusterIP flows are
//! kept in [`UdpFlows`], and received datagrams show the address the guest sent to.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use futures::FutureExt;
use wasmtime::component::{HasData, Linker, Resource};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::bindings::sockets::ip_name_lookup::{
    self, HostResolveAddressStream, ResolveAddressStream,
};
use wasmtime_wasi::p2::bindings::sockets::network::{
    self, ErrorCode, IpAddress, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{self, HostTcpSocket, ShutdownType, TcpSocket};
use wasmtime_wasi::p2::bindings::sockets::udp::{
    self, HostIncomingDatagramStream, HostOutgoingDatagramStream, HostUdpSocket, IncomingDatagram,
    IncomingDatagramStream, OutgoingDatagram, OutgoingDatagramStream, UdpSocket,
};
use wasmtime_wasi::p2::bindings::sockets::{
    instance_network, tcp_create_socket, udp_create_socket,
};
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, SocketError, SocketResult};
use wasmtime_wasi::sockets::{SocketAddrUse, WasiSocketsCtxView};

use super::udp_flows::UdpFlows;
use super::{Lookup, PodNet, Refusal};

/// What the wrapped traits work on: wasmtime's view plus the pod's network.
pub struct PodSockets<'a> {
    /// wasmtime-wasi's own view, which does the real work.
    pub inner: WasiSocketsCtxView<'a>,
    /// The pod's network; `None` for a pod without one.
    pub net: Option<&'a PodNet>,
    /// The pod's name (a lookup of it answers the pod IP, as `/etc/hosts` would).
    pub pod_name: &'a str,
    /// The port each pending host lookup's rule allows, by stream handle.
    pub lookups: &'a mut HashMap<u32, Option<u16>>,
    /// The ClusterIP and port each socket connected through a Service asked for, by socket
    /// handle: the peer the guest sees, as behind kube-proxy's NAT.
    pub service_peers: &'a mut HashMap<u32, SocketAddr>,
    /// The ClusterIP flows of the UDP sockets.
    pub udp_flows: &'a mut UdpFlows,
}

/// The [`HasData`] marker of [`PodSockets`].
pub struct PodSocketsData;

impl HasData for PodSocketsData {
    type Data<'a> = PodSockets<'a>;
}

/// Store data that can lend out [`PodSockets`].
pub trait PodSocketsView: Send {
    /// The view for one host call.
    fn pod_sockets(&mut self) -> PodSockets<'_>;
}

/// Links the wrapped interfaces over wasmtime's (call after `p2::add_to_linker_async`).
pub fn add_to_linker<T: PodSocketsView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    tcp::add_to_linker::<T, PodSocketsData>(linker, T::pod_sockets)?;
    tcp_create_socket::add_to_linker::<T, PodSocketsData>(linker, T::pod_sockets)?;
    ip_name_lookup::add_to_linker::<T, PodSocketsData>(linker, T::pod_sockets)?;
    udp::add_to_linker::<T, PodSocketsData>(linker, T::pod_sockets)?;
    udp_create_socket::add_to_linker::<T, PodSocketsData>(linker, T::pod_sockets)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Grants a pod with a network TCP and UDP sockets and name lookups, gated by its
/// [`PodNet`].
pub fn grant(builder: &mut WasiCtxBuilder, net: std::sync::Arc<PodNet>) {
    builder
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true)
        .socket_addr_check(move |addr, used| {
            let allowed = match used {
                SocketAddrUse::TcpBind | SocketAddrUse::TcpListen => net.allows_host_bind(addr),
                // Checked before the connect: a pod on another node gets its forwarder.
                SocketAddrUse::TcpConnect => {
                    net.allows_host_connect(addr) && net.services().reach(addr)
                }
                SocketAddrUse::TcpAccept => true,
                SocketAddrUse::UdpBind => net.allows_host_bind(addr),
                // Destinations were mapped (and refused) per datagram before this.
                SocketAddrUse::UdpSend => net.allows_host_connect(addr),
                // The socket is bound on the pod's alias: only the host's loopback reaches it.
                SocketAddrUse::UdpReceive => true,
            };
            Box::pin(async move { allowed })
        });
}

fn refused(refusal: Refusal) -> SocketError {
    match refusal {
        Refusal::NotBindable => ErrorCode::AddressNotBindable,
        Refusal::Denied => ErrorCode::AccessDenied,
        Refusal::Ipv6 => ErrorCode::NotSupported,
        Refusal::NoEndpoints => ErrorCode::ConnectionRefused,
        Refusal::Elsewhere => ErrorCode::RemoteUnreachable,
        Refusal::NoSuchName => ErrorCode::NameUnresolvable,
        Refusal::UdpEgress => ErrorCode::NotSupported,
        Refusal::Unreachable => ErrorCode::RemoteUnreachable,
        Refusal::SocketLimit => ErrorCode::NewSocketLimit,
    }
    .into()
}

impl PodSockets<'_> {
    fn guest(&self, host: IpSocketAddress) -> IpSocketAddress {
        match self.net {
            Some(net) => net.guest_address(host.into()).into(),
            None => host,
        }
    }

    fn guest_peer(&self, host: IpSocketAddress) -> IpSocketAddress {
        match self.net {
            Some(net) => net.guest_peer(host.into()).into(),
            None => host,
        }
    }

    /// Binds an unbound socket to the pod's alias, so that what it connects to or
    /// listens on sees the pod, not the host.
    fn bind_to_alias(
        &mut self,
        net: &PodNet,
        this: &Resource<TcpSocket>,
        network: Resource<Network>,
    ) -> SocketResult<()> {
        if HostTcpSocket::local_address(&mut self.inner, borrow(this)).is_ok() {
            return Ok(());
        }
        let alias = SocketAddr::new(net.alias().into(), 0);
        // The address check is ready at once, so the bind completes without waiting.
        let bound = HostTcpSocket::start_bind(&mut self.inner, borrow(this), network, alias.into())
            .now_or_never()
            .unwrap_or(Err(ErrorCode::WouldBlock.into()));
        bound?;
        HostTcpSocket::finish_bind(&mut self.inner, borrow(this))
    }
}

fn borrow<T: 'static>(resource: &Resource<T>) -> Resource<T> {
    Resource::new_borrow(resource.rep())
}

impl tcp_create_socket::Host for PodSockets<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        if self.net.is_some() && address_family == IpAddressFamily::Ipv6 {
            return Err(refused(Refusal::Ipv6));
        }
        tcp_create_socket::Host::create_tcp_socket(&mut self.inner, address_family)
    }
}

impl tcp::Host for PodSockets<'_> {}

impl network::Host for PodSockets<'_> {
    fn convert_error_code(&mut self, error: SocketError) -> wasmtime::Result<ErrorCode> {
        network::Host::convert_error_code(&mut self.inner, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<network::Error>,
    ) -> wasmtime::Result<Option<ErrorCode>> {
        network::Host::network_error_code(&mut self.inner, err)
    }
}

impl network::HostNetwork for PodSockets<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.inner, this)
    }
}

/// Delegates socket methods that carry no address to wasmtime's implementation unchanged:
/// `delegate!(Socket, HostTrait { method(args) -> Result; ... })`.
macro_rules! delegate {
    ($socket:ty, $host:ident { $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* }) => {
        $(fn $name(&mut self, this: Resource<$socket> $(, $arg: $ty)*) -> $ret {
            $host::$name(&mut self.inner, this $(, $arg)*)
        })*
    };
}

impl HostTcpSocket for PodSockets<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        let address = match self.net {
            Some(net) => net.bind_address(local_address.into()).map_err(refused)?,
            None => local_address.into(),
        };
        HostTcpSocket::start_bind(&mut self.inner, this, network, address.into()).await
    }

    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        let Some(net) = self.net else {
            return HostTcpSocket::start_connect(&mut self.inner, this, network, remote_address);
        };
        let target = net
            .connect_address(remote_address.into())
            .map_err(refused)?;
        if net.is_cluster_destination(target) {
            self.bind_to_alias(net, &this, borrow(&network))?;
        }
        let asked: SocketAddr = remote_address.into();
        if net.is_service_address(asked) {
            self.service_peers.insert(this.rep(), asked);
        }
        HostTcpSocket::start_connect(&mut self.inner, this, network, target.into())
    }

    async fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        if let Some(net) = self.net {
            // A listen without a bind would bind every host address: bind the alias.
            let network = instance_network::Host::instance_network(&mut self.inner)
                .map_err(SocketError::trap)?;
            let bound = self.bind_to_alias(net, &this, borrow(&network));
            network::HostNetwork::drop(&mut self.inner, network).map_err(SocketError::trap)?;
            bound?;
        }
        HostTcpSocket::start_listen(&mut self.inner, this).await
    }

    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(
        Resource<TcpSocket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        HostTcpSocket::accept(&mut self.inner, this)
    }

    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        let host = HostTcpSocket::local_address(&mut self.inner, this)?;
        Ok(self.guest(host))
    }

    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        let rep = this.rep();
        let host = HostTcpSocket::remote_address(&mut self.inner, this)?;
        match self.service_peers.get(&rep) {
            Some(service) => Ok((*service).into()),
            None => Ok(self.guest_peer(host)),
        }
    }

    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        self.service_peers.remove(&this.rep());
        HostTcpSocket::drop(&mut self.inner, this)
    }

    delegate!(TcpSocket, HostTcpSocket {
        finish_bind() -> SocketResult<()>;
        finish_connect() -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)>;
        finish_listen() -> SocketResult<()>;
        is_listening() -> wasmtime::Result<bool>;
        address_family() -> wasmtime::Result<IpAddressFamily>;
        set_listen_backlog_size(value: u64) -> SocketResult<()>;
        keep_alive_enabled() -> SocketResult<bool>;
        set_keep_alive_enabled(value: bool) -> SocketResult<()>;
        keep_alive_idle_time() -> SocketResult<u64>;
        set_keep_alive_idle_time(value: u64) -> SocketResult<()>;
        keep_alive_interval() -> SocketResult<u64>;
        set_keep_alive_interval(value: u64) -> SocketResult<()>;
        keep_alive_count() -> SocketResult<u32>;
        set_keep_alive_count(value: u32) -> SocketResult<()>;
        hop_limit() -> SocketResult<u8>;
        set_hop_limit(value: u8) -> SocketResult<()>;
        receive_buffer_size() -> SocketResult<u64>;
        set_receive_buffer_size(value: u64) -> SocketResult<()>;
        send_buffer_size() -> SocketResult<u64>;
        set_send_buffer_size(value: u64) -> SocketResult<()>;
        subscribe() -> wasmtime::Result<Resource<DynPollable>>;
        shutdown(shutdown_type: ShutdownType) -> SocketResult<()>;
    });
}

impl ip_name_lookup::Host for PodSockets<'_> {
    fn resolve_addresses(
        &mut self,
        network: Resource<Network>,
        name: String,
    ) -> Result<Resource<ResolveAddressStream>, SocketError> {
        let Some(net) = self.net else {
            return ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, name);
        };
        if name.parse::<IpAddr>().is_ok() {
            return ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, name);
        }
        match net.lookup(&name, self.pod_name).map_err(refused)? {
            // wasmtime answers an IP literal itself: the stream yields just that address.
            Lookup::Local(ip) => {
                ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, ip.to_string())
            }
            Lookup::Host { name, port } => {
                let stream =
                    ip_name_lookup::Host::resolve_addresses(&mut self.inner, network, name)?;
                self.lookups.insert(stream.rep(), port);
                Ok(stream)
            }
        }
    }
}

impl HostResolveAddressStream for PodSockets<'_> {
    fn resolve_next_address(
        &mut self,
        resource: Resource<ResolveAddressStream>,
    ) -> Result<Option<IpAddress>, SocketError> {
        let rep = resource.rep();
        let next = HostResolveAddressStream::resolve_next_address(&mut self.inner, resource)?;
        if let (Some(net), Some(address), Some(port)) = (self.net, &next, self.lookups.get(&rep)) {
            let ip: IpAddr = match *address {
                IpAddress::Ipv4((a, b, c, d)) => [a, b, c, d].into(),
                IpAddress::Ipv6(_) => return Ok(next),
            };
            net.learn(ip, *port);
        }
        Ok(next)
    }

    fn subscribe(
        &mut self,
        resource: Resource<ResolveAddressStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostResolveAddressStream::subscribe(&mut self.inner, resource)
    }

    fn drop(&mut self, resource: Resource<ResolveAddressStream>) -> wasmtime::Result<()> {
        self.lookups.remove(&resource.rep());
        HostResolveAddressStream::drop(&mut self.inner, resource)
    }
}

impl udp_create_socket::Host for PodSockets<'_> {
    async fn create_udp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<UdpSocket>> {
        if self.net.is_some() && address_family == IpAddressFamily::Ipv6 {
            return Err(refused(Refusal::Ipv6));
        }
        udp_create_socket::Host::create_udp_socket(&mut self.inner, address_family).await
    }
}

impl udp::Host for PodSockets<'_> {}

impl PodSockets<'_> {
    /// Where a datagram of `socket` to `guest` really goes (a ClusterIP keeps its flow; a
    /// pod on another node gets its forwarder).
    fn datagram_target(&mut self, socket: u32, guest: SocketAddr) -> SocketResult<SocketAddr> {
        let Some(net) = self.net else {
            return Ok(guest);
        };
        let now = std::time::Instant::now();
        let egress = net
            .services()
            .udp_egress()
            .filter(|_| net.is_udp_egress(guest));
        let target = if let Some(egress) = egress {
            let owner = self.udp_local_host(socket)?;
            self.udp_flows.destination(socket, guest, now, || {
                match egress.open(owner, guest) {
                    Ok((proxy, guard)) => Ok((proxy, Some(guard))),
                    Err(err) => {
                        tracing::warn!(%err, destination = %guest, "refusing a pod's UDP egress flow");
                        Err(Refusal::SocketLimit)
                    }
                }
            })
        } else if net.is_service_address(guest) {
            self.udp_flows.destination(socket, guest, now, || {
                net.datagram_address(guest).map(|host| (host, None))
            })
        } else {
            net.datagram_address(guest)
        };
        let target = target.map_err(refused)?;
        net.services().reach_datagrams(target).map_err(refused)?;
        Ok(target)
    }

    /// The host address a UDP socket is bound at (the pod's alias and its port).
    fn udp_local_host(&mut self, socket: u32) -> SocketResult<SocketAddr> {
        let resource = Resource::<UdpSocket>::new_borrow(socket);
        Ok(HostUdpSocket::local_address(&mut self.inner, resource)?.into())
    }

    /// Prepares the datagrams of a connected socket (they carry no address): its remote
    /// may be a pod on another node whose forwarder closed while the socket was idle.
    fn reach_connected_remote(&mut self, socket: u32) -> SocketResult<()> {
        let Some(net) = self.net else {
            return Ok(());
        };
        let resource = Resource::<UdpSocket>::new_borrow(socket);
        match HostUdpSocket::remote_address(&mut self.inner, resource) {
            Ok(host) => net.services().reach_datagrams(host.into()).map_err(refused),
            // Not connected: wasmtime refuses the datagrams without an address itself.
            Err(_) => Ok(()),
        }
    }

    /// The source the guest sees for a datagram `socket` received from `host`.
    fn datagram_source(&mut self, socket: Option<u32>, host: SocketAddr) -> SocketAddr {
        let Some(net) = self.net else {
            return host;
        };
        socket
            .and_then(|socket| {
                self.udp_flows
                    .reply_source(socket, host, std::time::Instant::now())
            })
            .unwrap_or_else(|| net.guest_peer(host))
    }
}

impl HostUdpSocket for PodSockets<'_> {
    async fn start_bind(
        &mut self,
        this: Resource<UdpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        let address = match self.net {
            Some(net) => net.bind_address(local_address.into()).map_err(refused)?,
            None => local_address.into(),
        };
        HostUdpSocket::start_bind(&mut self.inner, this, network, address.into()).await
    }

    async fn stream(
        &mut self,
        this: Resource<UdpSocket>,
        remote_address: Option<IpSocketAddress>,
    ) -> SocketResult<(
        Resource<IncomingDatagramStream>,
        Resource<OutgoingDatagramStream>,
    )> {
        let socket = this.rep();
        let remote = match remote_address {
            Some(guest) => {
                let target = self.datagram_target(socket, guest.into())?;
                self.udp_flows.pin(socket, guest.into());
                Some(target.into())
            }
            None => None,
        };
        let (incoming, outgoing) = HostUdpSocket::stream(&mut self.inner, this, remote).await?;
        self.udp_flows.link(socket, incoming.rep(), outgoing.rep());
        Ok((incoming, outgoing))
    }

    fn local_address(&mut self, this: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        let host = HostUdpSocket::local_address(&mut self.inner, this)?;
        Ok(self.guest(host))
    }

    fn remote_address(&mut self, this: Resource<UdpSocket>) -> SocketResult<IpSocketAddress> {
        let socket = this.rep();
        let host = HostUdpSocket::remote_address(&mut self.inner, this)?;
        Ok(self.datagram_source(Some(socket), host.into()).into())
    }

    fn drop(&mut self, this: Resource<UdpSocket>) -> wasmtime::Result<()> {
        self.udp_flows.forget_socket(this.rep());
        HostUdpSocket::drop(&mut self.inner, this)
    }

    delegate!(UdpSocket, HostUdpSocket {
        finish_bind() -> SocketResult<()>;
        address_family() -> wasmtime::Result<IpAddressFamily>;
        unicast_hop_limit() -> SocketResult<u8>;
        set_unicast_hop_limit(value: u8) -> SocketResult<()>;
        receive_buffer_size() -> SocketResult<u64>;
        set_receive_buffer_size(value: u64) -> SocketResult<()>;
        send_buffer_size() -> SocketResult<u64>;
        set_send_buffer_size(value: u64) -> SocketResult<()>;
        subscribe() -> wasmtime::Result<Resource<DynPollable>>;
    });
}

impl HostIncomingDatagramStream for PodSockets<'_> {
    fn receive(
        &mut self,
        this: Resource<IncomingDatagramStream>,
        max_results: u64,
    ) -> SocketResult<Vec<IncomingDatagram>> {
        let socket = self.udp_flows.socket_of(this.rep());
        let mut datagrams =
            HostIncomingDatagramStream::receive(&mut self.inner, this, max_results)?;
        for datagram in &mut datagrams {
            let host: SocketAddr = datagram.remote_address.into();
            datagram.remote_address = self.datagram_source(socket, host).into();
        }
        Ok(datagrams)
    }

    fn subscribe(
        &mut self,
        this: Resource<IncomingDatagramStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostIncomingDatagramStream::subscribe(&mut self.inner, this)
    }

    fn drop(&mut self, this: Resource<IncomingDatagramStream>) -> wasmtime::Result<()> {
        self.udp_flows.forget_stream(this.rep());
        HostIncomingDatagramStream::drop(&mut self.inner, this)
    }
}

impl HostOutgoingDatagramStream for PodSockets<'_> {
    fn check_send(&mut self, this: Resource<OutgoingDatagramStream>) -> SocketResult<u64> {
        HostOutgoingDatagramStream::check_send(&mut self.inner, this)
    }

    fn send(
        &mut self,
        this: Resource<OutgoingDatagramStream>,
        datagrams: Vec<OutgoingDatagram>,
    ) -> SocketResult<u64> {
        let socket = self.udp_flows.socket_of(this.rep()).unwrap_or(this.rep());
        if datagrams.iter().any(|d| d.remote_address.is_none()) {
            self.reach_connected_remote(socket)?;
        }
        let mut mapped = Vec::with_capacity(datagrams.len());
        for mut datagram in datagrams {
            if let Some(guest) = datagram.remote_address {
                match self.datagram_target(socket, guest.into()) {
                    Ok(host) => datagram.remote_address = Some(host.into()),
                    // A refusal ends the batch; it is the error only if it comes first
                    // (wasi: a send that sent something returns no error).
                    Err(err) if mapped.is_empty() => return Err(err),
                    Err(_) => break,
                }
            }
            mapped.push(datagram);
        }
        HostOutgoingDatagramStream::send(&mut self.inner, this, mapped)
    }

    fn subscribe(
        &mut self,
        this: Resource<OutgoingDatagramStream>,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        HostOutgoingDatagramStream::subscribe(&mut self.inner, this)
    }

    async fn drop(&mut self, this: Resource<OutgoingDatagramStream>) -> wasmtime::Result<()> {
        self.udp_flows.forget_stream(this.rep());
        HostOutgoingDatagramStream::drop(&mut self.inner, this).await
    }
}
