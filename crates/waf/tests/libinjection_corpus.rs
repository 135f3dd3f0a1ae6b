//! Holds `libinjectionrs` to libinjection's own test files (`libinjection/tests/test-*.txt`).
//!
//! Each file is run the way libinjection's C test driver (`src/testdriver.c`) runs it, and the
//! output is printed in that driver's format, so the comparison is with the C library's
//! expected output byte for byte:
//!
//! - `test-sqli-*`: `libinjection_sqli` — the fingerprint when the input is SQLi, else nothing
//!   (through `moat_waf::libinjection::detect_sqli`, the function the WAF uses);
//! - `test-folding-*`: the folded tokens (`FLAG_QUOTE_NONE | FLAG_SQL_ANSI`), one per line;
//! - `test-tokens-*`: the raw token stream, same flags;
//! - `test-html5-*`: the HTML5 tokenizer from the data state, `TYPE,len,text` per line;
//! - `test-xss-*` (none in the corpus today): `libinjection_xss` as `0` / `1`.
//!
//! The corpus is not part of this repository. By default it is looked for at
//! `../shared/corpora/libinjection/tests` next to the repository root; `MOAT_LIBINJECTION_TESTS`
//! points elsewhere. When the default location is absent the test says so and passes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use libinjectionrs::sqli::{SqliFlags, SqliState, SqliTokenizer, Token, TokenType};
use libinjectionrs::xss::{Html5Flags, Html5State};
use moat_waf::libinjection::{detect_sqli, detect_xss};

const ENV_VAR: &str = "MOAT_LIBINJECTION_TESTS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Sqli,
    Folding,
    Tokens,
    Html5,
    Xss,
}

impl Kind {
    /// The driver picks the test by a substring of the file name (`strstr`).
    fn of(file_name: &str) -> Option<Self> {
        [
            ("test-tokens-", Self::Tokens),
            ("test-folding-", Self::Folding),
            ("test-sqli-", Self::Sqli),
            ("test-html5-", Self::Html5),
            ("test-xss-", Self::Xss),
        ]
        .into_iter()
        .find(|(marker, _)| file_name.contains(marker))
        .map(|(_, kind)| kind)
    }

    fn label(self) -> &'static str {
        match self {
            Self::Sqli => "sqli",
            Self::Folding => "folding",
            Self::Tokens => "tokens",
            Self::Html5 => "html5",
            Self::Xss => "xss",
        }
    }

    fn run(self, input: &[u8]) -> Vec<u8> {
        match self {
            Self::Sqli => {
                detect_sqli(input).map(|fingerprint| fingerprint.to_string().into_bytes()).unwrap_or_default()
            }
            Self::Folding => folded_tokens(input),
            Self::Tokens => token_stream(input),
            Self::Html5 => html5_tokens(input),
            Self::Xss => if detect_xss(input) { b"1" } else { b"0" }.to_vec(),
        }
    }
}

/// The driver's flags for `test-tokens-*` and `test-folding-*`.
fn driver_sql_flags() -> SqliFlags {
    SqliFlags::FLAG_QUOTE_NONE | SqliFlags::FLAG_SQL_ANSI
}

/// `testtype == 0`: `libinjection_sqli_tokenize` until it returns 0, `print_token` each.
fn token_stream(input: &[u8]) -> Vec<u8> {
    let mut tokenizer = SqliTokenizer::new(input, driver_sql_flags());
    let mut out = Vec::new();
    while let Some(token) = tokenizer.next_token() {
        print_token(&mut out, &token);
    }
    out
}

/// `testtype == 1`: `libinjection_sqli_fold`, then `print_token` for tokens `0..n`.
fn folded_tokens(input: &[u8]) -> Vec<u8> {
    let mut state = SqliState::new(input, driver_sql_flags());
    let count = state.fold_tokens();
    let mut out = Vec::new();
    for i in 0..count {
        match state.tokens.get(i) {
            Some(token) => print_token(&mut out, token),
            // C would print whatever sits in `tokenvec[i]`; the port keeps fewer tokens than
            // it reports. Make that visible rather than guess what C would have printed.
            None => out.extend_from_slice(format!("<no token {i} of {count}>\n").as_bytes()),
        }
    }
    out
}

