//! Request lines hyper refuses and nginx accepts: before hyper parses an HTTP/1 request head,
//! the few raw bytes in its request-target that `http::Uri` refuses are percent-encoded, so the
//! request reaches the pipeline (edge policy and WAF first) instead of a bare 400.
//!
//! Key decision: encode only what the parser in use refuses, only in an origin-form target (`/`
//! first), and only once the whole line is known to be a request line (`METHOD SP target SP
//! HTTP/1.0|1.1` then CR or LF). httparse takes every visible ASCII byte and UTF-8 in the
//! target; `http::Uri` 1.x then refuses `<`, `>` and `` ` `` in the path and `"`, `<` and `>` in
//! the query (everything after a `#` is dropped unchecked). nginx takes all of them as they are,
//! and CRS tests send them (`/?x=<script>...`). The encoded form is equivalent (`%3C` decodes to
//! `<`), and is what the workload receives. Nothing else is widened: the method and version are
//! checked here but never changed, headers are never touched, and a target that is still
//! malformed (no leading `/`, a control byte, bytes that are not UTF-8) reaches hyper as sent and
//! gets its 400, as from nginx (docs/WAF.md "Request lines").
//!
//! A line with nothing to encode costs one scan of its method and target; the bytes are never
//! copied. From the first byte to encode to the end of the line the bytes are held back, so that
//! a line that turns out not to be a request line (no `HTTP/1.x`, too long, a control byte) goes
//! on exactly as sent.

/// Bytes held back at most: past this the line goes on as sent (hyper answers 414 to a target
/// this long anyway: its limit is `u16::MAX - 1`).
const MAX_HELD: usize = 1 << 16;

/// Where the scan stands in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not in a request line (or done with it): bytes pass untouched.
    Off,
    /// Before the method: empty lines are skipped, as httparse does.
    Start,
    Method,
    /// Right after the method's space: an origin-form target starts with `/`.
    Target,
    Path,
    Query,
    /// After `#`: the `http` crate drops it without looking.
    Fragment,
    /// After the target's space, only while holding: `HTTP/1.0` or `HTTP/1.1`, then CR or LF;
    /// this many bytes of it so far.
    Version(u8),
}

/// What to hand on after [`RequestLine::feed`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Fed {
    /// The input as it is.
    Unchanged,
    /// The first `keep` bytes of the input, then `then` instead of the rest (empty while the
    /// rest is held back).
    Rewritten { keep: usize, then: Vec<u8> },
}

/// Scans the request line of each head it is armed for, encoding what has to be encoded.
#[derive(Debug)]
pub(super) struct RequestLine {
    state: State,
    /// The bytes held back, from the first one to encode: as sent...
    raw: Vec<u8>,
    /// ...and encoded.
    encoded: Vec<u8>,
}

impl RequestLine {
    /// Armed: the first bytes are the first head's.
    pub(super) fn new() -> Self {
        Self { state: State::Start, raw: Vec::new(), encoded: Vec::new() }
    }

    /// The next byte starts a head (a keep-alive connection's next request). Ignored in the
    /// middle of a line, which has to be finished first.
    pub(super) fn arm(&mut self) {
        if self.state == State::Off {
            self.state = State::Start;
        }
    }

    /// Takes the next bytes of the stream. Bytes it holds back come out of a later call (or
    /// [`RequestLine::end`]); bytes it hands on are never seen again.
    pub(super) fn feed(&mut self, input: &[u8]) -> Fed {
        if self.state == State::Off {
            return Fed::Unchanged;
        }
        // Where the held part of this input starts.
        let mut held_from = (!self.raw.is_empty()).then_some(0);
        for (i, &b) in input.iter().enumerate() {
            if let Some(out) = self.step(b) {
                let mut then = out;
                then.extend_from_slice(input.get(i.saturating_add(1)..).unwrap_or_default());
                return Fed::Rewritten { keep: held_from.unwrap_or(i), then };
            }
            if self.state == State::Off {
                return Fed::Unchanged;
            }
            if held_from.is_none() && !self.raw.is_empty() {
                held_from = Some(i);
            }
        }
        match held_from {
            Some(keep) => Fed::Rewritten { keep, then: Vec::new() },
            None => Fed::Unchanged,
        }
    }

    /// The stream ended: whatever is held back, as it was sent.
    pub(super) fn end(&mut self) -> Vec<u8> {
        self.state = State::Off;
        self.encoded.clear();
        std::mem::take(&mut self.raw)
    }

