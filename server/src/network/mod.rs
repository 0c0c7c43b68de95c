//! The pod network on the server's side (the node IPAM controller's and CNI IPAM's
//! role): every node gets a `/24` of the cluster CIDR (`spec.podCIDR`), every pod an IP
//! from its node's range when it is bound (`status.podIP`). [`ipam`] holds the pure
//! allocation rules; `controllers::node_ipam` hands out node ranges and the scheduler
//! hands out pod IPs. The agents map pod IPs onto sockets
//! (`wasmfleet_protocol::network`). [`service_ips`] holds the rules of Services' virtual
//! IPs (the service CIDR), which the API hands out when a Service is created, and
//! [`node_ports`] those of NodePorts, handed out in the same write; [`routes`] compiles
//! Ingresses (and, with [`gateway`], Gateways and HTTPRoutes) into the HTTP routes the
//! agents serve, and [`tls`] the certificates they terminate TLS with.

pub mod gateway;
pub mod ipam;
pub mod node_ports;
pub mod routes;
pub mod service_ips;
pub mod tls;
