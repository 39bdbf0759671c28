//! Opening a zenoh session, secure by default.
//!
//! The embedded default is peer mode with multicast scouting off, listening
//! only on loopback (the given endpoints, else an ephemeral loopback port,
//! so that the sessions of one machine can mesh): the runtime listens on a
//! known loopback port, the bridge connects, no router and no network
//! needed. A zenoh JSON5 file (`--zenoh-config`) replaces the default whole
//! (client mode against a router, TLS with mutual authentication, access
//! control) and is the whole truth: a flag for a field the file sets is
//! refused by name. Whatever the source, a listener that the network can
//! reach in plaintext is refused unless the user says `--insecure`
//! ([`reach`]).

use crate::error::ZenohError;
use std::path::PathBuf;
use zenoh::{Session, Wait};

/// How to reach the other zenoh nodes.
#[derive(Debug, Clone, Default)]
pub struct ZenohOptions {
    /// A zenoh JSON5 config; replaces the embedded default.
    pub config: Option<PathBuf>,
    /// `peer` or `client` (with a file: only where the file sets no mode).
    pub mode: Option<String>,
    /// Endpoints to listen on (with a file: only where it sets none).
    pub listen: Vec<String>,
    /// Endpoints to connect to (with a file: only where it sets none).
    pub connect: Vec<String>,
    /// Accept a listener the network can reach in plaintext.
    pub insecure: bool,
}

/// Where a session listens when nothing says: an ephemeral port on
/// loopback.
pub const DEFAULT_LISTEN: &str = "tcp/127.0.0.1:0";

/// How far a listening endpoint reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Only this machine: a loopback address or a unix socket.
    Local,
    /// Beyond this machine, over TLS (`tls/`, `quic/`): encrypted, and
    /// authenticated where the config asks for mutual TLS.
    Tls,
    /// Beyond this machine in plaintext (an address that is not loopback,
    /// `0.0.0.0`, `[::]`, a host name, an unknown transport): any host on
    /// the network.
    Open,
}

/// How far `endpoint` (zenoh's `proto/address[?metadata][#config]`) reaches
/// when listened on.
pub fn reach(endpoint: &str) -> Reach {
    let Some((proto, rest)) = endpoint.split_once('/') else {
        return Reach::Open;
    };
    let address = rest.split(['?', '#']).next().unwrap_or_default();
    match proto.to_ascii_lowercase().as_str() {
        "unixsock-stream" | "unixpipe" => Reach::Local,
        "tls" | "quic" => Reach::Tls,
        "tcp" | "udp" | "ws" => {
            let host = match address.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or_default(),
                None => address.rsplit_once(':').map_or(address, |(h, _)| h),
            };
            let local = host.eq_ignore_ascii_case("localhost")
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if local {
                Reach::Local
            } else {
                Reach::Open
            }
        }
        _ => Reach::Open,
    }
}

