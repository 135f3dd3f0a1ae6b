//! The verified-token cache: successful verifications keyed by (token, acceptable audiences).
//!
//! A hit costs one fast hash of the token, one shard lock and a byte comparison of the stored
//! token (the hash is not trusted: the full token is compared, so a hash collision cannot make
//! an unverified token pass). Entries remember the key that verified them; a hit under a newer
//! key set re-checks that this key is still published (revocation by key removal, J29).

use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use hashbrown::HashTable;

use super::VerifiedClaims;
use super::keyset::{KeySet, VerifyingKey};

const SHARDS: usize = 16;

pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
}

struct Entry {
    hash: u64,
    token: Box<str>,
    audiences: Box<[String]>,
    claims: VerifiedClaims,
    key: Arc<VerifyingKey>,
    /// The key-set generation under which `key` was last seen published.
    generation: u64,
}

/// What a cache lookup found.
pub(crate) enum Lookup {
    Hit(VerifiedClaims),
    Miss,
}

impl Cache {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            per_shard,
        }
    }

    pub(crate) fn hash(&self, token: &str, audiences: &[String]) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(token.as_bytes());
        h.write_usize(audiences.len());
        for a in audiences {
            h.write_usize(a.len());
            h.write(a.as_bytes());
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag: pick the shard
        // from bits in between so entries spread evenly inside each shard.
        let i = ((hash >> 32) as usize) % SHARDS;
        #[expect(clippy::indexing_slicing, reason = "i < SHARDS == shards.len()")]
        &self.shards[i]
    }

    /// Finds the entry for (token, audiences). An entry whose key left the key set is dropped.
    pub(crate) fn get(&self, hash: u64, token: &str, audiences: &[String], generation: u64, keys: &KeySet) -> Lookup {
        let mut shard = self.shard(hash).lock().unwrap_or_else(PoisonError::into_inner);
        let eq = |e: &Entry| e.hash == hash && *e.token == *token && *e.audiences == *audiences;
        let Ok(mut occupied) = shard.table.find_entry(hash, eq) else {
            return Lookup::Miss;
        };
        let entry = occupied.get_mut();
        if entry.generation != generation {
            if keys.get(&entry.key.kid).is_some_and(|k| k.same_key(&entry.key)) {
                entry.generation = generation;
            } else {
                occupied.remove();
                return Lookup::Miss;
            }
        }
        Lookup::Hit(occupied.get().claims.clone())
    }

    #[expect(clippy::too_many_arguments, reason = "one call site; a struct would only rename them")]
    pub(crate) fn insert(
        &self,
        hash: u64,
        token: &str,
        audiences: &[String],
        claims: VerifiedClaims,
        key: Arc<VerifyingKey>,
        generation: u64,
        expired: impl Fn(&VerifiedClaims) -> bool,
    ) {
        let mut shard = self.shard(hash).lock().unwrap_or_else(PoisonError::into_inner);
        let eq = |e: &Entry| e.hash == hash && *e.token == *token && *e.audiences == *audiences;
        if shard.table.find(hash, eq).is_some() {
            return;
        }
        if shard.table.len() >= self.per_shard {
            shard.table.retain(|e| !expired(&e.claims));
        }
        if shard.table.len() >= self.per_shard {
            // Still full of live tokens: drop about a quarter, in table order. Only validly
            // signed tokens get here, so this is load, not an attack on the cache.
            let keep = (self.per_shard * 3 / 4).min(self.per_shard.saturating_sub(1));
            let mut n = 0usize;
            shard.table.retain(|_| {
                n += 1;
                n <= keep
            });
        }
        let entry = Entry { hash, token: token.into(), audiences: audiences.into(), claims, key, generation };
        shard.table.insert_unique(hash, entry, |e| e.hash);
    }

    /// Drops entries whose key is not in `keys`; the rest move to `generation`.
    pub(crate) fn retain_keys(&self, keys: &KeySet, generation: u64) {
        for shard in &*self.shards {
            let mut shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            shard.table.retain(|e| {
                let keep = keys.get(&e.key.kid).is_some_and(|k| k.same_key(&e.key));
                if keep {
                    e.generation = generation;
                }
                keep
            });
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).table.len()).sum()
    }
}
