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
    Backtracking(Box<Backtracking>),
}

/// A pattern only the backtracking engine can run, and a linear-time relaxation of it: the same
/// pattern with look-arounds dropped and back-references widened to "anything" ([`relax`]). Every
/// text the pattern matches, the relaxation matches too, so a text the relaxation rejects is
/// rejected without backtracking (most values, for the CRS's two such rules).
pub struct Backtracking {
    regex: fancy_regex::Regex,
    relaxed: Option<regex::Regex>,
}

impl fmt::Debug for Backtracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backtracking")
            .field("regex", &self.regex.as_str())
            .field("relaxed", &self.relaxed.as_ref().map(regex::Regex::as_str))
            .finish()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Linear(r) => f.debug_tuple("Linear").field(&r.as_str()).finish(),
            Self::Backtracking(b) => f.debug_tuple("Backtracking").field(&b.regex.as_str()).finish(),
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
                .map(|regex| {
                    // With fancy-regex's own defaults for the parts it hands to `regex` (Unicode
                    // on), so both read the same text the same way.
                    let relaxed = relax(&translated).and_then(|r| {
                        regex::RegexBuilder::new(&format!("(?s){r}")).size_limit(SIZE_LIMIT).build().ok()
                    });
                    Pattern::Backtracking(Box::new(Backtracking { regex, relaxed }))
                })
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

    /// Whether a backtracking pattern has a linear relaxation to screen values with.
    pub fn is_relaxed(&self) -> bool {
        matches!(self, Self::Backtracking(b) if b.relaxed.is_some())
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
            Self::Backtracking(b) => {
                // fancy-regex works on text: bytes that are not UTF-8 become U+FFFD, which no CRS
                // pattern that needs this engine looks for.
                let text = String::from_utf8_lossy(input);
                if b.relaxed.as_ref().is_some_and(|relaxed| !relaxed.is_match(text.as_ref())) {
                    return Found::No;
                }
                let r = &b.regex;
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

/// A pattern that matches at least every text `pattern` (as [`translate`]d) matches, in the
/// syntax the linear engine reads, or `None` when it cannot be built: look-arounds are dropped
/// (a condition less), atomic groups become plain groups and possessive quantifiers greedy ones
/// (more ways to match), and a numbered back-reference becomes `(?s:.*?)` (it matched some
/// text; any text will do). Named back-references are not rewritten (`None`).
pub(crate) fn relax(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len());
    let mut i = 0;
    let mut in_class = false;
    let mut class_start = 0;
    // The last thing written was a quantifier (so a `+` after it makes it possessive).
    let mut after_quantifier = false;
    while let Some(&c) = chars.get(i) {
        if c == '\\' {
            let next = *chars.get(i + 1)?;
            if !in_class && next.is_ascii_digit() && next != '0' {
                out.push_str("(?s:.*?)");
                i += 2;
                while chars.get(i).is_some_and(char::is_ascii_digit) {
                    i += 1;
                }
            } else if !in_class && matches!(next, 'g' | 'k') {
                return None;
            } else {
                out.push(c);
                out.push(next);
                i += 2;
            }
            after_quantifier = false;
            continue;
        }
        if in_class {
            // `]` first in a class (`[]` or `[^]`) is a literal.
            let first = i == class_start + 1 || (i == class_start + 2 && chars.get(class_start + 1) == Some(&'^'));
            if c == ']' && !first {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        let rest: String = chars.get(i..(i + 4).min(chars.len()))?.iter().collect();
        if rest.starts_with("(?=") || rest.starts_with("(?!") || rest.starts_with("(?<=") || rest.starts_with("(?<!") {
            i = group_end(&chars, i)?;
            after_quantifier = false;
            continue;
        }
        if rest.starts_with("(?>") {
            out.push_str("(?:");
            i += 3;
            after_quantifier = false;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                class_start = i;
            }
            '+' if after_quantifier => {
                after_quantifier = false;
                i += 1;
                continue;
            }
            _ => {}
        }
        after_quantifier = matches!(c, '*' | '+' | '?' | '}') && !rest.starts_with("(?");
        out.push(c);
        i += 1;
    }
    Some(out)
}

/// The index just past the `)` that closes the group opening at `start`.
fn group_end(chars: &[char], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    let mut in_class = false;
    let mut class_start = 0;
    while let Some(&c) = chars.get(i) {
        match c {
            '\\' => {
                i += 2;
                continue;
            }
            '[' if !in_class => {
                in_class = true;
                class_start = i;
            }
            ']' if in_class
                && i > class_start + 1
                && !(i == class_start + 2 && chars.get(class_start + 1) == Some(&'^')) =>
            {
                in_class = false;
            }
            '(' if !in_class => depth += 1,
            ')' if !in_class => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
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
            '\\' => match chars.next() {
                // PCRE reads an escaped non-alphanumeric character as itself; `regex` reads
                // `\<` and `\>` as word boundaries outside a class and refuses them inside one
                // (921200's `[^:\(\)\&\|\!\<\>\~]`), so they are written as the characters.
                Some((_, next @ ('<' | '>'))) => out.push(next),
                Some((_, next)) => {
                    out.push(c);
                    out.push(next);
                }
                None => out.push(c),
            },
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
    fn escaped_angle_brackets_are_literals_as_in_pcre() {
        assert!(hit(r"a\<b", "a<b"));
        assert!(!hit(r"\<b", "x b"), "not a word boundary");
        assert!(hit(r"[\<\>]", ">"));
        let p921200 = r"^[^:\(\)\&\|\!\<\>\~]*\)\s*(?:\((?:[^,\(\)\=\&\|\!\<\>\~]+[><~]?=|\s*[&!|]\s*(?:\)|\()?\s*)|\)\s*\(\s*[\&\|\!]\s*|[&!|]\s*\([^\(\)\=\&\|\!\<\>\~]+[><~]?=[^:\(\)\&\|\!\<\>\~]*)";
        assert!(matches!(Pattern::compile(p921200), Ok(Pattern::Linear(_))), "921200 runs on the linear engine");
        assert!(hit(p921200, "foo)(&(cn=x)"));
    }

    #[test]
    fn relaxation_drops_conditions_and_widens_references() {
        assert_eq!(relax(r"(a+)x\1").as_deref(), Some(r"(a+)x(?s:.*?)"));
        assert_eq!(relax(r"\b(\w+)\b(?!\b\1\b)=").as_deref(), Some(r"\b(\w+)\b="));
        assert_eq!(relax(r"(?<=a)b(?<!c)").as_deref(), Some("b"));
        assert_eq!(relax(r"(?>ab|a)c").as_deref(), Some("(?:ab|a)c"));
        assert_eq!(relax(r"a++b*+c?+").as_deref(), Some("a+b*c?"));
        // Escapes and classes are copied as they are: `\1` in a class, `(` and `]` in classes.
        assert_eq!(relax(r"[\1(?!]x").as_deref(), Some(r"[\1(?!]x"));
        assert_eq!(relax(r"[]a](?=[)])b").as_deref(), Some("[]a]b"));
        assert_eq!(relax(r"[\]](?!x)").as_deref(), Some(r"[\]]"));
        assert_eq!(relax(r"\+\+").as_deref(), Some(r"\+\+"));
        assert_eq!(relax(r"(?<n>a)\k<n>"), None);
        assert_eq!(relax(r"(?!unclosed"), None);
    }

    #[test]
    fn relaxation_rejects_only_what_the_pattern_rejects() {
        let p = r#"(?i:[\s'\"`()]*?\b([\d\w]+)\b[\s'\"`()]*?(?:<(?:=(?:[\s'\"`()]*?(?!\b\1\b)[\d\w]+|>[\s'\"`()]*?(?:\b\1\b))|>?[\s'\"`()]*?(?!\b\1\b)[\d\w]+)|(?:not\s+(?:regexp|like)|is\s+not|>=?|!=|\^)[\s'\"`()]*?(?!\b\1\b)[\d\w]+|(?:(?:sounds\s+)?like|r(?:egexp|like)|=)[\s'\"`()]*?(?:\b\1\b)))"#;
        let compiled = Pattern::compile(p).unwrap_or_else(|e| unreachable!("{e}"));
        assert!(compiled.is_relaxed(), "942130's pattern has a linear relaxation");
        for (input, expected) in [
            ("1=1", true),
            ("a' = 'a", true),
            ("x<>y", true),
            ("x<>x", false),
            ("blue shoes", false),
            ("page=2", false),
            ("id like id", true),
        ] {
            let found = matches!(compiled.find(input.as_bytes(), true), Found::Yes(_));
            assert_eq!(found, expected, "{input}");
        }
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
