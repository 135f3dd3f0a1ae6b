//! Strict parsing of the JOSE header and the claims: JSON objects only, no duplicate member
//! names (J21), and every member the verifier reads decoded into a small value type so that a
//! wrong type names the claim instead of failing the whole document.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Most members accepted in the header or the claims object.
const MAX_MEMBERS: usize = 64;
/// Deepest nesting of arrays and objects (the top-level object counts as 1).
const MAX_DEPTH: usize = 16;
/// Most values in an `aud` array.
const MAX_AUDIENCES: usize = 32;
/// Latest accepted NumericDate: 9999-12-31T23:59:59Z.
pub(crate) const MAX_NUMERIC_DATE: u64 = 253_402_300_799;

/// A member value, reduced to what the verifier can use.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    Str(Cow<'a, str>),
    /// A non-negative JSON integer.
    Int(u64),
    Bool(bool),
    /// An array holding only strings (at most `MAX_AUDIENCES`).
    Strs(Vec<Cow<'a, str>>),
    /// Anything else: null, a float, a negative number, an object, a mixed or long array.
    Other,
}

impl<'a> Value<'a> {
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A NumericDate: an integer between 0 and year 9999 (J11: no floats, strings, negatives).
    pub(crate) fn as_date(&self) -> Option<u64> {
        match self {
            Self::Int(n) if *n <= MAX_NUMERIC_DATE => Some(*n),
            _ => None,
        }
    }

    /// `email_verified`: a boolean; Google has also sent the strings `"true"`/`"false"`.
    pub(crate) fn as_bool(&self) -> Option<bool> {
        match self {
            Self::Bool(b) => Some(*b),
            Self::Str(s) if s == "true" => Some(true),
            Self::Str(s) if s == "false" => Some(false),
            _ => None,
        }
    }

    /// `aud`: a string or an array of strings.
    pub(crate) fn into_strs(self) -> Option<Vec<Cow<'a, str>>> {
        match self {
            Self::Str(s) => Some(vec![s]),
            Self::Strs(v) => Some(v),
            _ => None,
        }
    }
}

#[derive(Default)]
pub(crate) struct Header<'a> {
    pub(crate) alg: Option<Value<'a>>,
    pub(crate) kid: Option<Value<'a>>,
    pub(crate) crit: bool,
    /// `cty`, `enc` or `zip`: a nested, encrypted or compressed token.
    pub(crate) nested: bool,
}

#[derive(Default)]
pub(crate) struct Claims<'a> {
    pub(crate) iss: Option<Value<'a>>,
    pub(crate) sub: Option<Value<'a>>,
    pub(crate) aud: Option<Value<'a>>,
    pub(crate) exp: Option<Value<'a>>,
    pub(crate) nbf: Option<Value<'a>>,
    pub(crate) iat: Option<Value<'a>>,
    pub(crate) email: Option<Value<'a>>,
    pub(crate) email_verified: Option<Value<'a>>,
    pub(crate) hd: Option<Value<'a>>,
    pub(crate) azp: Option<Value<'a>>,
}

/// Parses the header; `None` when it is not one JSON object with unique member names.
pub(crate) fn header(bytes: &[u8]) -> Option<Header<'_>> {
    parse_object(bytes)
}

/// Parses the claims; `None` when they are not one JSON object with unique member names.
pub(crate) fn claims(bytes: &[u8]) -> Option<Claims<'_>> {
    parse_object(bytes)
}

fn parse_object<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Option<T> {
    // serde_json skips unknown members without a depth limit: bound nesting first (J21).
    if !depth_within(bytes, MAX_DEPTH) {
        return None;
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = T::deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// Whether `bytes`, read as JSON, nests arrays and objects at most `max` deep. Only brackets
/// outside strings count; malformed input is left for the parser to refuse.
fn depth_within(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return false;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    true
}

/// Walks an object's members, refusing duplicate names and overlong objects, and hands each
/// member to `member`.
fn visit_object<'de, A, T>(
    mut map: A,
    out: &mut T,
    mut member: impl FnMut(&str, &mut A, &mut T) -> Result<(), A::Error>,
) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
{
    let mut seen: Vec<Key<'de>> = Vec::new();
    while let Some(k) = map.next_key::<Key<'de>>()? {
        if seen.len() >= MAX_MEMBERS {
            return Err(de::Error::custom("too many members"));
        }
        if seen.iter().any(|s| s.0 == k.0) {
            return Err(de::Error::custom("duplicate member"));
        }
        member(&k.0, &mut map, out)?;
        seen.push(k);
    }
    Ok(())
}

struct ObjectVisitor<T>(std::marker::PhantomData<T>);

