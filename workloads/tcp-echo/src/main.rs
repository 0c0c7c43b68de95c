//! `tcp-echo`: a TCP echo server (RFC 862) as a wasm32-wasip2 command component.
//!
//! Listens on `0.0.0.0:PORT` (`--port N`, default 7, the echo port), prints
//! `listening on 0.0.0.0:PORT`, then serves one connection at a time, sending every byte
//! back until the client closes. Each finished connection prints one line:
//!
//! ```text
//! 10.0.0.5:51234 closed after 12 bytes
//! ```
//!
//! With `--http` it answers every connection with one HTTP/1.1 response instead of
//! echoing: it reads the request head and sends `200 OK` with the body `ok` (what
//! Kubernetes `httpGet` probes need), or the value of `$MESSAGE` when it is set (so two
//! Deployments of one module can be told apart behind a Service or an Ingress), printing
//! `PEER GET PATH` for each request.
//!
//! With `--connect HOST:PORT [--send TEXT]` it is the client instead: it connects
//! (retrying for a few seconds while the server is not listening yet, as a container
//! started next to it may not be), sends TEXT and a newline, and prints what came back:
//!
//! ```text
//! echo from 10.42.0.5:7: hello
//! ```
//!
//! With `--connect HOST:PORT --bench BYTES ROUNDS` it measures the path to an echo server:
//! it sends BYTES in 64 KiB chunks, reading each chunk's echo before the next, then makes
//! ROUNDS one-byte round trips, and prints
//!
//! ```text
//! throughput: 67108864 bytes in 812 ms: 78.8 MiB/s
//! latency: 1000 round trips: p50 85 us, p99 210 us
//! ```
//!
//! With `--udp` first it does the same over UDP: `tcp-echo --udp [--port N]` answers every
//! datagram with the same bytes, printing `listening on udp 0.0.0.0:PORT` and then
//! `PEER sent N bytes` per datagram; `tcp-echo --udp --connect HOST:PORT [--send TEXT]`
//! sends TEXT from an ephemeral port (again every 250 ms while no answer came or the send
//! was refused as by a closed port, for up to 10 s, as datagrams to a server that is not
//! up yet are lost) and prints
//!
//! ```text
//! udp echo from 10.43.0.9:53: hello
//! ```
//!
//! Networking is Rust's `std::net`, which wasm32-wasip2 implements on `wasi:sockets`, so
//! the host must grant the component network access: without it binding or connecting
//! fails, the error goes to stderr and the program exits 1. Bad arguments print the
//! usage to stderr and exit 2.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs, UdpSocket};

const USAGE: &str = "usage: tcp-echo [--port N] [--http] | tcp-echo --connect HOST:PORT \
     [--send TEXT | --bench BYTES ROUNDS] | tcp-echo --udp [--port N] | \
     tcp-echo --udp --connect HOST:PORT [--send TEXT]";
