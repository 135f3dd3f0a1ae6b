//! Arbitrary requests through every set of the real CRS at sensitivity 4: parsing and rule
//! evaluation never panic, whatever the bytes, and the shortcut that rules out a rule by its
//! prefilter group's matches over the whole request changes no result (the fuzz target `fuzz/fuzz_targets/waf_request.rs`
//! goes further). Needs the CRS (Debian's `modsecurity-crs` or `MOAT_CRS_DIR`); says so and
//! passes when it is absent.

use std::path::PathBuf;
use std::sync::OnceLock;

use moat_waf::{Crs, FAMILIES, WafRequest};
use proptest::prelude::*;

fn crs() -> Option<&'static Crs> {
    static CRS: OnceLock<Option<Crs>> = OnceLock::new();
    CRS.get_or_init(|| {
        let dir =
            std::env::var_os("MOAT_CRS_DIR").map_or_else(|| PathBuf::from(moat_waf::DEFAULT_CRS_DIR), PathBuf::from);
        if !dir.is_dir() {
            eprintln!("CRS rules not found at {}; install Debian's modsecurity-crs or set MOAT_CRS_DIR", dir.display());
            return None;
        }
        match Crs::load(&dir) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("the CRS at {} does not load: {e}", dir.display());
                None
            }
        }
    })
    .as_ref()
}

/// Bytes that matter to the parsers and the rules: separators, escapes, quotes, tags, non-ASCII.
fn text() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("%".to_owned()),
            Just("&".to_owned()),
            Just("=".to_owned()),
            Just("'".to_owned()),
            Just("<script>".to_owned()),
            Just(" OR 1=1--".to_owned()),
            Just("\\u00".to_owned()),
            Just("&#x".to_owned()),
            Just("../".to_owned()),
            Just("{\"a\":[".to_owned()),
            Just("é€\u{1F600}".to_owned()),
            "[ -~]{0,8}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_request_is_inspected_without_panicking(
        method in "[A-Z]{1,7}",
        target in text(),
        headers in proptest::collection::vec(("[A-Za-z-]{1,12}", text()), 0..6),
        body in proptest::collection::vec(any::<u8>(), 0..200),
        content_type in prop_oneof![Just(""), Just("application/json"), Just("application/x-www-form-urlencoded"), Just("text/xml"), Just("multipart/form-data; boundary=x")],
        json in any::<bool>(),
    ) {
        let Some(crs) = crs() else { return Ok(()) };
        let mut headers: Vec<(String, Vec<u8>)> = headers.into_iter().map(|(n, v)| (n, v.into_bytes())).collect();
        if !content_type.is_empty() {
            headers.push(("Content-Type".to_owned(), content_type.as_bytes().to_vec()));
        }
        let request = WafRequest { method, uri: format!("/{target}"), protocol: "HTTP/1.1".to_owned(), headers, body, json };
        let mut inspection = crs.inspect(&request);
        let mut exhaustive = crs.inspect_exhaustive(&request);
        for (family, _) in FAMILIES {
            let fired = inspection.evaluate(family, &|_, _| true, &|_, _, _| false);
            let every = exhaustive.evaluate(family, &|_, _| true, &|_, _, _| false);
            prop_assert_eq!(fired, every, "family {}", family);
        }
    }
}
