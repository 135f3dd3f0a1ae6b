//! `t:` transformations against libmodsecurity's own expectations.
//!
//! Cases marked `[slt]` come from ModSecurity's transformation test data,
//! owasp-modsecurity/secrules-language-tests `transformations/<name>.json` (the submodule
//! libmodsecurity's unit tests run); where that JSON spells a NUL as `\\0` or `\\u0000` it is
//! written here as a real NUL byte. Cases marked `[src]` are derived by reading
//! owasp-modsecurity/ModSecurity `src/actions/transformations/<name>.cc` (and
//! `src/utils/base64.cc` for the base64 decoders), for transformations the JSON does not
//! cover or quirks it does not show.

use moat_waf::transform::Transform;
use proptest::prelude::*;

/// Applies `t`, checking the `None` = unchanged contract on the way.
fn run(t: Transform, input: &[u8]) -> Vec<u8> {
    match t.apply(input) {
        Some(out) => {
            assert_ne!(out, input, "{} returned Some for an unchanged value", t.name());
            out
        }
        None => input.to_vec(),
    }
}

fn check(t: Transform, cases: &[(&[u8], &[u8])]) {
    for &(input, expected) in cases {
        assert_eq!(
            run(t, input).escape_ascii().to_string(),
            expected.escape_ascii().to_string(),
            "t:{} on `{}`",
            t.name(),
            input.escape_ascii()
        );
    }
}

fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .filter_map(|p| std::str::from_utf8(p).ok())
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect()
}

#[test]
fn url_decode() {
    // [slt] urlDecode.json
    check(
        Transform::UrlDecode,
        &[
            (b"", b""),
            (b"Test\0Case", b"Test\0Case"),
            (b"Test+Case", b"Test Case"),
            (b"+%00%01%2a%41%7f%80%fF", b" \0\x01*A\x7f\x80\xff"),
            (b"%+", b"% "),
            (b"%%20", b"% "),
            (b"%0g%20", b"%0g "),
            (b"%g%20", b"%g "),
            (b"%0%1%2%a%b%f", b"%0%1%2%a%b%f"),
            (b"%", b"%"),
            (b"%0", b"%0"),
            (b"%gg", b"%gg"),
            // [src] no %u in plain urlDecode
            (b"%u0041", b"%u0041"),
        ],
    );
}

#[test]
fn url_decode_uni() {
    // [slt] urlDecodeUni.json
    check(
        Transform::UrlDecodeUni,
        &[
            (b"TestCase", b"TestCase"),
            (b"Test+Case", b"Test Case"),
            (b"+%00%41%ff", b" \0A\xff"),
            (b"+%u0000%u0041%u00ff", b" \0A\xff"),
            // Only the low byte of the code point survives.
            (b"+%u1100%u1141%u11ff", b" \0A\xff"),
            // Full-width ASCII folds to ASCII; the rest of FFxx keeps the low byte.
            (b"%uff01%uff21%uff5e", b"!A~"),
            (b"%uff00%uff7f%uff80%uffff", b"\0\x7f\x80\xff"),
            (b"%%u0020", b"% "),
            (b"%0%u0020", b"%0 "),
            (b"%u%u0020", b"%u "),
            (b"%u00%u0020", b"%u00 "),
            (b"%u000g%u0020", b"%u000g "),
            (b"%0g", b"%0g"),
        ],
    );
}

