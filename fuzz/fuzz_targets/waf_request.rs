//! Fuzzes the WAF's request normaliser and the rules over it: arbitrary bytes become a request
//! (method, target, headers, body split from the input), the collections are parsed
//! (arguments, cookies, JSON, the unparsed body) and, when the CRS is installed
//! (`/usr/share/modsecurity-crs` or `MOAT_CRS_DIR`), every set runs on it at sensitivity 4. Nothing
//! may panic.
//!
//! Run (from `fuzz/`): `RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer none waf_request corpus/waf_request -- -max_total_time=150`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use moat_waf::request::Collections;
use moat_waf::{Crs, FAMILIES, WafRequest};

fn crs() -> Option<&'static Crs> {
    static CRS: OnceLock<Option<Crs>> = OnceLock::new();
    CRS.get_or_init(|| {
        let dir: std::path::PathBuf =
            std::env::var_os("MOAT_CRS_DIR").map_or_else(|| moat_waf::DEFAULT_CRS_DIR.into(), Into::into);
        Crs::load(&dir).ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    // Fields separated by NUL: method, target, then header name/value pairs; the body is what
    // follows a double NUL.
    let (head, body) = match data.windows(2).position(|w| w == [0, 0]) {
        Some(i) => (&data[..i], &data[i + 2..]),
        None => (data, &[][..]),
    };
    let mut fields = head.split(|b| *b == 0).map(|f| String::from_utf8_lossy(f).into_owned());
    let method = fields.next().unwrap_or_default();
    let uri = fields.next().unwrap_or_default();
    let mut headers = Vec::new();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        headers.push((name, value.into_bytes()));
    }
    let request = WafRequest {
        method,
        uri,
        protocol: "HTTP/1.1".into(),
        headers,
        body: body.to_vec(),
        json: body.first() == Some(&b'{'),
    };
    let _ = Collections::parse(&request);
    if let Some(crs) = crs() {
        let mut inspection = crs.inspect(&request);
        for (family, _) in FAMILIES {
            let _ = inspection.evaluate(family, &|_, _| true, &|_, _, _| false);
        }
    }
});
