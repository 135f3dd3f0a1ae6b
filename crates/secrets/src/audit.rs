//! Append-only audit log.