#[test]
fn html_entity_decode() {
    // [slt] htmlEntityDecode.json
    check(
        Transform::HtmlEntityDecode,
        &[
            (b"Test\0Case", b"Test\0Case"),
            (b"&#x0;&#X0;&#x20;&#X20;&#0;&#32;\0&#100;&quot;&amp;&lt;&gt;&nbsp;", b"\0\0  \0 \0d\"&<>\xa0"),
            (b"&#x0&#X0&#x20&#X20&#0&#32\0&#100&quot&amp&lt&gt&nbsp", b"\0\0  \0 \0d\"&<>\xa0"),
            (
                b"&#xg;&#Xg;&#xg0;&#X2g;&#a;\0&#a2;&#3a&#a00;&#1a0;&#10a;&foo;",
                b"&#xg;&#Xg;&#xg0;\x02g;&#a;\0&#a2;\x03a&#a00;\x01a0;\na;&foo;",
            ),
            (
                b"&#xg&#Xg&#xg0&#X2g&#a\0&#a2&#3a&#a00&#1a0&#10a&foo",
                b"&#xg&#Xg&#xg0\x02g&#a\0&#a2\x03a&#a00\x01a0\na&foo",
            ),
            // [src] names match by prefix (strncasecmp) and swallow the rest of the token;
            // numbers keep their low byte; only five names are known.
            (b"&ltest;x", b"<x"),
            (b"&QUOT;", b"\""),
            (b"&#x4141;&#321;", b"AA"),
            (b"&apos;&#;&", b"&apos;&#;&"),
        ],
    );
}

#[test]
fn js_decode() {
    // [slt] jsDecode.json
    check(
        Transform::JsDecode,
        &[
            (b"Test\0Case", b"Test\0Case"),
            (
                b"\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\x00\\xff\\u0021\\uff01",
                b"\x07\x08\x0c\n\r\t\x0b?'\"\0\nS\0\xff!!",
            ),
            (
                b"\\8\\9\\666\\u00ag\\u00ga\\u0zaa\\uz0aa\\xag\\xga\\0123\\u00a",
                b"8966u00agu00gau0zaauz0aaxagxga\n3u00a",
            ),
            (b"\\x", b"x"),
            (b"\\x\\x0\0", b"xx0\0"),
            (b"\\u\\u0\\u01\\u012", b"uu0u01u012"),
            (b"\\", b"\\"),
            (b"\\\\0", b"\\0"),
            // [src] `\U` and `\X` are not escapes in jsDecode.
            (b"\\U0041\\X41", b"U0041X41"),
        ],
    );
}

#[test]
fn css_decode() {
    // [slt] cssDecode.json
    check(
        Transform::CssDecode,
        &[
            (b"Test\0Case", b"Test\0Case"),
            (
                b"test\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\1234\\12345\\123456\\ff01\\ff5e\\\n\\0  string",
                b"test\n\x0b\x0fnrtv?'\"\0\x12#4EV!~\0 string",
            ),
            (b"test\\", b"test"),
            (b"\\1A\\1 A\\1234567\\123456 7\\1x\\1 x", b"\x1a\x01AV7V7\x01x\x01x"),
            // [src] five and six digits fold full width only behind leading zeros.
            (b"\\0ff21\\00ff21\\1ff21", b"AA!"),
        ],
    );
}

#[test]
fn utf8_to_unicode() {
    // [slt] utf8toUnicode.json (its inputs are UTF-8 text whose code points are these bytes)
    check(
        Transform::Utf8ToUnicode,
        &[
            (b"\xc3\x90\xc2\x80 \xc3\x90\xc2\x81", b"%u00d0%u0080 %u00d0%u0081"),
            (b"\xc3\x98\xc2\xa8 \xc3\x99\xc2\x80", b"%u00d8%u00a8 %u00d9%u0080"),
            (b"\xc3\xa2\xc2\x96\xc2\xa0", b"%u00e2%u0096%u00a0"),
            // [src] real multi-byte characters, and the quirks: NUL dropped, a broken lead
            // byte dropped, stray continuation bytes copied, overlong and surrogate forms
            // decoded and followed by the raw lead byte.
            (b"caf\xc3\xa9 \xe2\x82\xac", b"caf%u00e9 %u20ac"),
            (b"\xf0\x9f\x98\x80", b"%u1f600"),
            (b"a\0b", b"ab"),
            (b"a\xc3", b"a"),
            (b"\xe2\x82x", b"\x82x"),
            (b"\x80\xff", b"\x80\xff"),
            (b"\xc0\x80", b"%u0000\xc0"),
            (b"\xed\xa0\x80", b"%ud800\xed"),
            (b"plain ascii", b"plain ascii"),
        ],
    );
}