/// How often the UDP client sends again while no answer came.
const UDP_RESEND: std::time::Duration = std::time::Duration::from_millis(250);
/// The largest datagram the UDP modes read.
const MAX_DATAGRAM: usize = 65_536;
/// The chunk `--bench` sends before it reads the echo.
const BENCH_CHUNK: usize = 64 * 1024;
/// The most request-head bytes `--http` reads before answering anyway.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long the client keeps retrying a refused connection.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_PORT: u16 = 7;
const BUFFER_BYTES: usize = 16 * 1024;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Serve on this port: echo, or answer HTTP requests.
    Serve { port: u16, http: bool },
    /// Send a line to this address and print the answer.
    Connect { address: String, text: String },
    /// Measure throughput and round trips to an echo server at this address.
    Bench {
        address: String,
        bytes: usize,
        rounds: usize,
    },
    /// Echo datagrams on this port.
    UdpServe { port: u16 },
    /// Send a datagram to this address and print the answer.
    UdpConnect { address: String, text: String },
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match parse(&args) {
        Ok(mode) => mode,
        Err(problem) => {
            eprintln!("tcp-echo: {problem}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let outcome = match mode {
        Mode::Serve { port, http } => serve(port, http),
        Mode::Connect { address, text } => connect(&address, &text),
        Mode::Bench {
            address,
            bytes,
            rounds,
        } => bench(&address, bytes, rounds),
        Mode::UdpServe { port } => serve_udp(port),
        Mode::UdpConnect { address, text } => connect_udp(&address, &text),
    };
    if let Err(problem) = outcome {
        eprintln!("tcp-echo: {problem}");
        std::process::exit(1);
    }
}

/// Parses argv (without the program name).
fn parse(args: &[String]) -> Result<Mode, String> {
    if args.first().map(String::as_str) == Some("--udp") {
        return match parse(&args[1..])? {
            Mode::Serve { port, http: false } => Ok(Mode::UdpServe { port }),
            Mode::Connect { address, text } => Ok(Mode::UdpConnect { address, text }),
            _ => Err(format!("bad arguments for --udp: {}", args[1..].join(" "))),
        };
    }
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let connect = |address: &str, text: &str| Mode::Connect {
        address: address.to_owned(),
        text: text.to_owned(),
    };
    let http = words.last() == Some(&"--http");
    let serve_words = if http {
        &words[..words.len() - 1]
    } else {
        &words[..]
    };
    let serve = |port: u16| Mode::Serve { port, http };
    match serve_words {
        [] => Ok(serve(DEFAULT_PORT)),
        ["--port", port] => port
            .parse()
            .map(serve)
            .map_err(|_| format!("not a valid port: {port:?}")),
        _ => parse_client(&words, connect),
    }
}

/// Parses the client's arguments.
fn parse_client(words: &[&str], connect: impl Fn(&str, &str) -> Mode) -> Result<Mode, String> {
    match words {
        ["--connect", address] => Ok(connect(address, "ping")),
        ["--connect", address, "--send", text] => Ok(connect(address, text)),
        ["--connect", address, "--bench", bytes, rounds] => Ok(Mode::Bench {
            address: (*address).to_owned(),
            bytes: bytes
                .parse()
                .map_err(|_| format!("not a byte count: {bytes:?}"))?,
            rounds: rounds
                .parse()
                .map_err(|_| format!("not a round count: {rounds:?}"))?,
        }),
        _ => Err(format!("bad arguments: {}", words.join(" "))),
    }
}

/// Sends `text` and a newline to `address`, half-closes, and prints the whole answer.
fn connect(address: &str, text: &str) -> Result<(), String> {
    let stream = connect_patiently(address)?;
    let peer = stream
        .peer_addr()
        .map_or_else(|_| address.to_owned(), |p| p.to_string());
    let mut writer = &stream;
    writer
        .write_all(format!("{text}\n").as_bytes())
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write))
        .map_err(|e| format!("cannot send to {peer}: {e}"))?;
    let mut answer = String::new();
    (&stream)
        .read_to_string(&mut answer)
        .map_err(|e| format!("cannot read from {peer}: {e}"))?;
    say(&format!("echo from {peer}: {}", answer.trim_end()));
    Ok(())
}

/// Measures the echo path to `address`: `bytes` in lockstep chunks, then `rounds` one-byte
/// round trips.
fn bench(address: &str, bytes: usize, rounds: usize) -> Result<(), String> {
    let stream = connect_patiently(address)?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = (&stream, &stream);
    let chunk = vec![7u8; BENCH_CHUNK];
    let mut echo = vec![0u8; BENCH_CHUNK];
    let started = std::time::Instant::now();
    let mut sent = 0;
    while sent < bytes {
        let n = BENCH_CHUNK.min(bytes - sent);
        writer
            .write_all(&chunk[..n])
            .map_err(|e| format!("send: {e}"))?;
        reader
            .read_exact(&mut echo[..n])
            .map_err(|e| format!("echo: {e}"))?;
        sent += n;
    }
    let took = started.elapsed();
    let mib_s = sent as f64 / (1 << 20) as f64 / took.as_secs_f64().max(1e-9);
    say(&format!(
        "throughput: {sent} bytes in {} ms: {mib_s:.1} MiB/s",
        took.as_millis()
    ));
    let mut trips = Vec::with_capacity(rounds);
    let mut byte = [1u8];
    for _ in 0..rounds {
        let started = std::time::Instant::now();
        writer.write_all(&byte).map_err(|e| format!("send: {e}"))?;
        reader
            .read_exact(&mut byte)
            .map_err(|e| format!("echo: {e}"))?;
        trips.push(started.elapsed().as_micros());
    }
    trips.sort_unstable();
    let at = |q: usize| trips.get((trips.len() * q / 100).min(trips.len().saturating_sub(1)));
    say(&format!(
        "latency: {rounds} round trips: p50 {} us, p99 {} us",
        at(50).copied().unwrap_or(0),
        at(99).copied().unwrap_or(0)
    ));
    Ok(())
}

/// Connects, retrying a refused connection until [`CONNECT_PATIENCE`] runs out; any other
/// error (a denied address, an unknown name) is final at once.
fn connect_patiently(address: &str) -> Result<TcpStream, String> {
    let deadline = std::time::Instant::now() + CONNECT_PATIENCE;
    loop {
        match TcpStream::connect(address) {
            Ok(stream) => return Ok(stream),
            Err(e)
                if e.kind() == io::ErrorKind::ConnectionRefused
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            Err(e) => return Err(format!("cannot connect to {address}: {e}")),
        }
    }
}

