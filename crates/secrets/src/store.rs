//! The redb store.
