//! The module fetcher over a real link and a real broker: chunked download, verification,
//! shared downloads, re-requests, not-found and timeouts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod link_support;

use std::collections::BTreeMap;
use std::time::Duration;

use link_support::{Broker, FakeServer, init_tracing};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use wasmfleet_agent::link::{self, BackoffPolicy, Link, LinkConfig};
use wasmfleet_agent::modules::{FetchError, FetchTimeouts, ModuleFetcher};
use wasmfleet_agent::state::AgentState;
use wasmfleet_protocol::CHUNK_SIZE;
use wasmfleet_protocol::broker_url::BrokerUrl;
use wasmfleet_protocol::node::EngineInfo;
use wasmfleet_protocol::pod::ModuleRef;

const NODE: &str = "fetch-node";

struct Agent {
    fetcher: ModuleFetcher,
    link: Option<Link>,
    _inbox: link::Inbox,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    dir: tempfile::TempDir,
}

impl Agent {
    fn start(broker: &Broker, timeouts: FetchTimeouts) -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let state = AgentState::open(&dir.path().join("state.redb")).unwrap();
        let (uplink, parts) = link::uplink(NODE);
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let fetcher = ModuleFetcher::new(
            dir.path().join("modules"),
            None,
            uplink.clone(),
            timeouts,
            shutdown.clone(),
            tracker.clone(),
        )
        .unwrap();
        let config = LinkConfig {
            mqtt: BrokerUrl {
                tls: false,
                host: broker.addr.ip().to_string(),
                port: broker.addr.port(),
            },
            transport: rumqttc::Transport::Tcp,
            node_name: NODE.into(),
            password: "token".into(),
            heartbeat_interval: Duration::from_secs(10),
            reconnect: BackoffPolicy {
                base: Duration::from_millis(50),
                max: Duration::from_millis(200),
            },
        };
        let deliveries = link::Deliveries {
            fetcher: fetcher.clone(),
            services: wasmfleet_agent::net::ServiceDirectory::new("pi-1", None),
            credentials: wasmfleet_agent::identity::certificate::TunnelCredentials::load(
                NODE,
                wasmfleet_agent::identity::certificate::TunnelFiles::in_dir(dir.path()),
                None,
            )
            .expect("tunnel key"),
        };
        let info = wasmfleet_agent::node_info::collect(
            BTreeMap::new(),
            engine(),
            Default::default(),
            wasmfleet_agent::node_info::MAX_PODS,
        )
        .expect("the default reserve fits");
        let (link, inbox) = Link::start(&config, parts, info, state, Some(deliveries), &tracker);
        Agent {
            fetcher,
            link: Some(link),
            _inbox: inbox,
            shutdown,
            tracker,
            dir,
        }
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(link) = self.link.take() {
            link.shutdown(Duration::from_secs(2)).await.unwrap();
        }
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), self.tracker.wait())
            .await
            .expect("every task ends");
    }
}

fn engine() -> EngineInfo {
    EngineInfo {
        wasmtime_version: "test".into(),
        target: "test".into(),
        compatibility_key: "00".into(),
        can_compile: true,
    }
}

fn quick() -> FetchTimeouts {
    FetchTimeouts {
        request: Duration::from_millis(300),
        stall: Duration::from_secs(5),
    }
}

/// Bytes that span several chunks, the last one partial.
fn big_module() -> Vec<u8> {
    (0..(2 * CHUNK_SIZE + 12_345))
        .map(|i| (i * 7 % 251) as u8)
        .collect()
}

#[tokio::test]
async fn a_module_arrives_in_chunks_is_verified_and_cached() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let bytes = big_module();
    let module = server.add_module(bytes.clone());
    let agent = Agent::start(&broker, quick());

    let path = tokio::time::timeout(Duration::from_secs(10), agent.fetcher.fetch(&module))
        .await
        .expect("fetch finishes")
        .expect("fetch succeeds");
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(
        path,
        agent
            .dir
            .path()
            .join(format!("modules/{}.wasm", module.digest))
    );
    let requests = server.blob_requests();

    // A second fetch is served from the cache without asking the server.
    let again = agent.fetcher.fetch(&module).await.expect("cached");
    assert_eq!(again, path);
    assert_eq!(server.blob_requests(), requests);
    agent.stop().await;
}