    /// One byte. `Some` when the line is decided and the held bytes (with this one) go on.
    fn step(&mut self, b: u8) -> Option<Vec<u8>> {
        let holding = !self.raw.is_empty();
        match self.state {
            State::Off => return None,
            State::Start if b == b'\r' || b == b'\n' => return None,
            State::Start | State::Method if is_tchar(b) => {
                self.state = State::Method;
                return None;
            }
            State::Method if b == b' ' => {
                self.state = State::Target;
                return None;
            }
            State::Start | State::Method => {
                self.state = State::Off;
                return None;
            }
            State::Target => {
                self.state = if b == b'/' { State::Path } else { State::Off };
                return None;
            }
            State::Version(n) => {
                if b == b'\r' || b == b'\n' {
                    let request_line = self.raw.ends_with(b" HTTP/1.1") || self.raw.ends_with(b" HTTP/1.0");
                    return Some(self.release(b, request_line));
                }
                if !b.is_ascii_graphic() || n >= 8 {
                    return Some(self.release(b, false));
                }
                self.hold(b, false);
                self.state = State::Version(n.saturating_add(1));
                return None;
            }
            State::Path | State::Query | State::Fragment => {}
        }
        // In the target.
        if b == b' ' {
            if holding {
                self.hold(b, false);
                self.state = State::Version(0);
            } else {
                self.state = State::Off;
            }
            return None;
        }
        if b < 0x21 || b == 0x7f {
            // httparse refuses the line: it goes on as sent.
            return if holding { Some(self.release(b, false)) } else { self.off() };
        }
        let encode = match (self.state, b) {
            (State::Path, b'?') => {
                self.state = State::Query;
                false
            }
            (State::Path | State::Query, b'#') => {
                self.state = State::Fragment;
                false
            }
            (State::Path, b'<' | b'>' | b'`') | (State::Query, b'"' | b'<' | b'>') => true,
            _ => false,
        };
        if encode || holding {
            if self.raw.len() >= MAX_HELD {
                return Some(self.release(b, false));
            }
            self.hold(b, encode);
        }
        None
    }

    fn off(&mut self) -> Option<Vec<u8>> {
        self.state = State::Off;
        None
    }

    fn hold(&mut self, b: u8, encode: bool) {
        self.raw.push(b);
        if encode {
            self.encoded.extend_from_slice(&[b'%', hex(b >> 4), hex(b & 0x0f)]);
        } else {
            self.encoded.push(b);
        }
    }

    /// The line is decided with `b`: the held bytes go on encoded, or as sent.
    fn release(&mut self, b: u8, encoded: bool) -> Vec<u8> {
        self.state = State::Off;
        let (mut out, other) = if encoded {
            (std::mem::take(&mut self.encoded), &mut self.raw)
        } else {
            (std::mem::take(&mut self.raw), &mut self.encoded)
        };
        other.clear();
        out.push(b);
        out
    }
}

