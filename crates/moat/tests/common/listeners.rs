//! Reading what `moat up` and `moat serve` print: the listener table on stdout, read until the
//! `ready:` line, and stderr collected as it comes.

#![allow(dead_code, reason = "each test binary uses a different part of the harness")]

use std::io::{BufRead as _, BufReader, Read};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// The address of the listener for `origin` (`internet`, `admin`, ...) in the printed table.
pub fn listener_addr(stdout: &[String], origin: &str) -> SocketAddr {
    stdout
        .iter()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(origin)).then(|| words.next()?.parse().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("no `{origin}` listener in:\n{}", stdout.join("\n")))
}

/// A child's stdout, read line by line on a thread of its own.
pub struct Printed {
    /// The lines up to and including `ready:`; `None` when it did not come in time.
    pub ready: Option<Vec<String>>,
    /// Every line so far, `ready:` and what follows included; it keeps growing.
    pub all: Arc<Mutex<Vec<String>>>,
}

/// Reads `out` until its `ready:` line, for `timeout` at most.
pub fn read_until_ready(out: impl Read + Send + 'static, timeout: Duration) -> Printed {
    let all = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(&all);
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let ready = line.starts_with("ready:");
            let mut l = lines.lock().unwrap();
            l.push(line);
            if ready {
                let _ = tx.send(l.clone());
            }
        }
    });
    Printed { ready: rx.recv_timeout(timeout).ok(), all }
}

/// Collects `err` (a child's stderr) as it comes, one `\n`-terminated line at a time.
pub fn collect(err: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}
