//! Operators (`@rx`, `@pm`, `@detectSQLi`, `@lt`, ...): compiled once at load. An operator a rule
//! file uses and this engine does not know is a load error, never a rule that silently passes.

use std::borrow::Cow;
use std::path::Path;

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

use crate::expand::{Lookup, Template};
use crate::libinjection;
use crate::pattern::{Found, Pattern};

/// A compiled operator.
#[derive(Debug)]
pub enum Operator {
    Rx(Pattern),
    /// `@pm` / `@pmFromFile`: any of the phrases, ASCII case-insensitive.
    Pm(AhoCorasick),
    DetectSqli,
    DetectXss,
    Eq(Template),
    Ge(Template),
    Gt(Template),
    Le(Template),
    Lt(Template),
    /// The input is a substring of the argument (ModSecurity's `@within`, substring semantics).
    Within(Template),
    BeginsWith(Template),
    EndsWith(Template),
    Contains(Template),
    Streq(Template),
    UnconditionalMatch,
}

/// The result of an operator on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    No,
    /// Matched, with what `capture` stores in `TX:0..9` (empty when not asked for).
    Yes(Vec<Vec<u8>>),
    /// The operator failed (backtracking budget); the rule does not match on this value.
    Error,
}

impl Operator {
    /// Compiles `@name argument`. `data_dir` is where `@pmFromFile` files are read from.
    pub fn compile(name: &str, argument: &str, data_dir: &Path) -> Result<Operator, String> {
        let template = || Template::parse(argument);
        Ok(match name.to_ascii_lowercase().as_str() {
            "rx" => Operator::Rx(Pattern::compile(argument)?),
            "pm" => Operator::Pm(phrases(argument.split_whitespace())?),
            "pmfromfile" | "pmf" => {
                let mut all = Vec::new();
                for file in argument.split_whitespace() {
                    let path = data_dir.join(file);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| format!("@pmFromFile: cannot read {}: {e}", path.display()))?;
                    all.extend(
                        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned),
                    );
                }
                Operator::Pm(phrases(all.iter().map(String::as_str))?)
            }
            "detectsqli" => Operator::DetectSqli,
            "detectxss" => Operator::DetectXss,
            "eq" => Operator::Eq(template()),
            "ge" => Operator::Ge(template()),
            "gt" => Operator::Gt(template()),
            "le" => Operator::Le(template()),
            "lt" => Operator::Lt(template()),
            "within" => Operator::Within(template()),
            "beginswith" => Operator::BeginsWith(template()),
            "endswith" => Operator::EndsWith(template()),
            "contains" => Operator::Contains(template()),
            "streq" => Operator::Streq(template()),
            "unconditionalmatch" => Operator::UnconditionalMatch,
            other => return Err(format!("operator `@{other}` is not supported by moat's WAF engine")),
        })
    }

    /// Whether the operator reads no input (`&` counts and numbers are cheap; patterns are not).
    pub fn is_pattern(&self) -> bool {
        matches!(self, Self::Rx(_) | Self::Pm(_) | Self::DetectSqli | Self::DetectXss)
    }

    /// Runs the operator on one (transformed) value.
    pub fn run(&self, input: &[u8], captures: bool, tx: &dyn Lookup) -> Outcome {
        let yes = |captured: &[u8]| Outcome::Yes(if captures { vec![captured.to_vec()] } else { Vec::new() });
        let bool_outcome = |b: bool| if b { yes(input) } else { Outcome::No };
        match self {
            Self::Rx(p) => match p.find(input, captures) {
                Found::No => Outcome::No,
                Found::Yes(c) => Outcome::Yes(c),
                Found::Error => Outcome::Error,
            },
            Self::Pm(ac) => match ac.find(input) {
                Some(m) => yes(input.get(m.start()..m.end()).unwrap_or_default()),
                None => Outcome::No,
            },
            Self::DetectSqli => match libinjection::detect_sqli(input) {
                Some(fingerprint) => yes(fingerprint.to_string().as_bytes()),
                None => Outcome::No,
            },
            Self::DetectXss => bool_outcome(libinjection::detect_xss(input)),
            Self::Eq(t) => bool_outcome(number(input) == number(&t.expand(tx))),
            Self::Ge(t) => bool_outcome(number(input) >= number(&t.expand(tx))),
            Self::Gt(t) => bool_outcome(number(input) > number(&t.expand(tx))),
            Self::Le(t) => bool_outcome(number(input) <= number(&t.expand(tx))),
            Self::Lt(t) => bool_outcome(number(input) < number(&t.expand(tx))),
            Self::Within(t) => {
                let haystack = t.expand(tx);
                bool_outcome(!input.is_empty() && contains(&haystack, input))
            }
            Self::BeginsWith(t) => bool_outcome(input.starts_with(&t.expand(tx))),
            Self::EndsWith(t) => bool_outcome(input.ends_with(&t.expand(tx))),
            Self::Contains(t) => bool_outcome(contains(input, &t.expand(tx))),
            Self::Streq(t) => bool_outcome(input == t.expand(tx).as_ref()),
            Self::UnconditionalMatch => yes(input),
        }
    }
}

fn phrases<'a>(list: impl Iterator<Item = &'a str>) -> Result<AhoCorasick, String> {
    let list: Vec<&str> = list.collect();
    if list.is_empty() {
        return Err("@pm needs at least one phrase".to_owned());
    }
    AhoCorasickBuilder::new()
        .ascii_case_insensitive(true)
        .match_kind(MatchKind::LeftmostFirst)
        .build(&list)
        .map_err(|e| format!("@pm phrases do not compile: {e}"))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// `atoi`: optional whitespace and sign, then digits; anything else reads as 0.
fn number(input: &[u8]) -> i64 {
    let text: Cow<'_, str> = String::from_utf8_lossy(input);
    let t = text.trim_start();
    let (negative, digits) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let end = digits.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = digits.get(..end).and_then(|d| d.parse().ok()).unwrap_or(0);
    if negative { -n } else { n }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Empty;
    impl Lookup for Empty {
        fn lookup(&self, _: &str, _: Option<&str>) -> Option<Cow<'_, [u8]>> {
            None
        }
    }

    fn run(name: &str, arg: &str, input: &str) -> bool {
        Operator::compile(name, arg, Path::new("/nonexistent"))
            .is_ok_and(|op| matches!(op.run(input.as_bytes(), false, &Empty), Outcome::Yes(_)))
    }

    #[test]
    fn operators() {
        assert!(run("pm", "select union", "x UNION y"));
        assert!(!run("pm", "select union", "unio"));
        assert!(run("lt", "1", "0"));
        assert!(run("lt", "1", "abc"));
        assert!(run("gt", "0", "12"));
        assert!(run("eq", "0", ""));
        assert!(run("within", "GET HEAD POST", "POST"));
        assert!(!run("within", "GET HEAD POST", "PUT"));
        assert!(run("endsWith", ".php", "/a.php"));
        assert!(run("beginsWith", "http://", "http://x"));
        assert!(Operator::compile("inspectFile", "x", Path::new("/")).is_err());
        assert!(Operator::compile("pmFromFile", "nope.data", Path::new("/nonexistent")).is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(number(b" 42x"), 42);
        assert_eq!(number(b"-3"), -3);
        assert_eq!(number(b"x"), 0);
    }
}
