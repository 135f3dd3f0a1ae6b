//! The verified-token cache: successful verifications keyed by a SHA-256 of (token, acceptable
//! audiences).
//!
//! No bearer token is kept: an entry holds only the digest, so a memory dump of the cache
//! yields nothing to replay. A hit costs one SHA-256 of the token (hardware-accelerated in
//! aws-lc-rs), one shard lock and a 32-byte comparison; a collision would need a SHA-256
//! second preimage. The audiences are in the digest, so a token verified for one service is
//! never a hit for another (J29); each issuer has its own verifier and cache. Entries remember
//! the key that verified them; a hit under a newer key set re-checks that this key is still
//! published (revocation by key removal, J29).

use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::digest;

use hashbrown::HashTable;

use super::VerifiedClaims;
use super::keyset::{KeySet, VerifyingKey};

const SHARDS: usize = 16;

pub(crate) struct Cache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

#[derive(Default)]
struct Shard {
    table: HashTable<Entry>,
}

/// SHA-256 over the token and the audiences, each length-prefixed.
pub(crate) type Digest = [u8; 32];

struct Entry {
    digest: Digest,
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
        Self { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), per_shard }
    }

    /// The cache key of (token, audiences). Lengths are prefixed so that no two different
    /// inputs concatenate to the same bytes.
    pub(crate) fn digest(token: &str, audiences: &[String]) -> Digest {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&(token.len() as u64).to_be_bytes());
        ctx.update(token.as_bytes());
        ctx.update(&(audiences.len() as u64).to_be_bytes());
        for a in audiences {
            ctx.update(&(a.len() as u64).to_be_bytes());
            ctx.update(a.as_bytes());
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// The table hash: the digest's first bytes are already uniform.
    fn hash(digest: &Digest) -> u64 {
        let [a, b, c, d, e, f, g, h, ..] = *digest;
        u64::from_le_bytes([a, b, c, d, e, f, g, h])
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard> {
        // hashbrown uses the low bits for the bucket and the top 7 for its tag: pick the shard
        // from bits in between so entries spread evenly inside each shard.
        let i = ((hash >> 32) as usize) % SHARDS;
        #[expect(clippy::indexing_slicing, reason = "i < SHARDS == shards.len()")]
        &self.shards[i]
    }

    /// Finds the entry for `digest`. An entry whose key left the key set is dropped.
    pub(crate) fn get(&self, digest: &Digest, generation: u64, keys: &KeySet) -> Lookup {
        let hash = Self::hash(digest);
        let mut shard = self.shard(hash).lock().unwrap_or_else(PoisonError::into_inner);
        let eq = |e: &Entry| e.digest == *digest;
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

    pub(crate) fn insert(
        &self,
        digest: Digest,
        claims: VerifiedClaims,
        key: Arc<VerifyingKey>,
        generation: u64,
        expired: impl Fn(&VerifiedClaims) -> bool,
    ) {
        let hash = Self::hash(&digest);
        let mut shard = self.shard(hash).lock().unwrap_or_else(PoisonError::into_inner);
        let eq = |e: &Entry| e.digest == digest;
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
        let entry = Entry { digest, claims, key, generation };
        shard.table.insert_unique(hash, entry, |e| Self::hash(&e.digest));
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

#[cfg(test)]
mod tests {
    use super::Cache;

    fn auds(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_key_separates_token_and_audiences_unambiguously() {
        let d = Cache::digest("a.b.c", &auds(&["https://x"]));
        assert_eq!(d, Cache::digest("a.b.c", &auds(&["https://x"])));
        // Moving bytes between the token and an audience, or between audiences, is another key.
        assert_ne!(d, Cache::digest("a.b.", &auds(&["chttps://x"])));
        assert_ne!(Cache::digest("t", &auds(&["ab", "c"])), Cache::digest("t", &auds(&["a", "bc"])));
        assert_ne!(Cache::digest("t", &auds(&["a"])), Cache::digest("t", &auds(&["a", ""])));
        assert_ne!(d, Cache::digest("a.b.c", &auds(&["https://y"])));
    }
}