/// Listens on `port` and echoes (or, with `http`, answers) connections one after the
/// other. Returns only when listening or accepting fails.
fn serve(port: u16, http: bool) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener =
        TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    say(&format!("listening on {address}"));
    loop {
        let (stream, peer) = listener
            .accept()
            .map_err(|e| format!("cannot accept a connection: {e}"))?;
        if http {
            say(&request_line(peer, answer(stream)));
        } else {
            say(&closing_line(peer, handle(stream)));
        }
    }
}

/// Binds `port` over UDP and sends every datagram back to where it came from. Returns
/// only when binding or receiving fails.
fn serve_udp(port: u16) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let socket = UdpSocket::bind(address).map_err(|e| format!("cannot bind udp {address}: {e}"))?;
    say(&format!("listening on udp {address}"));
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, peer) = socket
            .recv_from(&mut buffer)
            .map_err(|e| format!("cannot receive: {e}"))?;
        match socket.send_to(&buffer[..n], peer) {
            Ok(_) => say(&format!("{peer} sent {n} bytes")),
            Err(e) => say(&format!("{peer} failed: {e}")),
        }
    }
}

/// Sends `text` to `address` over UDP until an answer comes (or [`CONNECT_PATIENCE`] runs
/// out), and prints the answer. A send refused as by a closed port is retried; any other
/// send error (a denied address) is final at once.
fn connect_udp(address: &str, text: &str) -> Result<(), String> {
    let target = address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {address}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("cannot resolve {address}: no IPv4 address"))?;
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
        .and_then(|s| s.set_nonblocking(true).map(|()| s))
        .map_err(|e| format!("cannot open a udp socket: {e}"))?;
    let deadline = std::time::Instant::now() + CONNECT_PATIENCE;
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    while std::time::Instant::now() < deadline {
        match socket.send_to(text.as_bytes(), target) {
            Ok(_) => {}
            // A Service without a ready endpoint yet refuses like a closed port: retry.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(e) => return Err(format!("cannot send to {address}: {e}")),
        }
        let resend = std::time::Instant::now() + UDP_RESEND;
        while std::time::Instant::now() < resend {
            match socket.recv_from(&mut buffer) {
                Ok((n, peer)) => {
                    let answer = String::from_utf8_lossy(&buffer[..n]);
                    say(&format!("udp echo from {peer}: {answer}"));
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) => return Err(format!("cannot receive from {address}: {e}")),
            }
        }
    }
    Err(format!(
        "no answer from {address} within {CONNECT_PATIENCE:?}"
    ))
}

/// Reads one request head and answers `200 OK`; returns the request line.
fn answer(stream: TcpStream) -> io::Result<String> {
    let (mut reader, mut writer) = (&stream, &stream);
    let head = read_head(&mut reader)?;
    let body = format!(
        "{}\n",
        std::env::var("MESSAGE").unwrap_or_else(|_| "ok".into())
    );
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    writer.write_all(response.as_bytes())?;
    writer.flush()?;
    Ok(head.lines().next().unwrap_or("").trim_end().to_owned())
}

/// Reads until the end of an HTTP request head (a blank line), the end of the stream or
/// [`MAX_REQUEST_HEAD`] bytes.
fn read_head(from: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST_HEAD {
        match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The line printed for an answered request: `PEER GET PATH`.
fn request_line(peer: SocketAddr, outcome: io::Result<String>) -> String {
    match outcome {
        Ok(line) => {
            let mut words = line.split_whitespace();
            let (method, path) = (words.next().unwrap_or("-"), words.next().unwrap_or("-"));
            format!("{peer} {method} {path}")
        }
        Err(e) => format!("{peer} failed: {e}"),
    }
}

/// Echoes one connection until the client closes it.
fn handle(stream: TcpStream) -> io::Result<u64> {
    // `&TcpStream` reads and writes: one socket, two handles, no dup.
    let (mut reader, mut writer) = (&stream, &stream);
    echo(&mut reader, &mut writer)
}

/// Copies everything `from` yields into `to`, flushing as it goes; returns the byte count.
fn echo(from: &mut impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buffer = vec![0u8; BUFFER_BYTES];
    let mut total: u64 = 0;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buffer[..n])?;
        to.flush()?;
        total += n as u64;
    }
}

/// The line printed when a connection ends.
fn closing_line(peer: SocketAddr, outcome: io::Result<u64>) -> String {
    match outcome {
        Ok(bytes) => format!("{peer} closed after {bytes} bytes"),
        Err(e) => format!("{peer} failed: {e}"),
    }
}