/// The session's configuration: the config file or the embedded default
/// (peer, no multicast scouting, [`DEFAULT_LISTEN`]), then the flags, then the
/// check that no listener reaches the network in plaintext unless
/// `insecure`.
pub fn session_config(o: &ZenohOptions) -> Result<zenoh::Config, ZenohError> {
    let mut c = match &o.config {
        Some(path) => {
            let c = zenoh::Config::from_file(path).map_err(|e| ZenohError::ConfigFile {
                path: path.clone(),
                why: e.to_string(),
            })?;
            // The file is the whole truth: a flag may fill what it leaves
            // at zenoh's default, never change what it sets.
            let default = zenoh::Config::default();
            for (flag, key, given) in [
                ("--zenoh-mode", "mode", o.mode.is_some()),
                ("--listen", "listen/endpoints", !o.listen.is_empty()),
                ("--connect", "connect/endpoints", !o.connect.is_empty()),
            ] {
                if given && c.get_json(key).ok() != default.get_json(key).ok() {
                    return Err(ZenohError::Conflict {
                        flag,
                        key,
                        path: path.clone(),
                    });
                }
            }
            c
        }
        None => {
            let mut c = zenoh::Config::default();
            set(&mut c, "mode", "\"peer\"")?;
            set(&mut c, "scouting/multicast/enabled", "false")?;
            // zenoh's own default for a peer is every interface; here an
            // ephemeral loopback port, which the sessions of this machine
            // learn from each other (gossip) to mesh directly, and nothing
            // off the machine can reach.
            if o.mode.as_deref() != Some("client") {
                set(&mut c, "listen/endpoints", &format!("[{DEFAULT_LISTEN:?}]"))?;
            }
            c
        }
    };
    if let Some(m) = &o.mode {
        set(&mut c, "mode", &format!("{m:?}"))?;
    }
    let list = |v: &[String]| format!("{v:?}");
    if !o.listen.is_empty() {
        set(&mut c, "listen/endpoints", &list(&o.listen))?;
    }
    if !o.connect.is_empty() {
        set(&mut c, "connect/endpoints", &list(&o.connect))?;
    }
    if !o.insecure {
        for endpoint in listen_endpoints(&c) {
            if reach(&endpoint) == Reach::Open {
                let origin = match (&o.config, o.listen.contains(&endpoint)) {
                    (_, true) => "--listen".to_string(),
                    (Some(path), false) => format!(
                        "the zenoh config {} (zenoh's default where it sets no listen/endpoints)",
                        path.display()
                    ),
                    (None, false) => "the embedded default".to_string(),
                };
                return Err(ZenohError::OpenListener { endpoint, origin });
            }
        }
    }
    Ok(c)
}

