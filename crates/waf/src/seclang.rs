//! Reading SecLang rule files: directives (`SecRule`, `SecAction`, `SecMarker`, ...) with their
//! arguments and actions, as text. Compiling them into rules is `rule.rs`'s job.
//!
//! The quoting follows Apache's config reader, which ModSecurity's rule files are written for: a
//! line ending in `\` continues on the next line; an argument in double quotes may contain `\"`
//! (a quote) and every other backslash is kept as written, so regexes such as `[\n\r]` reach the
//! regex compiler untouched.

use std::fmt;

/// Where a directive starts: file and 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// One directive with its unquoted arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    pub args: Vec<String>,
    pub location: Location,
}

/// A syntax error in a rule file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
}

/// Splits a rule file into directives. Comments (`#` at the start of a logical line) and blank
/// lines are dropped.
pub fn parse_file(file: &str, text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let mut directives = Vec::new();
    let mut logical = String::new();
    let mut start = 0;
    for (i, line) in text.lines().enumerate() {
        if logical.is_empty() {
            start = i + 1;
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        match line.strip_suffix('\\') {
            Some(head) => {
                logical.push_str(head);
                continue;
            }
            None => logical.push_str(line),
        }
        let text = std::mem::take(&mut logical);
        let location = Location { file: file.to_owned(), line: start };
        if let Some(d) = directive(&text, location)? {
            directives.push(d);
        }
    }
    if !logical.is_empty() {
        let location = Location { file: file.to_owned(), line: start };
        if let Some(d) = directive(&logical, location)? {
            directives.push(d);
        }
    }
    Ok(directives)
}

fn directive(text: &str, location: Location) -> Result<Option<Directive>, SyntaxError> {
    let trimmed = text.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut words = words(trimmed).map_err(|message| SyntaxError { location: location.clone(), message })?;
    if words.is_empty() {
        return Ok(None);
    }
    let name = words.remove(0);
    Ok(Some(Directive { name, args: words, location }))
}

/// Apache-style words: whitespace-separated, `"..."` or `'...'` quoted with `\<quote>` as the
/// only escape.
fn words(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else { break };
        let mut word = String::new();
        if first == '"' || first == '\'' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                if c == '\\' && chars.peek() == Some(&first) {
                    word.push(first);
                    chars.next();
                } else if c == first {
                    closed = true;
                    break;
                } else {
                    word.push(c);
                }
            }
            if !closed {
                return Err(format!("unterminated {first}-quoted argument"));
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
    Ok(out)
}

/// One action of a rule's action list: `name` or `name:value` (value unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub name: String,
    pub value: Option<String>,
}

/// Splits `id:1,phase:2,msg:'a, b',t:none` into actions. Values may be single-quoted (with `\'`
/// as an escape); commas inside quotes do not split.
pub fn parse_actions(text: &str) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| *c != ':' && *c != ',') {
            name.push(c);
        }
        let name = name.trim().to_owned();
        let value = if chars.next_if_eq(&':').is_some() {
            while chars.next_if(|c| *c == ' ').is_some() {}
            let mut value = String::new();
            if chars.next_if_eq(&'\'').is_some() {
                let mut closed = false;
                while let Some(c) = chars.next() {
                    if c == '\\' && chars.peek() == Some(&'\'') {
                        value.push('\'');
                        chars.next();
                    } else if c == '\'' {
                        closed = true;
                        break;
                    } else {
                        value.push(c);
                    }
                }
                if !closed {
                    return Err(format!("action `{name}`: unterminated quoted value"));
                }
            } else {
                while let Some(c) = chars.next_if(|c| *c != ',') {
                    value.push(c);
                }
                value = value.trim_end().to_owned();
            }
            Some(value)
        } else {
            None
        };
        if name.is_empty() {
            return Err("an action without a name".to_owned());
        }
        out.push(Action { name, value });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_quotes_and_comments() {
        let text =
            "# comment\nSecRule ARGS \"@rx [\\n\\r] \\\"q\\\"\" \\\n    \"id:1,\\\n    phase:2\"\n\nSecMarker END\n";
        let d = parse_file("f.conf", text).unwrap_or_default();
        assert_eq!(d.len(), 2);
        let first = d.first().cloned();
        let first = first.unwrap_or_else(|| Directive {
            name: String::new(),
            args: vec![],
            location: Location { file: String::new(), line: 0 },
        });
        assert_eq!(first.name, "SecRule");
        assert_eq!(first.args, vec!["ARGS", "@rx [\\n\\r] \"q\"", "id:1,    phase:2"]);
        assert_eq!(first.location.line, 2);
        assert_eq!(d.get(1).map(|d| d.location.line), Some(6));
    }

    #[test]
    fn actions_with_quotes() {
        let a = parse_actions("id:1,msg:'a, b \\'c\\'',t:none,setvar:'tx.x=+%{tx.y}', chain").unwrap_or_default();
        let names: Vec<_> = a.iter().map(|a| (a.name.as_str(), a.value.as_deref())).collect();
        assert_eq!(
            names,
            vec![
                ("id", Some("1")),
                ("msg", Some("a, b 'c'")),
                ("t", Some("none")),
                ("setvar", Some("tx.x=+%{tx.y}")),
                ("chain", None)
            ]
        );
        assert!(parse_actions("msg:'open").is_err());
    }

    #[test]
    fn unterminated_argument() {
        assert!(parse_file("f.conf", "SecRule ARGS \"@rx a").is_err());
    }
}
