//! moat-crypto owns the identity cryptography: signing keys and their rotation, the issuer of
//! Google-shaped ID tokens, the verifier the front door uses, and opaque access tokens.
//!
//! It is synchronous and does no network I/O: the server crate fetches remote JWKS and hands
//! the bytes in, so every verification rule can be tested with an injected clock.