/// `testtype == 3`: `libinjection_h5_init(DATA_STATE)`, `print_html5_token` per token.
fn html5_tokens(input: &[u8]) -> Vec<u8> {
    let mut state = Html5State::new(input, Html5Flags::DataState);
    let mut out = Vec::new();
    while state.next() {
        let text = state.token_start.get(..state.token_len).unwrap_or(state.token_start);
        out.extend_from_slice(format!("{},{},", state.token_type, state.token_len).as_bytes());
        // `%s` of a NUL-terminated copy.
        out.extend_from_slice(until_nul(text));
        out.push(b'\n');
    }
    out
}

/// `print_token`: type character, a space, the value, a newline.
fn print_token(out: &mut Vec<u8>, token: &Token) {
    let mut type_char = [0; 4];
    out.extend_from_slice(token.token_type.to_char().encode_utf8(&mut type_char).as_bytes());
    out.push(b' ');
    match token.token_type {
        TokenType::String => print_string(out, token, value(token)),
        TokenType::Variable => print_var(out, token),
        _ => out.extend_from_slice(value(token)),
    }
    out.push(b'\n');
}

/// `print_string`: the opening quote if any, the value, the closing quote if any.
fn print_string(out: &mut Vec<u8>, token: &Token, value: &[u8]) {
    if token.str_open != 0 {
        out.push(token.str_open);
    }
    out.extend_from_slice(value);
    if token.str_close != 0 {
        out.push(token.str_close);
    }
}

/// `print_var`: one `@` per `count` (1 or 2), then `print_string`.
///
/// One representation difference is bridged here: for a plain variable (`@x`, `@@x`, `@`) C
/// stores the name without its `@`s (`val = "x"`), the port stores them (`val = "@x"`), with
/// the same `count`. C's variable names never start with `@` (the tokenizer stops at one), so
/// stripping `count` leading `@`s from the port's value recovers C's value exactly. Quoted
/// variables (`@'x'`, ``@@`x` ``) are stored alike in both and are printed as they are.
fn print_var(out: &mut Vec<u8>, token: &Token) {
    let at_signs: &[u8] = match token.count {
        c if c >= 2 => b"@@",
        1 => b"@",
        _ => b"",
    };
    out.extend_from_slice(at_signs);
    let raw = value(token);
    let name = if token.str_open == 0 { raw.strip_prefix(at_signs).unwrap_or(raw) } else { raw };
    print_string(out, token, name);
}

/// `%s` of `t->val`: the bytes up to the first NUL.
fn value(token: &Token) -> &[u8] {
    until_nul(&token.val)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    bytes.get(..end).unwrap_or(bytes)
}

/// `modp_rtrim`.
fn rtrim(mut bytes: &[u8]) -> &[u8] {
    while let Some((last, rest)) = bytes.split_last() {
        if matches!(last, b' ' | b'\n' | b'\t' | b'\r') {
            bytes = rest;
        } else {
            break;
        }
    }
    bytes
}

/// One test file: `--TEST--`, `--INPUT--` and `--EXPECTED--` sections, as the driver reads
/// them (markers are whole lines matched exactly, in that order; input and expected output
/// are right-trimmed, and the input ends at its first NUL because the driver uses `strlen`).
struct TestFile {
    input: Vec<u8>,
    expected: Vec<u8>,
}

fn parse(content: &[u8]) -> Result<TestFile, String> {
    let mut section = 0;
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for line in content.split_inclusive(|&b| b == b'\n') {
        match (section, line) {
            (0, b"--TEST--\n") => section = 1,
            (1, b"--INPUT--\n") => section = 2,
            (2, b"--EXPECTED--\n") => section = 3,
            (0, _) => return Err("text before `--TEST--`".to_owned()),
            (1, _) => {}
            (2, _) => input.extend_from_slice(line),
            _ => expected.extend_from_slice(line),
        }
    }
    if section != 3 {
        return Err("missing `--INPUT--` or `--EXPECTED--`".to_owned());
    }
    Ok(TestFile { input: rtrim(until_nul(&input)).to_vec(), expected: rtrim(&expected).to_vec() })
}

