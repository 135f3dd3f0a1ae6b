//! Fuzzes the WAF's `t:` transformations with untrusted bytes (request data). Every
//! transformation, and every chain of two, must return without panicking, and `apply` must
//! keep its contract: `Some` only when the output differs from the input.
//!
//! Run (from `fuzz/`): `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none waf_transform corpus/waf_transform -- -max_total_time=150`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use moat_waf::transform::Transform;

fuzz_target!(|data: &[u8]| {
    for first in Transform::ALL {
        let once = match first.apply(data) {
            Some(out) => {
                assert_ne!(out.as_slice(), data, "{} returned Some for an unchanged value", first.name());
                out
            }
            None => data.to_vec(),
        };
        for second in Transform::ALL {
            if let Some(out) = second.apply(&once) {
                assert_ne!(out, once, "{} returned Some for an unchanged value", second.name());
            }
        }
    }
});