/// The endpoints `c` listens on in its mode (zenoh's per-mode values
/// resolved).
fn listen_endpoints(c: &zenoh::Config) -> Vec<String> {
    let json = |key: &str| {
        c.get_json(key)
            .ok()
            .and_then(|j| serde_json::from_str::<serde_json::Value>(&j).ok())
    };
    let mode = json("mode")
        .and_then(|m| m.as_str().map(str::to_string))
        .unwrap_or_else(|| "peer".into());
    let list = match json("listen/endpoints") {
        Some(serde_json::Value::Object(per_mode)) => per_mode.get(&mode).cloned(),
        other => other,
    };
    match list {
        Some(serde_json::Value::Array(v)) => v
            .into_iter()
            .filter_map(|e| e.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

/// Opens a session configured by [`session_config`].
pub fn open_session(o: &ZenohOptions) -> Result<Session, ZenohError> {
    zenoh::open(session_config(o)?)
        .wait()
        .map_err(|e| ZenohError::Open(e.to_string()))
}

fn set(c: &mut zenoh::Config, key: &'static str, value: &str) -> Result<(), ZenohError> {
    c.insert_json5(key, value)
        .map_err(|e| ZenohError::ConfigKey {
            key,
            value: value.to_string(),
            why: e.to_string(),
        })
}

/// A free TCP port on loopback for a listener (the demo's embedded default).
/// The port is free when this returns; the kernel may hand a just-released
/// port out again, so one process never gets the same port twice.
pub fn free_loopback_endpoint() -> std::io::Result<String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..64 {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = l.local_addr()?.port();
        if !given.contains(&port) {
            given.push(port);
            return Ok(format!("tcp/127.0.0.1:{port}"));
        }
    }
    Err(std::io::Error::other("no fresh loopback port"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_reach_as_far_as_their_address_and_transport() {
        for (ep, want) in [
            ("tcp/127.0.0.1:7447", Reach::Local),
            ("tcp/127.3.2.1:7447", Reach::Local),
            ("tcp/[::1]:7447", Reach::Local),
            ("tcp/localhost:7447", Reach::Local),
            ("udp/127.0.0.1:7447#iface=lo", Reach::Local),
            ("unixsock-stream//run/offramp.sock", Reach::Local),
            ("tls/localhost:7447", Reach::Tls),
            ("tls/0.0.0.0:7447", Reach::Tls),
            ("quic/[::]:7447", Reach::Tls),
            ("tcp/[::]:0", Reach::Open),
            ("tcp/0.0.0.0:7447", Reach::Open),
            ("tcp/192.168.1.20:7447", Reach::Open),
            ("tcp/robot.lan:7447", Reach::Open),
            ("ws/127.0.0.1.evil.example:80", Reach::Open),
            ("serial//dev/ttyUSB0", Reach::Open),
            ("nonsense", Reach::Open),
        ] {
            assert_eq!(reach(ep), want, "{ep}");
        }
    }

    /// zenoh's own default for a peer listens on every interface
    /// (`tcp/[::]:0`); the embedded default listens on loopback only.
    #[test]
    fn the_embedded_default_listens_on_loopback_and_refuses_the_network_in_plaintext() {
        let c = session_config(&ZenohOptions::default()).unwrap();
        assert_eq!(listen_endpoints(&c), [DEFAULT_LISTEN]);
        assert_eq!(reach(DEFAULT_LISTEN), Reach::Local);
        let client = ZenohOptions {
            mode: Some("client".into()),
            ..Default::default()
        };
        assert_eq!(
            listen_endpoints(&session_config(&client).unwrap()),
            Vec::<String>::new()
        );
        assert!(!listen_endpoints(&zenoh::Config::default()).is_empty());
        let opts = |listen: &str, insecure| ZenohOptions {
            listen: vec![listen.into()],
            insecure,
            ..Default::default()
        };
        let c = session_config(&opts("tcp/127.0.0.1:7447", false)).unwrap();
        assert_eq!(listen_endpoints(&c), ["tcp/127.0.0.1:7447"]);
        let e = session_config(&opts("tcp/0.0.0.0:7447", false)).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("tcp/0.0.0.0:7447")
                && msg.contains("--listen")
                && msg.contains("--insecure"),
            "{msg}"
        );
        // Said in so many words, it is the user's choice.
        let c = session_config(&opts("tcp/0.0.0.0:7447", true)).unwrap();
        assert_eq!(listen_endpoints(&c), ["tcp/0.0.0.0:7447"]);
    }

    /// A config file is the whole truth: a flag for a field it sets is
    /// refused by name (the documented TLS setup used to listen in
    /// plaintext because a flag silently replaced the file's endpoints); a
    /// field it leaves at zenoh's default may come from a flag; a file that
    /// leaves zenoh listening on every interface is refused.
    #[test]
    fn a_config_file_is_the_whole_truth() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let sets_listen = file(
            "listen.json5",
            r#"{ mode: "peer", listen: { endpoints: ["tcp/127.0.0.1:7447"] } }"#,
        );
        let with = |config: &std::path::Path, f: &dyn Fn(&mut ZenohOptions)| {
            let mut o = ZenohOptions {
                config: Some(config.to_path_buf()),
                ..Default::default()
            };
            f(&mut o);
            session_config(&o)
        };
        let e = with(&sets_listen, &|o| {
            o.listen = vec!["tcp/127.0.0.1:9000".into()]
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("--listen") && e.contains("listen.json5"), "{e}");
        let e = with(&sets_listen, &|o| o.mode = Some("client".into()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--zenoh-mode"), "{e}");
        // The file sets no connect endpoints: a flag gives them.
        let c = with(&sets_listen, &|o| {
            o.connect = vec!["tcp/127.0.0.1:9000".into()]
        })
        .unwrap();
        assert!(c.get_json("connect/endpoints").unwrap().contains("9000"));
        // No listen/endpoints in the file: zenoh's default, every interface.
        let silent = file("silent.json5", r#"{ mode: "peer" }"#);
        let e = with(&silent, &|_| {}).unwrap_err().to_string();
        assert!(e.contains("tcp/[::]") && e.contains("silent.json5"), "{e}");
        assert!(with(&silent, &|o| o.insecure = true).is_ok());
        // The shipped TLS configs pass as they are.
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/zenoh");
        for f in [
            "bridge-tls.json5",
            "runtime-tls.json5",
            "operator-tls.json5",
            "runtime-offload-tls.json5",
            "offload-server-tls.json5",
        ] {
            let c = with(&shipped.join(f), &|_| {}).unwrap_or_else(|e| panic!("{f}: {e}"));
            for ep in listen_endpoints(&c) {
                assert_ne!(reach(&ep), Reach::Open, "{f}: {ep}");
            }
        }
    }
}