#[tokio::test]
async fn concurrent_fetches_of_one_digest_share_one_download() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = server.add_module(big_module());
    let agent = Agent::start(&broker, quick());

    let fetches: Vec<_> = (0..4).map(|_| agent.fetcher.fetch(&module)).collect();
    let results = tokio::time::timeout(Duration::from_secs(10), futures::future::join_all(fetches))
        .await
        .expect("fetches finish");
    let paths: Vec<_> = results
        .into_iter()
        .map(|r| r.expect("fetch succeeds"))
        .collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    // Three chunks fit in one window: one download asks once.
    assert_eq!(server.blob_requests(), 1);
    agent.stop().await;
}

#[tokio::test]
async fn lost_requests_are_repeated_for_the_missing_chunks_only() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let bytes = big_module();
    let module = server.add_module(bytes.clone());
    server.drop_next_blob_requests(1);
    let agent = Agent::start(&broker, quick());

    let path = tokio::time::timeout(Duration::from_secs(10), agent.fetcher.fetch(&module))
        .await
        .expect("fetch finishes")
        .expect("fetch succeeds after a re-request");
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    assert!(server.blob_requests() >= 2);
    agent.stop().await;
}

#[tokio::test]
async fn a_download_waits_for_the_broker_and_then_completes() {
    init_tracing();
    let mut broker = Broker::unstarted();
    let agent = Agent::start(&broker, quick());
    let bytes = big_module();
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    let module = ModuleRef {
        digest,
        size: bytes.len() as u64,
    };
    let fetch = tokio::spawn(agent.fetcher.fetch(&module));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!fetch.is_finished());

    broker.spawn();
    let server = FakeServer::connect(broker.addr).await;
    server.add_module(bytes.clone());
    let path = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .expect("fetch finishes")
        .unwrap()
        .expect("fetch succeeds once the broker is up");
    assert_eq!(std::fs::read(path).unwrap(), bytes);
    agent.stop().await;
}

#[tokio::test]
async fn an_unknown_module_is_a_clear_not_found_error() {
    init_tracing();
    let broker = Broker::start();
    let _server = FakeServer::connect(broker.addr).await;
    let agent = Agent::start(&broker, quick());
    let module = ModuleRef {
        digest: "ab".repeat(32),
        size: 100,
    };
    let err = tokio::time::timeout(Duration::from_secs(10), agent.fetcher.fetch(&module))
        .await
        .expect("fetch finishes")
        .expect_err("unknown module");
    assert_eq!(err, FetchError::NotFound("ab".repeat(32)));
    assert!(err.to_string().contains("not found"), "{err}");
    agent.stop().await;
}

#[tokio::test]
async fn bytes_that_do_not_match_the_digest_are_discarded() {
    init_tracing();
    let broker = Broker::start();
    let server = FakeServer::connect(broker.addr).await;
    let module = server.add_module_as(&"cd".repeat(32), big_module());
    let agent = Agent::start(&broker, quick());
    let err = tokio::time::timeout(Duration::from_secs(10), agent.fetcher.fetch(&module))
        .await
        .expect("fetch finishes")
        .expect_err("digest mismatch");
    assert!(matches!(err, FetchError::DigestMismatch { .. }), "{err}");
    let leftovers: Vec<_> = std::fs::read_dir(agent.dir.path().join("modules"))
        .unwrap()
        .collect();
    assert!(
        leftovers.is_empty(),
        "nothing stays in the cache: {leftovers:?}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_server_that_never_answers_gives_a_timeout() {
    init_tracing();
    let broker = Broker::start();
    let agent = Agent::start(
        &broker,
        FetchTimeouts {
            request: Duration::from_millis(100),
            stall: Duration::from_millis(500),
        },
    );
    let module = ModuleRef {
        digest: "ef".repeat(32),
        size: 100,
    };
    let err = tokio::time::timeout(Duration::from_secs(10), agent.fetcher.fetch(&module))
        .await
        .expect("fetch finishes")
        .expect_err("timeout");
    assert!(matches!(err, FetchError::Timeout { .. }), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    agent.stop().await;
}

#[tokio::test]
async fn bad_references_are_refused_before_any_request() {
    init_tracing();
    let broker = Broker::start();
    let agent = Agent::start(&broker, quick());
    for module in [
        ModuleRef {
            digest: "not-hex".into(),
            size: 10,
        },
        ModuleRef {
            digest: "ab".repeat(32),
            size: 0,
        },
        ModuleRef {
            digest: "ab".repeat(32),
            size: 65 << 20,
        },
    ] {
        let err = agent.fetcher.fetch(&module).await.expect_err("refused");
        assert!(matches!(err, FetchError::InvalidRef(_)), "{err}");
    }
    agent.stop().await;
}