#[test]
fn nulls() {
    // [slt] removeNulls.json, replaceNulls.json
    check(
        Transform::RemoveNulls,
        &[
            (b"TestCase", b"TestCase"),
            (b"\0TestCase", b"TestCase"),
            (b"Test\0\0Case", b"TestCase"),
            (b"\0Test\0Case\0", b"TestCase"),
        ],
    );
    check(
        Transform::ReplaceNulls,
        &[
            (b"TestCase", b"TestCase"),
            (b"\0TestCase", b" TestCase"),
            (b"Test\0\0Case", b"Test  Case"),
            (b"\0Test\0Case\0", b" Test Case "),
        ],
    );
}

#[test]
fn cmd_line() {
    // [src] cmd_line.cc
    check(
        Transform::CmdLine,
        &[
            (b"cmd.exe /c \"dir\"", b"cmd.exe/c dir"),
            (b"W^h'o'a\"m\"i", b"whoami"),
            (b"C:\\WINDOWS\\system32", b"c:windowssystem32"),
            (b"echo;id,ls\t\n(x)", b"echo id ls(x)"),
            (b"a ^ b", b"a b"),
            (b"A\x0bB\x0c", b"a\x0bb\x0c"),
            (b"ls -la", b"ls -la"),
        ],
    );
}

#[test]
fn whitespace() {
    // [slt] compressWhitespace.json
    check(
        Transform::CompressWhitespace,
        &[
            (b"Test Case", b"Test Case"),
            (b"Test\0Case", b"Test\0Case"),
            (b"  Test  \t   Case  ", b" Test Case "),
            (
                b"This is a   test case with a tab \t, vtab \x0b, newline \n, return \r, formfeed \x0c, and a NUL\0 in it with a CRLF at the end.\r\n",
                b"This is a test case with a tab , vtab , newline , return , formfeed , and a NUL\0 in it with a CRLF at the end. ",
            ),
            // [src] isspace only: NBSP is not compressed.
            (b"a\xa0\xa0b", b"a\xa0\xa0b"),
        ],
    );
    // [src] remove_whitespace.cc: isspace and NBSP.
    check(Transform::RemoveWhitespace, &[(b" a\tb\nc\x0b\x0c\rd\xa0e ", b"abcde"), (b"abc", b"abc"), (b"\xa0", b"")]);
}

#[test]
fn normalise_path() {
    // [slt] normalisePath.json
    check(
        Transform::NormalisePath,
        &[
            (b"", b""),
            (b"/foo/bar/baz", b"/foo/bar/baz"),
            (b"/foo/bar\0/baz", b"/foo/bar\0/baz"),
            (b"x", b"x"),
            (b".", b""),
            (b"./", b""),
            (b"./..", b".."),
            (b"./../", b"../"),
            (b"..", b".."),
            (b"../.", b".."),
            (b".././", b"../"),
            (b"../..", b"../.."),
            (b"/dir/foo//bar", b"/dir/foo/bar"),
            (b"dir/foo//bar/", b"dir/foo/bar/"),
            (b"dir/../foo", b"foo"),
            (b"dir/../../foo", b"../foo"),
            (b"dir/./.././../../foo/bar", b"../../foo/bar"),
            (b"dir/./.././../../foo/bar/.", b"../../foo/bar"),
            (b"dir/./.././../../foo/bar/./", b"../../foo/bar/"),
            (b"dir/./.././../../foo/bar/..", b"../../foo"),
            (b"dir/./.././../../foo/bar/../", b"../../foo/"),
            (b"dir//.//..//.//..//..//foo//bar", b"../../foo/bar"),
            (b"dir//.//..//.//..//..//foo//bar//", b"../../foo/bar/"),
            (b"dir/subdir/subsubdir/subsubsubdir/../../..", b"dir"),
            (b"dir/./subdir/../subsubdir/../subsubsubdir/..", b"dir"),
            (b"/dir/./subdir/../subsubdir/../subsubsubdir/../", b"/dir/"),
            (b"/./.././../../../../../../../\0/../etc/./passwd", b"/etc/passwd"),
        ],
    );
}

