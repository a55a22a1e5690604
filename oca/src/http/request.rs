//! Request-head parsing: httparse does the tokenising; this module applies our
//! limits and pulls out the handful of headers the server acts on.

use crate::plan::{self, Conditions, FieldLines};

/// Most headers a request may carry; beyond it 431.
pub const MAX_HEADERS: usize = 64;

/// The methods the server distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Options,
    /// Only the admin listener accepts it (for local agents); objects get 405.
    Post,
    Other,
}

/// Size limits applied while a head is still arriving.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_request_line: usize,
    pub max_header_bytes: usize,
}

/// A complete, parsed request head borrowing the connection's read buffer.
#[derive(Debug)]
pub struct RequestHead<'b> {
    pub method: Method,
    pub target: &'b [u8],
    /// HTTP/1.x minor version.
    pub minor: u8,
    /// Whether the client wants the connection kept open after this response.
    pub keep_alive: bool,
    pub conditions: Conditions<'b>,
    /// The request announces a body (Content-Length > 0 or Transfer-Encoding).
    /// We never read request bodies, so the connection cannot be reused after it.
    pub has_body: bool,
    /// Bytes of the buffer this head occupies.
    pub len: usize,
}

/// Why a head was refused; each maps to one status in `response::status_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed: 400 and close.
    BadRequest(&'static str),
    /// Request line over the limit: 414.
    UriTooLong,
    /// Head over the byte limit or too many headers: 431.
    HeadersTooLarge,
    /// Not HTTP/1.x: 505.
    VersionNotSupported,
}

/// Try to parse a head from the start of `buf`. `Ok(None)` means more bytes are
/// needed (and the limits allow waiting for them).
pub fn parse(buf: &[u8], limits: Limits) -> Result<Option<RequestHead<'_>>, HeadError> {
    // Check the request line first so an endless URI gets 414, not 431. Leading
    // empty lines are tolerated (RFC 9112 §2.2), as httparse does.
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = &buf[start..];
    match line.iter().position(|&b| b == b'\n') {
        Some(n) if n > limits.max_request_line => return Err(HeadError::UriTooLong),
        None if line.len() > limits.max_request_line => return Err(HeadError::UriTooLong),
        _ => {}
    }
    // A head must end within the byte limit, whatever it holds: HeadReader
    // refuses one that does not (431) as soon as that many bytes have come
    // without a blank line, so a head that arrives in one read must get the
    // same answer, not a 400 or 505 for what lies past the limit.
    let over_limit = match head_end(line) {
        Some(end) => end > limits.max_header_bytes,
        None => line.len() >= limits.max_header_bytes,
    };
    if over_limit {
        return Err(HeadError::HeadersTooLarge);
    }
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= limits.max_header_bytes {
                Err(HeadError::HeadersTooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::HeadersTooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::VersionNotSupported),
        Err(e) => return Err(HeadError::BadRequest(parse_reason(e))),
    };
    if len > limits.max_header_bytes {
        return Err(HeadError::HeadersTooLarge);
    }
    let minor = req.version.unwrap_or(1);
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "OPTIONS" => Method::Options,
        "POST" => Method::Post,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("").as_bytes();

    let mut conditions = Conditions::default();
    let mut keep_alive = minor >= 1;
    let mut hosts = 0;
    let mut has_body = false;
    let mut content_length: Option<&[u8]> = None;
    for h in req.headers.iter() {
        let v = trim(h.value);
        let name = h.name.as_bytes();
        // Dispatch on length first: most headers are rejected by one comparison.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => hosts += 1,
            5 if name.eq_ignore_ascii_case(b"range") => singleton(&mut conditions.range, v),
            8 if name.eq_ignore_ascii_case(b"if-range") => singleton(&mut conditions.if_range, v),
            8 if name.eq_ignore_ascii_case(b"if-match") => list(&mut conditions.if_match, v),
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in v.split(|&b| b == b',').map(trim) {
                    if token.eq_ignore_ascii_case(b"close") {
                        keep_alive = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") && minor == 0 {
                        keep_alive = true;
                    }
                }
            }
            13 if name.eq_ignore_ascii_case(b"if-none-match") => {
                list(&mut conditions.if_none_match, v)
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                if content_length.is_some_and(|prev| prev != v) {
                    return Err(HeadError::BadRequest("conflicting Content-Length headers"));
                }
                if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                    return Err(HeadError::BadRequest("invalid Content-Length"));
                }
                has_body |= v.iter().any(|&b| b != b'0');
                content_length = Some(v);
            }
            17 if name.eq_ignore_ascii_case(b"if-modified-since") => {
                singleton(&mut conditions.if_modified_since, v)
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => has_body = true,
            19 if name.eq_ignore_ascii_case(b"if-unmodified-since") => {
                singleton(&mut conditions.if_unmodified_since, v)
            }
            _ => {}
        }
    }
    if minor >= 1 && hosts == 0 {
        return Err(HeadError::BadRequest("missing Host header"));
    }
    if hosts > 1 {
        return Err(HeadError::BadRequest("more than one Host header"));
    }
    Ok(Some(RequestHead {
        method,
        target,
        minor,
        keep_alive: keep_alive && !has_body,
        conditions,
        has_body,
        len,
    }))
}

