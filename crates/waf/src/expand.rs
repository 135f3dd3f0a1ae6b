//! Macro expansion (`%{tx.allowed_methods}`, `%{MATCHED_VAR_NAME}`, `%{request_headers.host}`)
//! in operator arguments and `setvar` names and values. Parsed once at load, expanded per request.

use std::borrow::Cow;

/// Text with macros, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `%{collection.key}` or `%{VARIABLE}`: collection upper-cased, key as written.
    Macro {
        collection: String,
        key: Option<String>,
    },
}

/// What macros read from: the transaction.
pub trait Lookup {
    /// The value of `collection` (upper case) at `key`, or of the variable when `key` is `None`.
    fn lookup(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>>;
}

impl Template {
    pub fn parse(text: &str) -> Template {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("%{") {
            let (before, after) = rest.split_at(start);
            let Some(end) = after.find('}') else { break };
            let inner = after.get(2..end).unwrap_or_default();
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_owned()));
            }
            let (collection, key) = match inner.split_once(['.', ':']) {
                Some((c, k)) => (c.to_ascii_uppercase(), Some(k.to_owned())),
                None => (inner.to_ascii_uppercase(), None),
            };
            pieces.push(Piece::Macro { collection, key });
            rest = after.get(end + 1..).unwrap_or_default();
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Template { pieces }
    }

    /// The text when it holds no macro.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Expands the macros; an unknown one expands to nothing, as in ModSecurity.
    pub fn expand<'a>(&'a self, from: &dyn Lookup) -> Cow<'a, [u8]> {
        if let Some(text) = self.literal() {
            return Cow::Borrowed(text.as_bytes());
        }
        let mut out = Vec::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Macro { collection, key } => {
                    if let Some(v) = from.lookup(collection, key.as_deref()) {
                        out.extend_from_slice(&v);
                    }
                }
            }
        }
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Lookup for Fixed {
        fn lookup(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>> {
            match (collection, key) {
                ("TX", Some("allowed_methods")) => Some(Cow::Borrowed(b"GET POST")),
                ("MATCHED_VAR_NAME", None) => Some(Cow::Borrowed(b"ARGS:a")),
                _ => None,
            }
        }
    }

    #[test]
    fn expands() {
        assert_eq!(Template::parse("x %{tx.allowed_methods} y").expand(&Fixed).as_ref(), b"x GET POST y");
        assert_eq!(Template::parse("tx.c_%{MATCHED_VAR_NAME}").expand(&Fixed).as_ref(), b"tx.c_ARGS:a");
        assert_eq!(Template::parse("%{tx.unknown}!").expand(&Fixed).as_ref(), b"!");
        assert_eq!(Template::parse("plain").literal(), Some("plain"));
        assert_eq!(Template::parse("50%{").literal(), Some("50%{"));
    }
}
