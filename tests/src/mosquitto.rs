//! A real Mosquitto broker for the end-to-end suite, configured the way a user would run
//! wasmfleet with an external broker: TLS only (with its own CA, not the cluster's), no
//! anonymous clients, a password per identity and the topic ACL the server prints, which
//! confines each node to its own topics.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::mqtt::MqttEndpoint;
use crate::ports::free_port;
use crate::process::Process;
use crate::wait_for;

/// The ACL wasmfleet needs from an external broker, as the server prints it
/// (`wasmfleet-server --print-mosquitto-acl`: its one home).
pub fn server_acl() -> String {
    let out = Command::new(crate::bin_dir().join("wasmfleet-server"))
        .arg("--print-mosquitto-acl")
        .output()
        .expect("wasmfleet-server --print-mosquitto-acl runs");
    assert!(
        out.status.success(),
        "--print-mosquitto-acl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the ACL is text")
}

/// A running Mosquitto with a password file the test can add users to.
pub struct Mosquitto {
    process: Process,
    dir: PathBuf,
    conf_path: PathBuf,
    /// Where it listens (TLS) and its CA.
    pub endpoint: MqttEndpoint,
}

impl Mosquitto {
    /// Starts Mosquitto in `dir` with one user: the server. It listens on `host` (with a
    /// certificate for it), `127.0.0.1` unless agents reach it from network namespaces.
    pub fn start(dir: &Path, host: IpAddr, server_password: &str) -> Mosquitto {
        std::fs::create_dir_all(dir).expect("mosquitto dir");
        let passwd = dir.join("passwd");
        run_passwd(&["-c", "-b"], &passwd, "wasmfleet-server", server_password);
        std::fs::write(dir.join("acl"), server_acl()).expect("write acl");
        let addr = free_port(host);
        write_pki(dir, host);
        let mut conf = format!(
            "per_listener_settings false\nlistener {} {host}\ncafile {}\ncertfile {}\n\
             keyfile {}\nallow_anonymous false\npassword_file {}\nacl_file {}\n\
             persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n\
             log_type notice\nmax_packet_size 16778240\nmax_queued_messages 1000\n\
             max_queued_bytes 33554432\nmax_inflight_messages 64\n\
             set_tcp_nodelay true\n",
            addr.port(),
            dir.join("ca.crt").display(),
            dir.join("server.crt").display(),
            dir.join("server.key").display(),
            passwd.display(),
            dir.join("acl").display(),
        );
        if is_root() {
            conf.push_str("user root\n");
        }
        let conf_path = dir.join("mosquitto.conf");
        std::fs::write(&conf_path, conf).expect("write mosquitto.conf");
        let process = spawn(dir, &conf_path, addr);
        Mosquitto {
            process,
            dir: dir.to_owned(),
            conf_path,
            endpoint: MqttEndpoint {
                addr,
                ca_file: dir.join("ca.crt"),
            },
        }
    }

    /// Kills the broker abruptly (SIGKILL): its sessions and retained messages are gone
    /// (`persistence false`), as after a power cut.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the broker again after [`Self::kill`], same port, users and ACL.
    pub fn restart(&mut self) {
        self.process.kill();
        self.process = spawn(&self.dir, &self.conf_path, self.endpoint.addr);
    }

    /// Adds (or replaces) a user and makes the running broker reload its password file.
    pub fn add_user(&self, username: &str, password: &str) {
        self.add_users(&[username.to_owned()], password);
    }

    /// Adds (or replaces) users with one password, then reloads the password file once.
    pub fn add_users(&self, usernames: &[String], password: &str) {
        for username in usernames {
            run_passwd(&["-b"], &self.dir.join("passwd"), username, password);
        }
        self.process.signal("HUP");
        // The reload is asynchronous: wait until the broker accepts the last new login.
        if let Some(username) = usernames.last() {
            wait_for(
                &format!("mosquitto to accept user {username}"),
                Duration::from_secs(10),
                || crate::mqtt::try_login(&self.endpoint, username, password),
            );
        }
    }
}

/// Starts Mosquitto with `conf_path` and waits until it accepts connections on `addr`.
fn spawn(dir: &Path, conf_path: &Path, addr: SocketAddr) -> Process {
    let process = Process::spawn(
        "mosquitto",
        Path::new("mosquitto"),
        &["-c".into(), conf_path.display().to_string()],
        &dir.join("mosquitto.log"),
    );
    wait_for(
        "mosquitto to accept connections",
        Duration::from_secs(10),
        || TcpStream::connect(addr).map_err(|err| err.to_string()),
    );
    process
}

/// Writes `ca.crt` and a `server.crt`/`server.key` for `host` (and localhost) that it signed.
fn write_pki(dir: &Path, host: IpAddr) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Distinct subjects: OpenSSL clients (mosquitto_pub) take a leaf whose subject equals
    // its issuer's for a self-signed certificate and refuse it.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "wasmfleet e2e Mosquitto CA");
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let mut names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    if !host.is_loopback() {
        names.push(host.to_string());
    }
    let mut params = CertificateParams::new(names).expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmfleet e2e Mosquitto");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).expect("write ca.crt");
    std::fs::write(dir.join("server.crt"), cert.pem()).expect("write server.crt");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("write server.key");
}

fn run_passwd(flags: &[&str], file: &Path, user: &str, password: &str) {
    let status = Command::new("mosquitto_passwd")
        .args(flags)
        .arg(file)
        .args([user, password])
        .status()
        .expect("mosquitto_passwd (apt-get install mosquitto)");
    assert!(status.success(), "mosquitto_passwd failed for {user}");
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false)
}