#[test]
fn normalise_path_win() {
    // [slt] normalisePathWin.json
    check(
        Transform::NormalisePathWin,
        &[
            (b"", b""),
            (b"\\foo\\bar\\baz", b"/foo/bar/baz"),
            (b"\\foo\\bar\0\\baz", b"/foo/bar\0/baz"),
            (b".\\..\\", b"../"),
            (b"..\\", b"../"),
            (b"..\\..\\", b"../../"),
            (b"\\dir\\foo\\\\bar", b"/dir/foo/bar"),
            (b"dir\\..\\..\\foo", b"../foo"),
            (b"dir\\.\\..\\.\\..\\..\\foo\\bar\\..\\", b"../../foo/"),
            (b"dir\\\\.\\\\..\\\\.\\\\..\\\\..\\\\foo\\\\bar", b"../../foo/bar"),
            (b"dir\\\\.\\\\..\\\\.\\\\..\\\\..\\\\foo\\\\bar\\\\", b"../../foo/bar/"),
            (b"\\dir\\.\\subdir\\..\\subsubdir\\..\\subsubsubdir\\..\\", b"/dir/"),
            (b"\\.\\..\\.\\..\\..\\..\\..\\..\\..\\..\\\\0\\..\\etc\\.\\passwd", b"/etc/passwd"),
        ],
    );
}

#[test]
fn comments() {
    // [slt] replaceComments.json
    check(
        Transform::ReplaceComments,
        &[
            (b"Test\0Case", b"Test\0Case"),
            (b"/* TestCase */", b" "),
            (b"Before/* TestCase */After", b"Before After"),
            (b"Before /* TestCase */ After", b"Before   After"),
            (b"Before/* Test\r\nCase ", b"Before "),
            (b"Test\nCase */ After", b"Test\nCase */ After"),
        ],
    );
    // [slt] removeComments.json
    check(
        Transform::RemoveComments,
        &[
            (b"TestCase", b"TestCase"),
            (b"/* TestCase */", b""),
            (b"Before/* TestCase */After", b"BeforeAfter"),
            (b"Before TestCase */ After", b"Before TestCase */ After"),
            (b"/*Before/* Test\r\nCase ", b" "),
            (b"Before/* T*/ /* e */ /* s */ /* t */\r\nCase ", b"Before   \r\nCase "),
            (b"Before /* */ ops */ Test\nCase ", b"Before  ops */ Test\nCase "),
            (b"Test/*\nCase */ After", b"Test After"),
            (b"SELECT/**//**/UNION", b"SELECTUNION"),
            (b"foo<!-- comment 1 --><!-- comment 2 -->bar", b"foobar"),
            // [src] `--` and `#` end the value.
            (b"1 OR 1=1 -- x", b"1 OR 1=1 "),
            (b"a#b", b"a"),
        ],
    );
    // [src] remove_comments_char.cc
    check(
        Transform::RemoveCommentsChar,
        &[(b"/*x*/", b"x"), (b"<!--x-->", b"x"), (b"a--b#c", b"abc"), (b"a-->b", b"ab"), (b"a-b*c/d", b"a-b*c/d")],
    );
}

