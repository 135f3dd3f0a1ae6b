//! The Cloud Armor string functions, as plain Rust over `&str`.
//!
//! The reference is Google's Go implementation in `cel-expr/cloud-armor-rules`
//! (`pkg/cloudarmor/cloudarmor.go`), whose comments name where the production (C++) service is
//! more lenient; where the two differ we follow production, and say so here and in docs/EDGE.md.
//! Decoded bytes that are not UTF-8 are replaced by U+FFFD: a CEL string is text, and no string
//! literal in a rule can name a lone byte anyway.

use std::net::IpAddr;

use ipnet::IpNet;

/// `inIpRange(ip, range)`: whether the address is inside the CIDR range. An IPv4 address written
/// as IPv4-mapped IPv6 (`::ffff:1.2.3.4`) is compared as IPv4, as Go's `IPNet.Contains` does.
/// (The overload parses a literal range once, at load; this is the whole function, for tests.)
#[cfg(test)]
pub(crate) fn in_ip_range(ip: &str, range: &str) -> Result<bool, String> {
    let net = parse_range(range)?;
    let addr = parse_ip(ip)?;
    Ok(net_contains(&net, addr))
}

pub(crate) fn parse_ip(ip: &str) -> Result<IpAddr, String> {
    ip.parse::<IpAddr>().map(|a| a.to_canonical()).map_err(|_| format!("invalid IP address: `{ip}`"))
}

/// A CIDR range as Go's `net.ParseCIDR` takes it: the `/len` is required, host bits are allowed.
pub(crate) fn parse_range(range: &str) -> Result<IpNet, String> {
    range.parse::<IpNet>().map_err(|_| format!("invalid IP range: `{range}` (write a CIDR such as `10.0.0.0/8`)"))
}

pub(crate) fn net_contains(net: &IpNet, addr: IpAddr) -> bool {
    net.contains(&addr.to_canonical())
}

/// `lower()`: ASCII letters only; everything else is left alone.
pub(crate) fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// `upper()`: ASCII letters only.
pub(crate) fn upper(s: &str) -> String {
    s.to_ascii_uppercase()
}

