//! A misbehaving device for tests and benches: publishes junk as a node at full speed, while
//! a sampler records a process's peak resident memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Event, Packet, QoS};

use crate::mqtt::{MqttEndpoint, connect};

/// What a flood sent.
#[derive(Debug, Clone, Copy)]
pub struct FloodReport {
    /// Publishes handed to the connection.
    pub messages: u64,
    /// Payload bytes handed to the connection.
    pub bytes: u64,
    /// How long it ran.
    pub elapsed: Duration,
}

/// A flood running in background threads.
pub struct Flood {
    sent: Arc<AtomicU64>,
    publisher: JoinHandle<FloodReport>,
}

impl Flood {
    /// Connects as node `node` (password `token`) and publishes `rounds` times one
    /// oversize payload of `big` bytes and `small_per_round` payloads of `small` bytes to
    /// the node's own status topic (QoS 0, as fast as the connection takes them).
    pub fn start(
        broker: &MqttEndpoint,
        node: &str,
        token: &str,
        rounds: usize,
        (big, small, small_per_round): (usize, usize, usize),
    ) -> Flood {
        let (client, mut connection) = connect(broker, node, node, token).expect("flood connects");
        std::thread::spawn(move || {
            for event in connection.iter() {
                match event {
                    Ok(Event::Incoming(Packet::Disconnect)) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        });
        let topic = format!("wf/v1/n/{node}/up/status");
        let sent = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&sent);
        let publisher = std::thread::spawn(move || {
            let start = Instant::now();
            let (big, small) = (vec![0xa5u8; big], vec![0x5au8; small]);
            let mut messages = 0;
            'rounds: for _ in 0..rounds {
                let round =
                    std::iter::once(&big).chain(std::iter::repeat_n(&small, small_per_round));
                for payload in round {
                    if client
                        .publish(&topic, QoS::AtMostOnce, false, payload.clone())
                        .is_err()
                    {
                        break 'rounds;
                    }
                    messages += 1;
                    counter.fetch_add(payload.len() as u64, Ordering::Relaxed);
                }
            }
            let _ = client.disconnect();
            FloodReport {
                messages,
                bytes: counter.load(Ordering::Relaxed),
                elapsed: start.elapsed(),
            }
        });
        Flood { sent, publisher }
    }

    /// Payload bytes handed to the connection so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits for the flood to end.
    pub fn join(self) -> FloodReport {
        self.publisher.join().expect("the flood thread")
    }
}

/// The resident set size of process `pid` in bytes (Linux `/proc`), if readable.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a process's RSS every 20 ms in the background and keeps the peak.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> RssSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut peak = 0;
            while !flag.load(Ordering::Relaxed) {
                peak = peak.max(rss_bytes(pid).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(20));
            }
            peak
        });
        RssSampler { stop, thread }
    }

    /// Stops sampling; the peak RSS seen, in bytes.
    pub fn peak(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler thread")
    }
}