#[test]
fn sha1() {
    // [slt] sha1.json (expected raw digests, written here in hex)
    for (input, hex) in [
        (&b""[..], "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        (b"TestCase", "a70ce38389e318bd2be18a0111c6dc76bd2cd9ed"),
        (b"\0\x01\x02\x03\x04\x05\x06\x07\x08", "63bf60c7105a07a2b125bbf89e61abdabc6978c2"),
    ] {
        assert_eq!(run(Transform::Sha1, input), unhex(hex));
    }
}

#[test]
fn hex() {
    // [slt] hexEncode.json
    check(
        Transform::HexEncode,
        &[
            (b"", b""),
            (b"TestCase", b"5465737443617365"),
            (b"Test\0Case", b"546573740043617365"),
            // [src] lowercase digits
            (b"\xab\xff", b"abff"),
        ],
    );
    // [slt] hexDecode.json: no validation, `0z` goes through x2c's arithmetic to `#`.
    check(
        Transform::HexDecode,
        &[
            (b"", b""),
            (b"5465737443617365", b"TestCase"),
            (b"546573740043617365", b"Test\0Case"),
            (b"01234567890a0z01234567890a", b"\x01#Eg\x89\n#\x01#Eg\x89\n"),
            (b"01234567890az", b"\x01#Eg\x89\n"),
            (b"01234567890a0", b"\x01#Eg\x89\n"),
            (b"A", b""),
        ],
    );
}

#[test]
fn base64() {
    // [slt] base64Decode.json
    check(
        Transform::Base64Decode,
        &[
            (b"", b""),
            (b"VGVzdENhc2U=", b"TestCase"),
            (b"VGVzdENhc2Ux", b"TestCase1"),
            (b"VGVzdENhc2UxMg==", b"TestCase12"),
            (b"VGVzdABDYXNl", b"Test\0Case"),
            (b"VGVzdENhc2U=\0VGVzdENhc2U=", b"TestCase"),
            // [src] mbedtls is strict: one bad character empties the output; an incomplete
            // last group is dropped; line breaks are skipped.
            (b"VGVz!dA==", b""),
            (b"VGVzdA", b"Tes"),
            (b"VGVz\r\ndA==", b"Test"),
            (b"dGVzdA==dA==", b""),
        ],
    );
    // [slt] base64DecodeExt.json
    check(
        Transform::Base64DecodeExt,
        &[
            (b"", b""),
            (b"VGVzdENhc2U=", b"TestCase"),
            (b"VGVzdENhc2UxMg==", b"TestCase12"),
            (b"VGVzdABDYXNl", b"Test\0Case"),
            (b"P.HNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", b"<script>alert(1)</script>"),
            (b"dzBzV==YWxlcnQoMSk=", b""),
            (b"eyJwIjoieHh-IiwiYWxnIjoibm9uZSIsInR5cCI6IkpXVCJ9", b"{\"p\":\"xx~\",\"alg\":\"none\",\"typ\":\"JWT\"}"),
            // [src] a dangling final `9` (value 61, compared against '=') empties the output.
            (b"QUJDZ", b"ABC"),
            (b"QUJD9", b""),
        ],
    );
}

#[test]
fn escape_seq_decode() {
    // [slt] escapeSeqDecode.json
    check(
        Transform::EscapeSeqDecode,
        &[
            (b"TestCase", b"TestCase"),
            (b"\\a\\b\\f\\n\\r\\t\\v\\?\\'\\\"\\0\\12\\123\\x00\\xff", b"\x07\x08\x0c\n\r\t\x0b?'\"\0\nS\0\xff"),
            (b"\\8\\9\\666\\xag\\xga\\0123", b"89\xb6xagxga\n3"),
            (b"\\x", b"x"),
            (b"\\x\\x0", b"xx0"),
            (b"\\0", b"\0"),
            (b"\\01", b"\x01"),
            (b"\\012", b"\n"),
            (b"\\", b"\\"),
            // [src] `\X` is hex here
            (b"\\X41\\\\", b"A\\"),
        ],
    );
}

#[test]
fn length() {
    // [slt] length.json
    check(
        Transform::Length,
        &[(b"", b"0"), (b"0123456789abcdef", b"16"), (b"0123456789\tabcdef", b"17"), (b"Test\0Case", b"9")],
    );
}

#[test]
fn trim() {
    // [slt] trim.json
    check(
        Transform::Trim,
        &[
            (b"Test\0Case", b"Test\0Case"),
            (b"    TestCase", b"TestCase"),
            (b"TestCase    ", b"TestCase"),
            (b"    Test   Case    ", b"Test   Case"),
            (b" \t   Test \0 Case \t  \t   \r\n  ", b"Test \0 Case"),
        ],
    );
    // [slt] trimRight.json
    check(
        Transform::TrimRight,
        &[
            (b"    TestCase", b"    TestCase"),
            (b"TestCase    ", b"TestCase"),
            (b" \t   Test \0 Case \t  \t   \r\n  ", b" \t   Test \0 Case"),
        ],
    );
    // [src] trim_left.cc: isspace only, NBSP stays.
    check(
        Transform::TrimLeft,
        &[(b"  \t\nabc  ", b"abc  "), (b"abc ", b"abc "), (b"\x0b\x0cabc", b"abc"), (b"\xa0abc", b"\xa0abc")],
    );
}

#[test]
fn case() {
    // [src] lower_case.cc / upper_case.cc: ASCII only.
    check(Transform::Lowercase, &[(b"TestCase", b"testcase"), (b"ABC\xc0\xdf", b"abc\xc0\xdf"), (b"test", b"test")]);
    check(Transform::Uppercase, &[(b"TestCase", b"TESTCASE"), (b"abc\xe0", b"ABC\xe0"), (b"ABC", b"ABC")]);
}

#[test]
fn url_encode() {
    // [slt] urlEncode.json
    check(
        Transform::UrlEncode,
        &[
            (b"", b""),
            (b"TestCase", b"TestCase"),
            (b"Test Case", b"Test+Case"),
            (b"% ", b"%25+"),
            (b"%0g ", b"%250g+"),
            (b"\0\x7f\xff*+-._~", b"%00%7f%ff*%2b%2d%2e%5f%7e"),
        ],
    );
}

#[test]
fn names_round_trip() {
    for t in Transform::ALL {
        assert_eq!(Transform::from_name(t.name()), Some(t));
        assert_eq!(Transform::from_name(&t.name().to_ascii_uppercase()), Some(t));
    }
}

#[test]
fn name_lookup() {
    let cases = [
        ("urlDecodeUni", Some(Transform::UrlDecodeUni)),
        ("URLDECODE", Some(Transform::UrlDecode)),
        ("normalizePath", Some(Transform::NormalisePath)),
        ("normalizepathwin", Some(Transform::NormalisePathWin)),
        ("utf8toUnicode", Some(Transform::Utf8ToUnicode)),
        ("cmdline", Some(Transform::CmdLine)),
        ("none", None),
        ("md5", None),
        ("", None),
        ("lowercase ", None),
    ];
    for (name, expected) in cases {
        assert_eq!(Transform::from_name(name), expected, "{name}");
    }
}

/// Bytes that steer the decoders into their escape paths.
fn tricky_bytes() -> impl Strategy<Value = Vec<u8>> {
    let alphabet: &[u8] = b"%uUxX\\&#;/.*-<!>=+0379aAfFzZ \t\n\r\x0b\0\xa0\xc3\xa9\xe2\xf0\xf5\x80\xff";
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(prop::sample::select(alphabet.to_vec()), 0..200),
    ]
}

proptest! {
    #[test]
    fn apply_never_panics_and_keeps_its_contract(input in tricky_bytes()) {
        for t in Transform::ALL {
            if let Some(out) = t.apply(&input) {
                prop_assert_ne!(&out, &input, "{} returned Some for an unchanged value", t.name());
            }
        }
    }

    #[test]
    fn chains_of_two_never_panic(input in tricky_bytes(), a in 0..Transform::ALL.len(), b in 0..Transform::ALL.len()) {
        let (Some(&first), Some(&second)) = (Transform::ALL.get(a), Transform::ALL.get(b)) else {
            return Err(TestCaseError::fail("index out of range"));
        };
        let once = first.apply(&input).unwrap_or(input);
        let _ = second.apply(&once);
    }
}
