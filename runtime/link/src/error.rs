//! The errors of the zenoh side: sessions, messages, keys.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ZenohError {
    #[error("zenoh config {}: {why}", path.display())]
    ConfigFile { path: PathBuf, why: String },
    #[error("zenoh config key {key} = {value}: {why}")]
    ConfigKey {
        key: &'static str,
        value: String,
        why: String,
    },
    #[error("opening the zenoh session: {0}")]
    Open(String),
    #[error("zenoh {what} on {key}: {why}")]
    Declare {
        what: &'static str,
        key: String,
        why: String,
    },
    #[error("robot name {0:?}: use letters, digits, '-', '_' and '/' (no wildcards, no leading or trailing '/')")]
    RobotName(String),
    #[error("{what}: {len} bytes, {why}")]
    Payload {
        what: &'static str,
        len: usize,
        why: String,
    },
    #[error("{what}: message version {got}, this build speaks {speaks}")]
    Version {
        what: &'static str,
        got: u8,
        speaks: u8,
    },
    #[error("publishing on {key}: {why}")]
    Put { key: String, why: String },
    #[error("{flag} conflicts with the zenoh config {}, which sets {key}: a config file is the whole truth (change it there, or drop the file)", path.display())]
    Conflict {
        flag: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("listening on {endpoint} ({origin}) lets any host on the network reach this session in plaintext, publish actions included: listen on loopback (tcp/127.0.0.1:PORT), a unix socket (unixsock-stream/PATH) or TLS (tls/HOST:PORT with a config file, docs/security.md), or pass --insecure to accept it")]
    OpenListener { endpoint: String, origin: String },
}
