//! Reading the listener table `moat up` and `moat serve` print on stdout.

use std::net::SocketAddr;

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