/// A method character (RFC 9110 `tchar`), as httparse checks it.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn hex(n: u8) -> u8 {
    if n < 10 { b'0' + n } else { b'A' + n - 10 }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

    use super::*;

    /// Feeds `input` in pieces of `step` bytes and returns what comes out, with what is held at
    /// the end.
    fn run(line: &mut RequestLine, input: &[u8], step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(step) {
            match line.feed(piece) {
                Fed::Unchanged => out.extend_from_slice(piece),
                Fed::Rewritten { keep, then } => {
                    out.extend_from_slice(&piece[..keep]);
                    out.extend_from_slice(&then);
                }
            }
        }
        out.extend(line.end());
        out
    }

    fn rewrite(input: &str) -> String {
        String::from_utf8(run(&mut RequestLine::new(), input.as_bytes(), usize::MAX)).unwrap()
    }

    #[test]
    fn a_valid_line_goes_through_untouched_and_uncopied() {
        let head = b"GET /a/b?c=d&e={f}|\\^ HTTP/1.1\r\nHost: x\r\nX: <y>\r\n\r\n";
        let mut line = RequestLine::new();
        assert_eq!(line.feed(head), Fed::Unchanged);
        // Done after the target: later bytes are not even scanned.
        assert_eq!(line.state, State::Off);
        assert_eq!(line.feed(b"GET /<x> HTTP/1.1\r\n"), Fed::Unchanged, "not armed");
    }

    #[test]
    fn each_refused_byte_is_encoded_where_it_is_refused() {
        let cases = [
            ("GET /a<b>c HTTP/1.1\r\n", "GET /a%3Cb%3Ec HTTP/1.1\r\n"),
            ("GET /a`b HTTP/1.1\r\n", "GET /a%60b HTTP/1.1\r\n"),
            // `"` is fine in the path, refused in the query; `` ` `` the other way round.
            ("GET /\"p\"?q=\"`\" HTTP/1.1\r\n", "GET /\"p\"?q=%22`%22 HTTP/1.1\r\n"),
            (
                "GET /?x=<script>alert(1)</script> HTTP/1.1\r\n",
                "GET /?x=%3Cscript%3Ealert(1)%3C/script%3E HTTP/1.1\r\n",
            ),
            ("POST /p?a=1>0 HTTP/1.0\n", "POST /p?a=1%3E0 HTTP/1.0\n"),
            // A second `?` is part of the query; after `#` nothing is refused.
            ("GET /a?b?<c>#<d> HTTP/1.1\r\n", "GET /a?b?%3Cc%3E#<d> HTTP/1.1\r\n"),
            // Empty lines before the request line are skipped, as httparse does.
            ("\r\nGET /< HTTP/1.1\r\n", "\r\nGET /%3C HTTP/1.1\r\n"),
        ];
        for (sent, want) in cases {
            assert_eq!(rewrite(sent), want, "{sent:?}");
        }
    }

    /// The set is exactly what `http::Uri` refuses in an origin-form target: if the crate
    /// changes its mind, this fails.
    #[test]
    fn the_encoded_bytes_are_those_the_uri_parser_refuses() {
        for b in 0x21u8..=0x7e {
            if b == b'?' || b == b'#' {
                continue;
            }
            let c = char::from(b);
            for (target, in_query) in [(format!("/a{c}b"), false), (format!("/a?b{c}c"), true)] {
                let refused = target.parse::<hyper::Uri>().is_err();
                let sent = format!("GET {target} HTTP/1.1\r\n");
                let out = rewrite(&sent);
                assert_eq!(out != sent, refused, "byte {c:?} in the {}", if in_query { "query" } else { "path" });
                if refused {
                    let target = out.split(' ').nth(1).unwrap();
                    assert!(target.parse::<hyper::Uri>().is_ok(), "{target}");
                }
            }
        }
    }

    #[test]
    fn still_malformed_lines_go_on_as_sent() {
        for sent in [
            "GET ?x=<a> HTTP/1.1\r\n",          // no leading `/` (nginx: 400 too)
            "GET http://h/<a> HTTP/1.1\r\n",    // absolute form: left to hyper
            "GET /<a> HTTP/2.0\r\n",            // not HTTP/1.x
            "GET /<a> HTTP/1.1x\r\n",           // version too long
            "GET /<a> HTTP/1.1 \r\n",           // trailing space
            "GET /<a>\r\n",                     // no version
            "GET /<a\tb> HTTP/1.1\r\n",         // a control byte in the target
            "GET  /<a> HTTP/1.1\r\n",           // two spaces
            "G(T /<a> HTTP/1.1\r\n",            // not a method
            "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", // the HTTP/2 preface
        ] {
            assert_eq!(rewrite(sent), sent, "{sent:?}");
        }
        // A line longer than the hold limit.
        let long = format!("GET /<{} HTTP/1.1\r\n", "a".repeat(MAX_HELD));
        assert_eq!(rewrite(&long), long);
    }

    #[test]
    fn fragmented_input_gives_the_same_bytes() {
        let head = "GET /s?q=<b>\"x\" HTTP/1.1\r\nHost: x\r\n\r\nbody<>";
        let want = "GET /s?q=%3Cb%3E%22x%22 HTTP/1.1\r\nHost: x\r\n\r\nbody<>";
        for step in [1, 2, 3, 7, 16, usize::MAX] {
            let out = run(&mut RequestLine::new(), head.as_bytes(), step);
            assert_eq!(String::from_utf8(out).unwrap(), want, "pieces of {step}");
        }
    }

    #[test]
    fn held_bytes_come_out_when_the_line_is_decided() {
        let mut line = RequestLine::new();
        assert_eq!(line.feed(b"GET /a"), Fed::Unchanged);
        // From `<` on, bytes are held...
        assert_eq!(line.feed(b"b<c"), Fed::Rewritten { keep: 1, then: Vec::new() });
        assert_eq!(line.feed(b" HTTP/1.1"), Fed::Rewritten { keep: 0, then: Vec::new() });
        // ...until the end of the line; the rest of this input follows as it is.
        assert_eq!(line.feed(b"\r\nHost"), Fed::Rewritten { keep: 0, then: b"%3Cc HTTP/1.1\r\nHost".to_vec() });
        assert_eq!(line.feed(b": <x>"), Fed::Unchanged);
        // The stream ending while bytes are held: they go on as sent.
        let mut line = RequestLine::new();
        assert_eq!(line.feed(b"GET /<"), Fed::Rewritten { keep: 5, then: Vec::new() });
        assert_eq!(line.end(), b"<");
    }

    #[test]
    fn only_armed_heads_are_rewritten() {
        // Two pipelined requests in one input: the second is not at an armed start.
        let two = "GET /<1> HTTP/1.1\r\nHost: x\r\n\r\nGET /<2> HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut line = RequestLine::new();
        let out = String::from_utf8(run(&mut line, two.as_bytes(), usize::MAX)).unwrap();
        assert_eq!(out, "GET /%3C1%3E HTTP/1.1\r\nHost: x\r\n\r\nGET /<2> HTTP/1.1\r\nHost: x\r\n\r\n");
        // Armed again (the keep-alive connection's next head), the next line is.
        line.arm();
        let out = String::from_utf8(run(&mut line, b"GET /<3> HTTP/1.1\r\n", 1)).unwrap();
        assert_eq!(out, "GET /%3C3%3E HTTP/1.1\r\n");
        // Arming in the middle of a held line does not lose it.
        let mut line = RequestLine::new();
        assert_eq!(line.feed(b"GET /<"), Fed::Rewritten { keep: 5, then: Vec::new() });
        line.arm();
        assert_eq!(line.feed(b" HTTP/1.1\n"), Fed::Rewritten { keep: 0, then: b"%3C HTTP/1.1\n".to_vec() });
    }
}