impl<'de> Deserialize<'de> for Header<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor::<Self>(std::marker::PhantomData))
    }
}

impl<'de> Visitor<'de> for ObjectVisitor<Header<'de>> {
    type Value = Header<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut h = Header::default();
        visit_object(map, &mut h, |name, map, h| {
            match name {
                "alg" => h.alg = Some(map.next_value()?),
                "kid" => h.kid = Some(map.next_value()?),
                "crit" => {
                    h.crit = true;
                    map.next_value::<IgnoredAny>()?;
                }
                "cty" | "enc" | "zip" => {
                    h.nested = true;
                    map.next_value::<IgnoredAny>()?;
                }
                // `jku`, `x5u`, `jwk`, `x5c`, `typ` and the rest are never used (J7).
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(())
        })?;
        Ok(h)
    }
}

impl<'de> Deserialize<'de> for Claims<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ObjectVisitor::<Self>(std::marker::PhantomData))
    }
}

impl<'de> Visitor<'de> for ObjectVisitor<Claims<'de>> {
    type Value = Claims<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut c = Claims::default();
        visit_object(map, &mut c, |name, map, c| {
            let slot = match name {
                "iss" => &mut c.iss,
                "sub" => &mut c.sub,
                "aud" => &mut c.aud,
                "exp" => &mut c.exp,
                "nbf" => &mut c.nbf,
                "iat" => &mut c.iat,
                "email" => &mut c.email,
                "email_verified" => &mut c.email_verified,
                "hd" => &mut c.hd,
                "azp" => &mut c.azp,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    return Ok(());
                }
            };
            *slot = Some(map.next_value()?);
            Ok(())
        })?;
        Ok(c)
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(u64::try_from(v).map_or(Value::Other, Value::Int))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Other)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value<'de>, A::Error> {
        let mut strs = Vec::new();
        let mut only_strings = true;
        // Elements go through this visitor again, so nesting depth stays bounded by
        // serde_json's recursion limit (J21 deeply nested arrays).
        while let Some(v) = seq.next_element::<Value<'de>>()? {
            match v {
                Value::Str(s) if only_strings && strs.len() < MAX_AUDIENCES => strs.push(s),
                _ => only_strings = false,
            }
        }
        Ok(if only_strings { Value::Strs(strs) } else { Value::Other })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_only_and_no_duplicates() {
        assert!(header(br#"{"alg":"RS256","kid":"a"}"#).is_some());
        for bad in [
            &br#"{"alg":"RS256","alg":"none"}"#[..],
            br#"[]"#,
            br#""x""#,
            br#"{"alg":"RS256"} {}"#,
            br#"{"alg":"RS256","#,
            b"\xef\xbb\xbf{}",
            br#"{"a":1,"a":2}"#,
            br#"{"a\u0062":1,"ab":2}"#,
        ] {
            assert!(header(bad).is_none(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(claims(br#"{"aud":"a","aud":"b"}"#).is_none());
        assert!(claims(br#"{"exp":1,"exp":1}"#).is_none());
        assert!(claims(br#"{"x":{"y":1},"x2":{"y":2,"y":3}}"#).is_some(), "nested objects are not checked");
        let deep = format!("{{\"x\":{}1{}}}", "[".repeat(5000), "]".repeat(5000));
        assert!(claims(deep.as_bytes()).is_none());
        assert!(claims(format!("{{\"x\":{}1{}}}", "[".repeat(15), "]".repeat(15)).as_bytes()).is_some());
        assert!(claims(format!("{{\"x\":{}1{}}}", "[".repeat(16), "]".repeat(16)).as_bytes()).is_none());
        assert!(
            claims(br#"{"x":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"["}"#).is_some(),
            "brackets in strings"
        );
        let many: String = (0..100).map(|i| format!("\"m{i}\":1")).collect::<Vec<_>>().join(",");
        assert!(claims(format!("{{{many}}}").as_bytes()).is_none());
    }

    #[test]
    fn value_kinds() {
        let c = claims(br#"{"exp":1e3,"iat":-1,"nbf":"5","aud":["a",1],"email_verified":"true","sub":null}"#);
        let c = c.unwrap_or_default();
        assert_eq!(c.exp.and_then(|v| v.as_date()), None);
        assert_eq!(c.iat.and_then(|v| v.as_date()), None);
        assert_eq!(c.nbf.and_then(|v| v.as_date()), None);
        assert_eq!(c.aud.and_then(|v| v.into_strs()), None);
        assert_eq!(c.email_verified.and_then(|v| v.as_bool()), Some(true));
        assert_eq!(c.sub, Some(Value::Other));
    }
}
