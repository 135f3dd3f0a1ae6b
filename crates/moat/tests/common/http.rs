//! Plain HTTP/1.0 requests from tests to moat's listeners and workloads: one request per
//! connection, read to the end, no client library in the way.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// `GET path` with `Host: host`: the status (0 when the answer has no status line) and body.
pub fn try_get(addr: SocketAddr, host: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(40))).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).map_err(|e| format!("{addr}{path}: {e}"))?;
    let status = raw.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// [`try_get`], failing the test on an I/O error.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    try_get(addr, host, path).unwrap_or_else(|e| panic!("{e}"))
}

/// `GET path` with `Host: localhost`: the body as JSON.
pub fn get_json(addr: SocketAddr, path: &str) -> Result<Value, String> {
    let (_, body) = try_get(addr, "localhost", path)?;
    serde_json::from_str(&body).map_err(|e| format!("{addr}{path}: {e}: {body}"))
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query values).
pub fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
