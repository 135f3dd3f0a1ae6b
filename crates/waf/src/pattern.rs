//! `@rx` patterns: PCRE syntax as the CRS writes it, compiled once at load into the linear-time
//! `regex` engine when it can express the pattern, and into the backtracking `fancy-regex`
//! engine (look-arounds, back-references, atomic groups) only when it cannot. A pattern neither
//! accepts is a load error: a rule that can never match must not load silently.
//!
//! Matching follows ModSecurity's PCRE flags: `.` matches newlines (PCRE_DOTALL), `$` only at the
//! very end (PCRE_DOLLAR_ENDONLY, the `regex` default), bytes rather than UTF-8 characters (no
//! PCRE_UTF8: `\w` and `(?i)` are ASCII, `\xbc` is one byte).

use std::fmt;

/// Backtracking budget for `fancy-regex`, like PCRE's match limit: past it the match fails (the
/// rule does not match for that value) and is counted as an error rather than hanging the request.
const BACKTRACK_LIMIT: usize = 1_000_000;

/// Size limit for compiled `regex` programs; the largest CRS patterns need a few MB.
const SIZE_LIMIT: usize = 64 << 20;

/// A compiled `@rx` pattern.
pub enum Pattern {
    Linear(regex::bytes::Regex),
    Backtracking(Box<fancy_regex::Regex>),
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linear(r) => f.debug_tuple("Linear").field(&r.as_str()).finish(),
            Self::Backtracking(r) => f.debug_tuple("Backtracking").field(&r.as_str()).finish(),
        }
    }
}

/// The result of running a pattern on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    No,
    /// Matched; with `captures`, the whole match then groups 1..=9 (absent groups empty).
    Yes(Vec<Vec<u8>>),
    /// The backtracking engine gave up (budget exhausted): treated as no match.
    Error,
}

impl Pattern {
    pub fn compile(pcre: &str) -> Result<Pattern, String> {
        let translated = translate(pcre);
        let linear = regex::bytes::RegexBuilder::new(&translated)
            .unicode(false)
            .dot_matches_new_line(true)
            .size_limit(SIZE_LIMIT)
            .dfa_size_limit(SIZE_LIMIT)
            .build();
        match linear {
            Ok(r) => Ok(Pattern::Linear(r)),
            Err(linear_error) => fancy_regex::RegexBuilder::new(&format!("(?s){translated}"))
                .backtrack_limit(BACKTRACK_LIMIT)
                .build()
                .map(|r| Pattern::Backtracking(Box::new(r)))
                .map_err(|e| {
                    let linear_error = linear_error.to_string();
                    let first = linear_error.lines().last().unwrap_or_default().trim().to_owned();
                    format!("pattern does not compile: {e} (and the linear engine says: {first})")
                }),
        }
    }

    /// The pattern as the linear engine compiled it (`None` for a backtracking one).
    pub fn linear_source(&self) -> Option<&str> {
        match self {
            Self::Linear(r) => Some(r.as_str()),
            Self::Backtracking(_) => None,
        }
    }

    /// Compiles the linear patterns `sources` into one set, with the options of
    /// [`Pattern::compile`]: a value matches member `i` exactly when it matches pattern `i`.
    pub fn set(sources: &[&str]) -> Result<regex::bytes::RegexSet, String> {
        regex::bytes::RegexSetBuilder::new(sources)
            .unicode(false)
            .dot_matches_new_line(true)
            .size_limit(SIZE_LIMIT * 4)
            .dfa_size_limit(SIZE_LIMIT)
            .build()
            .map_err(|e| e.to_string())
    }

    pub fn is_backtracking(&self) -> bool {
        matches!(self, Self::Backtracking(_))
    }

    /// Runs the pattern; `captures` asks for the matched text and groups (the `capture` action).
    pub fn find(&self, input: &[u8], captures: bool) -> Found {
        match self {
            Self::Linear(r) => {
                // Most CRS rules ask for captures and almost never match: test first, and pay
                // for the capture groups only on a match.
                if !r.is_match(input) {
                    return Found::No;
                }
                if !captures {
                    return Found::Yes(Vec::new());
                }
                match r.captures(input) {
                    None => Found::No,
                    Some(c) => Found::Yes(
                        (0..c.len().min(10))
                            .map(|i| c.get(i).map(|m| m.as_bytes().to_vec()).unwrap_or_default())
                            .collect(),
                    ),
                }
            }
            Self::Backtracking(r) => {
                // fancy-regex works on text: bytes that are not UTF-8 become U+FFFD, which no CRS
                // pattern that needs this engine looks for.
                let text = String::from_utf8_lossy(input);
                if !captures {
                    return match r.is_match(text.as_ref()) {
                        Ok(true) => Found::Yes(Vec::new()),
                        Ok(false) => Found::No,
                        Err(_) => Found::Error,
                    };
                }
                match r.captures(text.as_ref()) {
                    Ok(None) => Found::No,
                    Ok(Some(c)) => Found::Yes(
                        (0..c.len().min(10))
                            .map(|i| c.get(i).map(|m| m.as_str().as_bytes().to_vec()).unwrap_or_default())
                            .collect(),
                    ),
                    Err(_) => Found::Error,
                }
            }
        }
    }
}