/// `base64Decode()`: the standard alphabet, padded, else unpadded (Go tries `StdEncoding` then
/// `RawStdEncoding`). Production also reads the URL-safe `-` and `_` as `+` and `/`, so we do
/// too. Line breaks are skipped, as Go does; anything else outside the alphabet is an error.
pub(crate) fn base64_decode(s: &str) -> Result<String, String> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    let mut data_chars = 0usize;
    let mut padding = 0usize;
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'\r' | b'\n' => continue,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err(format!("illegal base64 data: byte `{}`", b.escape_ascii())),
        };
        if padding > 0 {
            return Err("illegal base64 data: data after padding".to_owned());
        }
        data_chars += 1;
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    let rem = data_chars % 4;
    if rem == 1 {
        return Err("illegal base64 data: truncated input".to_owned());
    }
    // Padded input must be padded exactly; unpadded input (Go's second try) has none.
    if padding > 0 && (rem == 0 || padding != 4 - rem) {
        return Err("illegal base64 data: wrong padding".to_owned());
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `urlDecode()`: `%XX` and `+` (a space). A `%` that does not start a valid escape is kept as
/// it is: production is lenient here, where Go's `url.QueryUnescape` fails.
pub(crate) fn url_decode(s: &str) -> String {
    decode_percent(s, false)
}

/// `urlDecodeUni()`: as `urlDecode()`, plus the IIS `%uXXXX` form.
pub(crate) fn url_decode_uni(s: &str) -> String {
    decode_percent(s, true)
}

fn decode_percent(s: &str, uni: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        match c {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                if uni
                    && matches!(bytes.get(i + 1), Some(b'u' | b'U'))
                    && let Some(ch) = hex_at(bytes, i + 2, 4).and_then(char::from_u32)
                {
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    i += 6;
                } else if let Some(v) = hex_at(bytes, i + 1, 2) {
                    out.push(v as u8);
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_at(bytes: &[u8], start: usize, len: usize) -> Option<u32> {
    let digits = bytes.get(start..start + len)?;
    digits.iter().try_fold(0u32, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

/// `utf8ToUnicode()`: every non-ASCII code point becomes `%uXXXX` (lower-case hex, four digits,
/// more above U+FFFF), ASCII is kept.
pub(crate) fn utf8_to_unicode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        if ch.is_ascii() {
            out.push(ch);
        } else {
            out.push_str(&format!("%u{:04x}", u32::from(ch)));
        }
    }
    out
}

/// `int(string)`: a base-10 integer, as Go's `strconv.ParseInt(s, 10, 64)`.
pub(crate) fn parse_int(s: &str) -> Result<i64, String> {
    s.parse::<i64>().map_err(|_| format!("cannot convert `{s}` to int"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_ip_range_follows_go() {
        assert_eq!(in_ip_range("192.168.0.1", "192.168.0.0/16"), Ok(true));
        assert_eq!(in_ip_range("192.167.1.1", "192.168.0.0/16"), Ok(false));
        assert_eq!(in_ip_range("::ffff:10.1.2.3", "10.0.0.0/8"), Ok(true));
        assert_eq!(in_ip_range("2001:db8::1", "2001:db8::/32"), Ok(true));
        assert_eq!(in_ip_range("10.1.2.3", "2001:db8::/32"), Ok(false));
        // host bits set are fine, as in net.ParseCIDR
        assert_eq!(in_ip_range("10.1.2.3", "10.1.2.200/24"), Ok(true));
        assert!(in_ip_range("nope", "10.0.0.0/8").is_err());
        assert!(in_ip_range("10.0.0.1", "10.0.0.1").is_err(), "a range needs its /len");
    }

    #[test]
    fn case_mapping_is_ascii_only() {
        assert_eq!(lower("GET Ä"), "get Ä");
        assert_eq!(upper("get ä"), "GET ä");
    }

    #[test]
    fn base64_decode_std_raw_and_url_safe() {
        assert_eq!(base64_decode("YWJj").as_deref(), Ok("abc"));
        assert_eq!(base64_decode("YWI=").as_deref(), Ok("ab"));
        assert_eq!(base64_decode("YWI").as_deref(), Ok("ab"), "unpadded is Go's second try");
        assert_eq!(base64_decode("Pz8-").as_deref(), base64_decode("Pz8+").as_deref());
        assert_eq!(base64_decode("Pz8_").as_deref(), Ok("???"));
        assert_eq!(base64_decode("/w==").as_deref(), Ok("\u{fffd}"), "a byte that is not UTF-8");
        assert_eq!(base64_decode("YW\nJj").as_deref(), Ok("abc"));
        assert!(base64_decode("YWJ*").is_err());
        assert!(base64_decode("Y").is_err());
        assert!(base64_decode("YWI==").is_err());
        assert!(base64_decode("YW=J").is_err());
    }

    #[test]
    fn url_decoding() {
        assert_eq!(url_decode("value=Url+Encoded%21"), "value=Url Encoded!");
        assert_eq!(url_decode("100%"), "100%", "a bad escape is kept, as production does");
        assert_eq!(url_decode("%zz%4"), "%zz%4");
        assert_eq!(url_decode("%C3%A9"), "é");
        assert_eq!(url_decode("%u0041"), "%u0041", "only urlDecodeUni reads %u");
        assert_eq!(url_decode_uni("value=Unicode%20Url%u0020Encoded%u0021"), "value=Unicode Url Encoded!");
        assert_eq!(url_decode_uni("%U00e9+x"), "é x");
        assert_eq!(url_decode_uni("%ud800"), "%ud800", "a lone surrogate is no code point");
        assert_eq!(url_decode_uni("%u00"), "%u00");
    }

    #[test]
    fn utf8_to_unicode_escapes_non_ascii() {
        // The case from Google's cloudarmor_test.go ("query decode utf8 to unicode success").
        assert_eq!(
            utf8_to_unicode("Ā ā Ă ă Ѐ Ё Ā\\nā a\\x83t"),
            "%u0100 %u0101 %u0102 %u0103 %u0400 %u0401 %u0100\\n%u0101 a\\x83t"
        );
        assert_eq!(utf8_to_unicode("😀"), "%u1f600");
        assert_eq!(utf8_to_unicode("plain"), "plain");
    }

    #[test]
    fn int_parsing() {
        assert_eq!(parse_int("123"), Ok(123));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert!(parse_int("1.5").is_err());
        assert!(parse_int("").is_err());
    }
}