/// Length of the head at the start of `buf` up to and including the blank
/// line that ends it (the rule HeadReader waits for), if there is one.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        let rest = &buf[i + 1..];
        match (b, rest) {
            (b'\n', [b'\n', ..]) => Some(i + 2),
            (b'\n', [b'\r', b'\n', ..]) => Some(i + 3),
            _ => None,
        }
    })
}

/// A singleton field (Range, If-Range, the dates): a second line makes it
/// invalid, [`plan::REPEATED`] (RFC 9110 §5.3: the lines would join into a
/// list, which its grammar does not allow).
fn singleton<'b>(slot: &mut Option<&'b [u8]>, v: &'b [u8]) {
    *slot = Some(if slot.is_some() { plan::REPEATED } else { v });
}

/// A list field (If-Match, If-None-Match): every line belongs to the one list.
fn list<'b>(slot: &mut Option<FieldLines<'b>>, v: &'b [u8]) {
    match slot {
        Some(lines) => lines.push(v),
        None => *slot = Some(FieldLines::new(v)),
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_reason(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid request line",
        httparse::Error::Token => "invalid method",
        httparse::Error::TooManyHeaders => "too many headers",
        httparse::Error::Version => "unsupported HTTP version",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_request_line: 256,
        max_header_bytes: 512,
    };

    fn ok(raw: &str) -> RequestHead<'_> {
        parse(raw.as_bytes(), LIMITS).unwrap().expect("complete")
    }

    #[test]
    fn parses_a_get_with_conditions() {
        let raw = "GET /a/b.m4s HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\nIf-None-Match: \"e\"\r\nIf-Range: \"e\"\r\n\r\nGET /next";
        let h = ok(raw);
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.target, b"/a/b.m4s");
        assert!(h.keep_alive);
        assert_eq!(h.conditions.range, Some(&b"bytes=0-9"[..]));
        assert_eq!(h.conditions.if_none_match, Some(FieldLines::new(b"\"e\"")));
        assert_eq!(h.conditions.if_range, Some(&b"\"e\""[..]));
        assert_eq!(h.len, raw.len() - "GET /next".len());
    }

    #[test]
    fn repeated_conditions_join_lists_and_spoil_singletons() {
        let h = ok(concat!(
            "GET / HTTP/1.1\r\nHost: x\r\n",
            "If-None-Match: \"a\"\r\nRange: bytes=0-1\r\nIf-None-Match: \"b\", \"c\"\r\n",
            "If-Match: \"d\"\r\nIf-Modified-Since: x\r\nIf-Modified-Since: y\r\n",
            "If-Unmodified-Since: z\r\nIf-Range: \"e\"\r\n\r\n"
        ));
        let c = h.conditions;
        fn lines<'b>(f: Option<FieldLines<'b>>) -> Option<Vec<&'b [u8]>> {
            f?.lines().map(<[_]>::to_vec)
        }
        assert_eq!(
            lines(c.if_none_match),
            Some(vec![&b"\"a\""[..], &b"\"b\", \"c\""[..]])
        );
        assert_eq!(lines(c.if_match), Some(vec![&b"\"d\""[..]]));
        assert_eq!(c.if_modified_since, Some(plan::REPEATED));
        assert_eq!(c.range, Some(&b"bytes=0-1"[..]));
        assert_eq!(c.if_unmodified_since, Some(&b"z"[..]));
        assert_eq!(c.if_range, Some(&b"\"e\""[..]));
        let twice = ok("GET / HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\nrange: bytes=2-3\r\n\r\n");
        assert_eq!(twice.conditions.range, Some(plan::REPEATED));
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nConnection: foo, Close\r\n\r\n").keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        let with_body = ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n");
        assert!(with_body.has_body && !with_body.keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").has_body);
        assert!(ok("GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n").has_body);
    }

    #[test]
    fn partial_heads_wait_for_more() {
        for raw in [
            "",
            "GE",
            "GET / HTTP/1.1\r\n",
            "GET / HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert!(parse(raw.as_bytes(), LIMITS).unwrap().is_none(), "{raw:?}");
        }
    }

    #[test]
    fn limits_and_errors() {
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(300));
        assert_eq!(
            parse(long_uri.as_bytes(), LIMITS).unwrap_err(),
            HeadError::UriTooLong
        );
        let endless_uri = format!("GET /{}", "a".repeat(300));
        assert_eq!(
            parse(endless_uri.as_bytes(), LIMITS).unwrap_err(),
            HeadError::UriTooLong
        );
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(600)
        );
        assert_eq!(
            parse(big.as_bytes(), LIMITS).unwrap_err(),
            HeadError::HeadersTooLarge
        );
        let big_partial = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}", "b".repeat(600));
        assert_eq!(
            parse(big_partial.as_bytes(), LIMITS).unwrap_err(),
            HeadError::HeadersTooLarge
        );
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let many = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        let wide = Limits {
            max_request_line: 256,
            max_header_bytes: 4096,
        };
        assert_eq!(
            parse(many.as_bytes(), wide).unwrap_err(),
            HeadError::HeadersTooLarge
        );
        for garbage in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            b"G\0T / HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse(garbage, LIMITS), Err(HeadError::BadRequest(_))),
                "{garbage:?}"
            );
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n", LIMITS).unwrap_err(),
            HeadError::VersionNotSupported
        );
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\n\r\n", LIMITS),
            Err(HeadError::BadRequest("missing Host header"))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", LIMITS),
            Err(HeadError::BadRequest(_))
        ));
        assert!(matches!(
            parse(
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                LIMITS
            ),
            Err(HeadError::BadRequest(_))
        ));
        assert!(matches!(
            parse(
                b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
                LIMITS
            ),
            Err(HeadError::BadRequest(_))
        ));
    }

    /// Found by fuzzing (fuzz/regressions/http_request): a head over the
    /// limit with a bad header past it got 400 when it arrived in one read
    /// but 431 when it trickled in; both must be 431.
    #[test]
    fn a_head_over_the_limit_is_431_whatever_it_holds() {
        let tight = Limits {
            max_request_line: 256,
            max_header_bytes: 256,
        };
        let pad = "a".repeat(240);
        for raw in [
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nNo-Colon\r\n\r\n"),
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\nNo-Colon\r\n"),
            format!("GET / HTTP/2.0\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n"),
        ] {
            assert_eq!(
                parse(raw.as_bytes(), tight).unwrap_err(),
                HeadError::HeadersTooLarge,
                "{raw:?}"
            );
        }
        // Within the limit, the syntax error is what the client hears about.
        let small = "GET / HTTP/1.1\r\nHost: x\r\nNo-Colon\r\n\r\n";
        assert!(matches!(
            parse(small.as_bytes(), tight),
            Err(HeadError::BadRequest(_))
        ));
        // A head ending exactly at the limit is parsed.
        let exact = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
            "b".repeat(256 - 32)
        );
        assert_eq!(exact.len(), 256);
        assert!(parse(exact.as_bytes(), tight).unwrap().is_some());
    }

    #[test]
    fn methods() {
        assert_eq!(
            ok("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Head
        );
        assert_eq!(
            ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Options
        );
        assert_eq!(
            ok("DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Other
        );
        assert_eq!(
            ok("get / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Other
        );
    }
}