/// Rewrites the PCRE constructs `regex` reads differently: a `{` that does not start a valid
/// `{n}`, `{n,}` or `{n,m}` quantifier is a literal in PCRE (and an error in `regex`), so it is
/// escaped. Everything else passes through unchanged.
fn translate(pcre: &str) -> String {
    let bytes = pcre.as_bytes();
    let mut out = String::with_capacity(pcre.len() + 8);
    let mut in_class = false;
    let mut chars = pcre.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // `[]` or `[^]` at the start of a class: the `]` is a literal in PCRE.
                if chars.next_if(|(_, c)| *c == '^').is_some() {
                    out.push('^');
                }
                if chars.next_if(|(_, c)| *c == ']').is_some() {
                    out.push_str("\\]");
                }
            }
            '[' if in_class => {
                // A literal `[` inside a class (PCRE) — `regex` would read a nested class.
                if bytes.get(i + 1) == Some(&b':') {
                    out.push(c);
                } else {
                    out.push_str("\\[");
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            '{' if !in_class && !is_quantifier(bytes.get(i + 1..).unwrap_or_default()) => out.push_str("\\{"),
            // PCRE without UTF-8 mode reads a non-ASCII character as its bytes, in a class too
            // (942420's `[...´’‘...]` is a class of bytes); `regex` without Unicode wants them
            // spelled as byte escapes.
            c if !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            '}' if !in_class => {
                // Only reached for a `}` that closes nothing we passed through as a quantifier.
                if closes_quantifier(&out) {
                    out.push('}');
                } else {
                    out.push_str("\\}");
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// Whether the text after a `{` is `n}`, `n,}` or `n,m}`.
fn is_quantifier(after: &[u8]) -> bool {
    let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return false;
    }
    let rest = after.get(digits..).unwrap_or_default();
    match rest.first() {
        Some(b'}') => true,
        Some(b',') => {
            let rest = rest.get(1..).unwrap_or_default();
            let more = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            rest.get(more) == Some(&b'}')
        }
        _ => false,
    }
}

/// Whether `out` ends inside an unescaped quantifier `{n` / `{n,` / `{n,m`.
fn closes_quantifier(out: &str) -> bool {
    let Some(open) = out.rfind('{') else { return false };
    if out.get(..open).is_some_and(|b| b.ends_with('\\')) {
        return false;
    }
    let inner = out.get(open + 1..).unwrap_or_default();
    !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_digit() || b == b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(p: &str, input: &str) -> bool {
        matches!(Pattern::compile(p).map(|p| p.find(input.as_bytes(), false)), Ok(Found::Yes(_)))
    }

    #[test]
    fn pcre_literal_braces() {
        assert!(hit(r"\${[^}]+}", "x ${jndi:ldap} y"));
        assert!(hit(r"a{2}", "aa"));
        assert!(!hit(r"a{2}", "a"));
        assert!(hit(r"{{.*?}}", "{{7*7}}"));
        assert!(hit(r"x{,3}", "x{,3}"));
    }

    #[test]
    fn linear_unless_needed() {
        assert!(matches!(Pattern::compile(r"(?i)union\s+select"), Ok(Pattern::Linear(_))));
        assert!(Pattern::compile(r"(a)\1").is_ok_and(|p| p.is_backtracking()));
        assert!(hit(r"(?<=a)b", "ab"));
        assert!(!hit(r"(?<=a)b", "cb"));
        assert!(Pattern::compile(r"(unclosed").is_err());
    }

    #[test]
    fn bytes_and_dotall() {
        assert!(hit(r"a.b", "a\nb"));
        assert!(matches!(Pattern::compile(r"\xbc").map(|p| p.find(&[0xbc], false)), Ok(Found::Yes(_))));
        assert!(!hit(r"end$", "end\n"));
    }

    #[test]
    fn non_ascii_is_bytes_as_in_pcre_without_utf8() {
        let p = Pattern::compile("[´’]{2}");
        assert!(matches!(p, Ok(Pattern::Linear(_))), "{p:?}");
        // `´’` is four bytes (C2 B4 E2 80 99...): any two of the class's bytes in a row match.
        assert!(hit("[´’]{2}", "x´y"));
        assert!(hit("café", "un café"));
        assert!(!hit("café", "cafe"));
    }

    #[test]
    fn captures() {
        let p = Pattern::compile(r"(\d+)-(\d+)");
        let found = p.map(|p| p.find(b"x 12-34 y", true));
        assert_eq!(found, Ok(Found::Yes(vec![b"12-34".to_vec(), b"12".to_vec(), b"34".to_vec()])));
    }
}
