//! `NetNs` (`moat up --isolate`): a process spawned in the namespace reaches the host only
//! through `bind_inward` relays, and the host reaches a server in the namespace only through
//! `expose_outward`. Where namespaces cannot be created (not Linux, not root) the tests say so
//! and pass; where they can, they run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use moat_server::runtime::NetNs;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;

fn namespaces() -> bool {
    match NetNs::available() {
        Ok(()) => true,
        Err(why) => {
            eprintln!("network namespaces unavailable: {why}; run as root on Linux to test --isolate");
            false
        }
    }
}

/// A host server that echoes what it reads.
async fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Runs a python3 snippet inside `ns` and returns its stdout.
async fn python_inside(ns: &NetNs, code: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", code]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = ns.spawn(cmd).await.expect("python3 starts in the namespace");
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert!(out.status.success(), "python3 failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

const CONNECT: &str = r#"
import socket, sys
def attempt(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
    except OSError as e:
        return type(e).__name__
    s.sendall(b"ping")
    data = s.recv(4)
    s.close()
    return data.decode()
print(attempt(int(sys.argv[1])), attempt(int(sys.argv[2])))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_child_in_the_namespace_reaches_the_host_only_through_its_relays() {
    if !namespaces() {
        return;
    }
    let (echo, other) = (echo_server().await, echo_server().await);
    let mut ns = NetNs::new().await.unwrap();
    let inward = ns.bind_inward(echo).await.unwrap();
    // The relay keeps the port: the address means the same inside and out.
    assert_eq!(inward, echo.port());
    let code = format!("import sys; sys.argv = ['x', '{inward}', '{}']\n{CONNECT}", other.port());
    let out = python_inside(&ns, &code).await;
    // Through the relay the host echo answers; another host listener, dialled directly from
    // inside the namespace, has nothing behind it.
    assert_eq!(out.trim(), "ping ConnectionRefusedError", "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_reaches_a_server_in_the_namespace_through_expose_outward() {
    if !namespaces() {
        return;
    }
    let mut ns = NetNs::new().await.unwrap();
    // A server inside the namespace on a port moat picks, as for an instance's PORT.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cmd = Command::new("python3");
    cmd.args([
        "-c",
        "import socket, sys\n\
         l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         l.bind(('127.0.0.1', int(sys.argv[1]))); l.listen()\n\
         while True:\n    c, _ = l.accept(); c.sendall(b'inside:' + c.recv(4)); c.close()\n",
        &port.to_string(),
    ])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    let _server = ns.spawn(cmd).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while ns.connect(port).await.is_err() {
        assert!(Instant::now() < deadline, "the server in the namespace did not listen");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let outward = ns.expose_outward(port).await.unwrap();
    let mut s = TcpStream::connect(outward).await.unwrap();
    s.write_all(b"ping").await.unwrap();
    let mut got = String::new();
    s.read_to_string(&mut got).await.unwrap();
    assert_eq!(got, "inside:ping");
    // The server's port on the host's loopback is someone else's (or nobody's), not it.
    if let Ok(mut direct) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).await {
        let _ = direct.write_all(b"ping").await;
        let mut other = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(1), direct.read_to_end(&mut other)).await;
        assert_ne!(other, b"inside:ping");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_namespace_has_no_route_off_the_machine() {
    if !namespaces() {
        return;
    }
    let ns = NetNs::new().await.unwrap();
    // Only `lo` exists: any non-loopback destination is unreachable, no DNS, no timeout.
    let out = python_inside(
        &ns,
        "import socket\n\
         try:\n    socket.create_connection(('192.0.2.1', 80), timeout=5); print('connected')\n\
         except OSError as e:\n    print(e.errno)\n",
    )
    .await;
    assert_eq!(out.trim(), "101", "ENETUNREACH expected: {out}");
}
