//! Where each value of a JSON document starts, by JSON-pointer path, so that an error found after
//! parsing (serde_json keeps no spans) can name its file:line:column — down to the character
//! inside a rule's expression string.

use std::collections::HashMap;

/// Positions of the values of one JSON text. Built only from text serde_json already accepted;
/// on anything unexpected it stops and keeps what it has (errors then point at the file).
#[derive(Debug)]
pub(crate) struct JsonIndex<'s> {
    text: &'s str,
    /// Byte offset of each value, by path (`/rules/0/match/expr/expression`).
    starts: HashMap<String, usize>,
}

impl<'s> JsonIndex<'s> {
    pub(crate) fn new(text: &'s str) -> Self {
        let mut scan = Scan { bytes: text.as_bytes(), pos: 0, starts: HashMap::new() };
        let mut path = String::new();
        let _ = scan.value(&mut path);
        Self { text, starts: scan.starts }
    }

    /// 1-based line and column (in characters) of the value at `path`.
    pub(crate) fn at(&self, path: &str) -> Option<(u32, u32)> {
        self.starts.get(path).map(|&offset| self.line_col(offset))
    }

    /// Where character `index` of the decoded string at `path` is written, escapes counted.
    pub(crate) fn in_string(&self, path: &str, index: usize) -> Option<(u32, u32)> {
        let start = *self.starts.get(path)?;
        let rest = self.text.get(start..)?;
        let mut chars = rest.char_indices();
        if chars.next().map(|(_, c)| c) != Some('"') {
            return None;
        }
        let mut decoded = 0usize;
        while let Some((offset, c)) = chars.next() {
            if decoded == index || c == '"' {
                return Some(self.line_col(start + offset));
            }
            if c == '\\' {
                match chars.next() {
                    Some((_, 'u')) => {
                        // \uXXXX, and a surrogate pair \uXXXX\uXXXX is still one character.
                        let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                        if u32::from_str_radix(&hex, 16).is_ok_and(|v| (0xD800..0xDC00).contains(&v)) {
                            chars.by_ref().take(6).for_each(drop);
                        }
                    }
                    Some(_) => {}
                    None => return None,
                }
            }
            decoded += 1;
        }
        None
    }

    fn line_col(&self, offset: usize) -> (u32, u32) {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |l| l.chars().count()) + 1;
        (u32::try_from(line).unwrap_or(u32::MAX), u32::try_from(column).unwrap_or(u32::MAX))
    }
}

struct Scan<'b> {
    bytes: &'b [u8],
    pos: usize,
    starts: HashMap<String, usize>,
}

impl Scan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn value(&mut self, path: &mut String) -> Option<()> {
        self.ws();
        self.starts.insert(path.clone(), self.pos);
        match self.peek()? {
            b'{' => {
                self.pos += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.pos += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.ws();
                    if self.peek()? != b':' {
                        return None;
                    }
                    self.pos += 1;
                    let len = path.len();
                    path.push('/');
                    path.push_str(&key);
                    self.value(path)?;
                    path.truncate(len);
                    self.ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b'}' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.pos += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.pos += 1;
                    return Some(());
                }
                let mut i = 0usize;
                loop {
                    let len = path.len();
                    path.push('/');
                    path.push_str(&i.to_string());
                    self.value(path)?;
                    path.truncate(len);
                    i += 1;
                    self.ws();
                    match self.peek()? {
                        b',' => self.pos += 1,
                        b']' => {
                            self.pos += 1;
                            return Some(());
                        }
                        _ => return None,
                    }
                }
            }
            b'"' => self.string().map(drop),
            _ => {
                while !matches!(self.peek(), None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')) {
                    self.pos += 1;
                }
                Some(())
            }
        }
    }

    /// A string, decoded well enough for object keys (which in our files are plain ASCII).
    fn string(&mut self) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.pos += 2,
                _ => self.pos += 1,
            }
        }
        let raw = self.bytes.get(start..self.pos)?;
        self.pos += 1;
        Some(String::from_utf8_lossy(raw).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_by_path() {
        let text = "{\n  \"rules\": [\n    {\"priority\": 10,\n     \"expr\": \"a\\u0026b == 'é'\"}\n  ]\n}";
        let idx = JsonIndex::new(text);
        assert_eq!(idx.at("/rules/0/priority"), Some((3, 18)));
        assert_eq!(idx.at("/rules/0/expr"), Some((4, 14)));
        // decoded "a&b == 'é'": character 1 (`&`) is the escape, character 9 (`é`) after it
        assert_eq!(idx.in_string("/rules/0/expr", 0), Some((4, 15)));
        assert_eq!(idx.in_string("/rules/0/expr", 1), Some((4, 16)));
        assert_eq!(idx.in_string("/rules/0/expr", 2), Some((4, 22)));
        assert_eq!(idx.in_string("/rules/0/expr", 8), Some((4, 28)));
        assert_eq!(idx.at("/nope"), None);
    }
}