/// Output for a failure message; an empty output is spelled out.
fn shown(output: &[u8]) -> String {
    if output.is_empty() { "(nothing)".to_owned() } else { String::from_utf8_lossy(output).into_owned() }
}

struct Mismatch {
    file: String,
    input: Vec<u8>,
    expected: Vec<u8>,
    got: Vec<u8>,
}

fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV_VAR) {
        let dir = PathBuf::from(dir);
        assert!(
            dir.is_dir(),
            "{ENV_VAR} is set to `{}`, which is not a directory; point it at libinjection's \
             `tests` directory",
            dir.display()
        );
        return Some(dir);
    }
    let default = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpora/libinjection/tests");
    if default.is_dir() {
        Some(default)
    } else {
        eprintln!(
            "libinjection corpus not found at {}; set {ENV_VAR}=<libinjection>/tests to run it",
            default.display()
        );
        None
    }
}

fn test_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("cannot list `{}`: {e}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("test-") && name.ends_with(".txt") {
            files.push((name, entry.path()));
        }
    }
    files.sort();
    Ok(files)
}

#[test]
fn libinjectionrs_agrees_with_libinjection_test_files() {
    let Some(dir) = corpus_dir() else {
        return;
    };
    let mut errors = Vec::new();
    let files = test_files(&dir).unwrap_or_else(|message| {
        errors.push(message);
        Vec::new()
    });
    if files.is_empty() {
        errors.push(format!(
            "no `test-*.txt` files in `{}`; point {ENV_VAR} at libinjection's `tests` directory",
            dir.display()
        ));
    }

    // (agree, total) per kind; the four kinds the corpus has are always reported.
    let mut counts: BTreeMap<Kind, (usize, usize)> =
        [Kind::Sqli, Kind::Folding, Kind::Tokens, Kind::Html5].into_iter().map(|kind| (kind, (0, 0))).collect();
    let mut mismatches = Vec::new();
    for (name, path) in &files {
        let Some(kind) = Kind::of(name) else {
            errors.push(format!("{name}: unknown test type"));
            continue;
        };
        let test = match fs::read(path).map_err(|e| format!("cannot read: {e}")).and_then(|content| parse(&content)) {
            Ok(test) => test,
            Err(message) => {
                errors.push(format!("{name}: {message}"));
                continue;
            }
        };
        let got = kind.run(&test.input);
        let got = rtrim(&got);
        let entry = counts.entry(kind).or_default();
        entry.1 += 1;
        if got == test.expected.as_slice() {
            entry.0 += 1;
        } else {
            mismatches.push(Mismatch {
                file: name.clone(),
                input: test.input,
                expected: test.expected,
                got: got.to_vec(),
            });
        }
    }

    let agree: usize = counts.values().map(|(agree, _)| agree).sum();
    let per_kind = counts
        .iter()
        .map(|(kind, (agree, total))| format!("{} {agree}/{total}", kind.label()))
        .collect::<Vec<_>>()
        .join(", ");
    eprintln!("libinjection corpus: {agree}/{} agree ({per_kind})", files.len());

    let mut report = String::new();
    for error in &errors {
        let _ = writeln!(report, "{error}");
    }
    for m in &mismatches {
        let _ = writeln!(
            report,
            "--- {}\ninput:    {:?}\nexpected:\n{}\ngot:\n{}\n",
            m.file,
            String::from_utf8_lossy(&m.input),
            shown(&m.expected),
            shown(&m.got),
        );
    }
    assert!(
        report.is_empty(),
        "{} of {} libinjection test files disagree or could not be run:\n{report}",
        mismatches.len() + errors.len(),
        files.len()
    );
}
