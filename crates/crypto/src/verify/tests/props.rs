//! Random mutations of a valid token never verify and never panic.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Mutation {
    Replace(usize, u8),
    Delete(usize),
    Insert(usize, u8),
    Truncate(usize),
    Swap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Replace(i, b)),
        (any::<usize>(), prop::sample::select(b"ABCabc012-_=.+/ \n".to_vec()))
            .prop_map(|(i, b)| Mutation::Replace(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
    ]
}

fn apply(token: &str, muts: &[Mutation]) -> Vec<u8> {
    let mut b = token.as_bytes().to_vec();
    for m in muts {
        if b.is_empty() {
            break;
        }
        let n = b.len();
        match *m {
            Mutation::Replace(i, x) => b[i % n] = x,
            Mutation::Delete(i) => {
                b.remove(i % n);
            }
            Mutation::Insert(i, x) => b.insert(i % (n + 1), x),
            Mutation::Truncate(i) => b.truncate(i % n),
            Mutation::Swap(i, j) => b.swap(i % n, j % n),
        }
    }
    b
}

fn fixture() -> &'static (String, Verifier) {
    static F: OnceLock<(String, Verifier)> = OnceLock::new();
    F.get_or_init(|| (good(), verifier()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn mutated_tokens_never_verify(muts in prop::collection::vec(mutation(), 1..4)) {
        let (token, v) = fixture();
        let bytes = apply(token, &muts);
        let Ok(s) = std::str::from_utf8(&bytes) else { return Ok(()) };
        let uncached = v.verify_uncached(s, &auds(), NOW);
        let cached = v.verify(s, &auds(), NOW);
        if s == token {
            prop_assert!(uncached.is_ok() && cached.is_ok());
        } else {
            prop_assert!(uncached.is_err(), "mutation verified: {muts:?}");
            prop_assert!(cached.is_err(), "mutation verified through the cache: {muts:?}");
        }
    }
}
