//! libinjection's SQLi and XSS detectors, behind CRS's `@detectSQLi` and `@detectXSS`.
//!
//! The detection itself is `libinjectionrs`, a Rust port of libinjection's C. The port is young
//! and machine-translated, so this module is the only place that touches it: the rest of the WAF
//! sees two functions with libinjection's own semantics, and `tests/libinjection_corpus.rs`
//! holds the port to libinjection's test files (fingerprints, tokens, folding, HTML5 tokens).

use core::fmt;

use libinjectionrs::{SqliFlags, SqliState};

/// Size of libinjection's fingerprint buffer (`char fingerprint[8]`, NUL-terminated).
const FINGERPRINT_CAPACITY: usize = 8;

/// A libinjection SQLi fingerprint: the folded token types, such as `s&1c` (string, logic
/// operator, number, comment). At most five characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    bytes: [u8; FINGERPRINT_CAPACITY],
    len: usize,
}

impl Fingerprint {
    /// Reads libinjection's NUL-terminated fingerprint buffer.
    fn from_nul_terminated(raw: &[u8; FINGERPRINT_CAPACITY]) -> Self {
        let len = raw.iter().position(|&b| b == 0).unwrap_or(FINGERPRINT_CAPACITY);
        Self { bytes: *raw, len }
    }

    /// The fingerprint as text. Token types are ASCII letters and punctuation, so this is
    /// never lossy in practice; a non-UTF-8 buffer would give `""`.
    pub fn as_str(&self) -> &str {
        self.bytes.get(..self.len).and_then(|b| core::str::from_utf8(b).ok()).unwrap_or("")
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({:?})", self.as_str())
    }
}

/// libinjection's `libinjection_sqli`: `Some(fingerprint)` when the input is SQLi (fingerprint
/// like `s&1c`), `None` otherwise.
///
/// This is `libinjection_is_sqli`, which tries the input as is, then as if it followed a single
/// quote, then a double quote, re-parsing as MySQL when comments call for it. (The port's
/// `SqliState::is_sqli` checks only the first of those contexts, so it is not used.)
pub fn detect_sqli(input: &[u8]) -> Option<Fingerprint> {
    let mut state = SqliState::new(input, SqliFlags::FLAG_NONE);
    // `detect` stops at the first context that is SQLi, leaving that context's fingerprint in
    // `state.fingerprint`, as libinjection's C does.
    state.detect().then(|| Fingerprint::from_nul_terminated(&state.fingerprint))
}

/// libinjection's `libinjection_xss`: whether the input is XSS in any of the five HTML contexts
/// (text, unquoted / single / double / back-quoted attribute value).
pub fn detect_xss(input: &[u8]) -> bool {
    libinjectionrs::detect_xss(input).is_injection()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classic_tautology_is_sqli_with_its_fingerprint() {
        let fingerprint = detect_sqli(b"1' OR '1'='1");
        assert_eq!(fingerprint.map(|f| f.to_string()), Some("s&sos".to_owned()));
    }

    #[test]
    fn union_select_is_sqli() {
        assert!(detect_sqli(b"-1 UNION SELECT password FROM users--").is_some());
    }

    #[test]
    fn script_tag_is_xss() {
        assert!(detect_xss(b"<script>alert(1)</script>"));
    }

    #[test]
    fn event_handler_attribute_is_xss() {
        assert!(detect_xss(b"\" onerror=alert(1) x=\""));
    }

    #[test]
    fn plain_text_is_neither() {
        assert_eq!(detect_sqli(b"hello world"), None);
        assert!(!detect_xss(b"hello world"));
    }

    #[test]
    fn empty_input_is_neither() {
        assert_eq!(detect_sqli(b""), None);
        assert!(!detect_xss(b""));
    }

    /// Where libinjectionrs 0.1.1 disagreed with libinjection's C, fixed in the patched copy
    /// (vendor/libinjectionrs/PATCHED.md). Every expected fingerprint is what C's
    /// `libinjection_sqli` answers (libinjection as bundled in libmodsecurity 3.0.9).
    #[test]
    fn multi_word_keywords_and_into_outfile_agree_with_libinjection_c() {
        let cases: &[(&[u8], Option<&str>)] = &[
            // Phrases built on a bareword-typed phrase ("IN BOOLEAN", "LOCK IN SHARE", ...).
            (b"1' IN BOOLEAN MODE) RLIKE (SELECT (CASE WHEN (2270=3285) THEN 1 ELSE 0x28 END))# ", Some("sk)o(")),
            (b"-1 LOCK IN SHARE MODE UNION SELECT table_name from information_schema.tables", Some("1kUEn")),
            (b"1 AT TIME ZONE 'x' --", Some("1ksc")),
            (b"1 IS NOT DISTINCT FROM 1 --", Some("1c")),
            // INTO OUTFILE / DUMPFILE in any case.
            (b"1 into outfile 'asd'", Some("1ks")),
            (b"1 INTO OUTFILE 'x'", Some("1ks")),
            (b"1 into dumpfile 'x'", Some("1ks")),
            (b"' into outfile '/var/www/aa.php", Some("sks")),
            (b"@version into outfile 'asd'", Some("vks")),
            // And what C does not call SQLi stays so.
            (b"1 in boolean", None),
            (b"into outfile", None),
        ];
        for (input, want) in cases {
            let got = detect_sqli(input).map(|f| f.to_string());
            assert_eq!(got.as_deref(), *want, "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn fingerprint_display_and_debug() {
        let fingerprint = Fingerprint::from_nul_terminated(b"s&1c\0\0\0\0");
        assert_eq!(fingerprint.as_str(), "s&1c");
        assert_eq!(fingerprint.to_string(), "s&1c");
        assert_eq!(format!("{fingerprint:?}"), "Fingerprint(\"s&1c\")");
    }

    proptest! {
        // The port indexes slices freely; request bytes are attacker-chosen, so a panic here
        // would be a way to knock requests over.
        #[test]
        fn arbitrary_bytes_do_not_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = detect_sqli(&input);
            let _ = detect_xss(&input);
        }

        #[test]
        fn sql_ish_text_does_not_panic(input in "[-'\"`@#/*()=;,. a-zA-Z0-9\\\\]{0,64}") {
            let _ = detect_sqli(input.as_bytes());
            let _ = detect_xss(input.as_bytes());
        }
    }
}