/// Writes one line to stdout and flushes it, so log followers see it at once.
fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    /// Hands out its input a few bytes at a time, like a slow network.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(3);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn listens_on_the_echo_port_by_default() {
        let serve = |port, http| Ok(Mode::Serve { port, http });
        assert_eq!(parse(&[]), serve(7, false));
        assert_eq!(parse(&args(&["--port", "7007"])), serve(7007, false));
        assert_eq!(parse(&args(&["--http"])), serve(7, true));
        assert_eq!(
            parse(&args(&["--port", "8080", "--http"])),
            serve(8080, true)
        );
        assert!(parse(&args(&["--http", "--port", "8080"])).is_err());
    }

    #[test]
    fn http_mode_reads_the_request_head_and_names_its_line() {
        let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
        let head = read_head(&mut Trickle(request)).expect("head");
        let peer: SocketAddr = "10.42.0.1:5000".parse().expect("peer");
        assert_eq!(
            request_line(peer, Ok(head.lines().next().unwrap_or("").to_owned())),
            "10.42.0.1:5000 GET /healthz"
        );
    }

    #[test]
    fn bench_mode_takes_a_byte_and_a_round_count() {
        assert_eq!(
            parse(&args(&[
                "--connect",
                "echo:80",
                "--bench",
                "1048576",
                "100"
            ])),
            Ok(Mode::Bench {
                address: "echo:80".into(),
                bytes: 1 << 20,
                rounds: 100
            })
        );
        assert!(parse(&args(&["--connect", "echo:80", "--bench", "x", "1"])).is_err());
    }

    #[test]
    fn connects_with_a_default_or_given_text() {
        assert_eq!(
            parse(&args(&["--connect", "web:7"])),
            Ok(Mode::Connect {
                address: "web:7".into(),
                text: "ping".into()
            })
        );
        assert_eq!(
            parse(&args(&["--connect", "10.42.0.5:7", "--send", "hello"])),
            Ok(Mode::Connect {
                address: "10.42.0.5:7".into(),
                text: "hello".into()
            })
        );
        assert!(parse(&args(&["--connect"])).is_err());
    }

    #[test]
    fn udp_first_turns_the_server_and_the_client_to_udp() {
        assert_eq!(parse(&args(&["--udp"])), Ok(Mode::UdpServe { port: 7 }));
        assert_eq!(
            parse(&args(&["--udp", "--port", "5353"])),
            Ok(Mode::UdpServe { port: 5353 })
        );
        assert_eq!(
            parse(&args(&["--udp", "--connect", "echo:53", "--send", "hi"])),
            Ok(Mode::UdpConnect {
                address: "echo:53".into(),
                text: "hi".into()
            })
        );
        assert!(parse(&args(&["--udp", "--http"])).is_err());
        assert!(parse(&args(&["--udp", "--connect", "e:1", "--bench", "1", "1"])).is_err());
    }

    #[test]
    fn rejects_bad_ports_and_unknown_arguments() {
        assert!(parse(&args(&["--port"])).is_err());
        assert!(parse(&args(&["--port", "70000"])).is_err());
        assert!(parse(&args(&["--port", "seven"])).is_err());
        assert!(parse(&args(&["7"])).is_err());
    }

    #[test]
    fn echoes_every_byte_and_counts_them() {
        let input: Vec<u8> = (0..=255).cycle().take(100_000).collect();
        let mut output = Vec::new();
        let bytes = echo(&mut Trickle(&input), &mut output).expect("echo");
        assert_eq!(bytes, 100_000);
        assert_eq!(output, input);
    }

    #[test]
    fn an_empty_connection_echoes_nothing() {
        let mut output = Vec::new();
        assert_eq!(echo(&mut Trickle(b""), &mut output).expect("echo"), 0);
        assert!(output.is_empty());
    }

    #[test]
    fn echoes_over_a_real_socket() {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let address = listener.local_addr().expect("address");
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().expect("accept");
            handle(stream).expect("echo")
        });
        let mut client = TcpStream::connect(address).expect("connect");
        client.write_all(b"ping\n").expect("send");
        client
            .shutdown(std::net::Shutdown::Write)
            .expect("shutdown");
        let mut answer = String::new();
        client.read_to_string(&mut answer).expect("receive");
        assert_eq!(answer, "ping\n");
        assert_eq!(server.join().expect("server thread"), 5);
    }

    #[test]
    fn reports_each_connection_on_one_line() {
        let peer: SocketAddr = "10.0.0.5:51234".parse().expect("address");
        assert_eq!(
            closing_line(peer, Ok(12)),
            "10.0.0.5:51234 closed after 12 bytes"
        );
        let failed = closing_line(peer, Err(io::ErrorKind::ConnectionReset.into()));
        assert!(failed.starts_with("10.0.0.5:51234 failed: "), "{failed}");
    }
}
