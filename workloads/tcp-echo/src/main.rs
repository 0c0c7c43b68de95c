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
//! With `--connect HOST:PORT [--send TEXT]` it is the client instead: it connects
//! (retrying for a few seconds while the server is not listening yet, as a container
//! started next to it may not be), sends TEXT and a newline, and prints what came back:
//!
//! ```text
//! echo from 10.42.0.5:7: hello
//! ```
//!
//! Networking is Rust's `std::net`, which wasm32-wasip2 implements on `wasi:sockets`, so
//! the host must grant the component network access: without it binding or connecting
//! fails, the error goes to stderr and the program exits 1. Bad arguments print the
//! usage to stderr and exit 2.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

const USAGE: &str = "usage: tcp-echo [--port N] | tcp-echo --connect HOST:PORT [--send TEXT]";
/// How long the client keeps retrying a refused connection.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
const DEFAULT_PORT: u16 = 7;
const BUFFER_BYTES: usize = 16 * 1024;

/// What the command line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Mode {
    /// Serve on this port.
    Serve(u16),
    /// Send a line to this address and print the answer.
    Connect { address: String, text: String },
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
        Mode::Serve(port) => serve(port),
        Mode::Connect { address, text } => connect(&address, &text),
    };
    if let Err(problem) = outcome {
        eprintln!("tcp-echo: {problem}");
        std::process::exit(1);
    }
}

/// Parses argv (without the program name).
fn parse(args: &[String]) -> Result<Mode, String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let connect = |address: &str, text: &str| Mode::Connect {
        address: address.to_owned(),
        text: text.to_owned(),
    };
    match words.as_slice() {
        [] => Ok(Mode::Serve(DEFAULT_PORT)),
        ["--port", port] => port
            .parse()
            .map(Mode::Serve)
            .map_err(|_| format!("not a valid port: {port:?}")),
        ["--connect", address] => Ok(connect(address, "ping")),
        ["--connect", address, "--send", text] => Ok(connect(address, text)),
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

/// Listens on `port` and echoes connections one after the other. Returns only when
/// listening or accepting fails.
fn serve(port: u16) -> Result<(), String> {
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let listener =
        TcpListener::bind(address).map_err(|e| format!("cannot listen on {address}: {e}"))?;
    say(&format!("listening on {address}"));
    loop {
        let (stream, peer) = listener
            .accept()
            .map_err(|e| format!("cannot accept a connection: {e}"))?;
        say(&closing_line(peer, handle(stream)));
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
        assert_eq!(parse(&[]), Ok(Mode::Serve(7)));
        assert_eq!(parse(&args(&["--port", "7007"])), Ok(Mode::Serve(7007)));
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
