//! moat-server is the only crate that does network I/O: the identity listener (JWKS, x509
//! certs, OpenID discovery) and per-workload metadata servers today; the front door, secret API
//! and egress proxy with their issues.
