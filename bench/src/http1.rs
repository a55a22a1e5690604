//! HTTP/1.1 without IO: request heads, response head parsing (httparse), how a
//! body is delimited, and the check of a response against what was asked for.
//!
//! The connection code (conn.rs) only moves bytes; every decision about a
//! response (framing, expected status, body length, Content-Range) is made
//! here, where it can be tested with literal bytes.

use std::io::Write as _;

use crate::stats::ErrorKind;

/// Most headers a response head may carry (oca sends about a dozen).
const MAX_HEADERS: usize = 48;

/// An inclusive byte range `first..=last` of an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub first: u64,
    pub last: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.last - self.first + 1
    }
}

/// A request head; every mode writes its requests with [`write_request`].
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    pub method: &'a str,
    /// Already escaped, with any query.
    pub path: &'a str,
    pub authority: &'a str,
    pub range: Option<ByteRange>,
    pub headers: &'a [(&'a str, &'a str)],
    /// `Content-Length` to send: the body's length for a request with a body
    /// (POST and PUT always have one, if empty); `None` for none.
    pub body_len: Option<usize>,
}

impl<'a> RequestHead<'a> {
    pub fn get(path: &'a str, authority: &'a str) -> RequestHead<'a> {
        RequestHead {
            method: "GET",
            path,
            authority,
            range: None,
            headers: &[],
            body_len: None,
        }
    }
}

/// Writes request head `r` into `buf` (cleared first: the Vec is reused, and
/// nothing is allocated once it has grown to a head's size).
pub fn write_request(buf: &mut Vec<u8>, r: &RequestHead<'_>) {
    buf.clear();
    buf.extend_from_slice(r.method.as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(r.path.as_bytes());
    buf.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    buf.extend_from_slice(r.authority.as_bytes());
    buf.extend_from_slice(b"\r\nUser-Agent: oca-bench\r\n");
    // Writing to a Vec cannot fail.
    if let Some(range) = r.range {
        let _ = write!(buf, "Range: bytes={}-{}\r\n", range.first, range.last);
    }
    for (k, v) in r.headers {
        let _ = write!(buf, "{k}: {v}\r\n");
    }
    if let Some(n) = r.body_len {
        let _ = write!(buf, "Content-Length: {n}\r\n");
    }
    buf.extend_from_slice(b"\r\n");
}

/// The parts of a response head the client acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head, including the blank line; the body starts after.
    pub len: usize,
    pub content_length: Option<u64>,
    /// (first, last, complete length) from `Content-Range: bytes a-b/n`.
    pub content_range: Option<(u64, u64, u64)>,
    /// Whether a Content-Range header was present but unparseable.
    pub bad_content_range: bool,
    pub chunked: bool,
    /// The server will close the connection after this response.
    pub close: bool,
    /// `Retry-After` in seconds (the delta form; a date is ignored).
    pub retry_after: Option<u64>,
}

/// Parses a response head from the start of `buf`: `Ok(None)` if more bytes
/// are needed, `Err` if it can never be a valid head.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::Protocol),
    };
    let mut head = Head {
        status: resp.code.unwrap_or(0),
        len,
        content_length: None,
        content_range: None,
        bad_content_range: false,
        chunked: false,
        // HTTP/1.0 closes unless it says keep-alive.
        close: resp.version == Some(0),
        retry_after: None,
    };
    for h in resp.headers.iter() {
        let v = h.value;
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse::<u64>().ok())
                .ok_or(ErrorKind::Protocol)?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(ErrorKind::Protocol);
            }
            head.content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("content-range") {
            head.content_range = parse_content_range(v);
            head.bad_content_range = head.content_range.is_none();
        } else if h.name.eq_ignore_ascii_case("retry-after") {
            head.retry_after = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.chunked = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for token in v.split(|&b| b == b',') {
                let t = token.trim_ascii();
                if t.eq_ignore_ascii_case(b"close") {
                    head.close = true;
                } else if t.eq_ignore_ascii_case(b"keep-alive") && resp.version == Some(0) {
                    head.close = false;
                }
            }
        }
    }
    Ok(Some(head))
}

/// How a response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: 204, 304, or the answer to HEAD.
    Empty,
    Length(u64),
    Chunked,
    /// Until the server closes the connection (no length given).
    Close,
}

/// The framing of the body that follows `head`; `head_request`: it answers
/// a HEAD. An interim (1xx) response is an error: no mode asks for one.
pub fn framing(head: &Head, head_request: bool) -> Result<Framing, ErrorKind> {
    Ok(match (head.status, head.chunked, head.content_length) {
        (0..=199, _, _) => return Err(ErrorKind::Protocol),
        (204 | 304, _, _) => Framing::Empty,
        _ if head_request => Framing::Empty,
        (_, true, _) => Framing::Chunked,
        (_, false, Some(n)) => Framing::Length(n),
        (_, false, None) => Framing::Close,
    })
}

/// Parses `bytes first-last/complete`. `*` for the complete length (allowed
/// by RFC 9110) is rejected: the client always knows the size and checks it.
pub fn parse_content_range(v: &[u8]) -> Option<(u64, u64, u64)> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let rest = s.strip_prefix("bytes ")?.trim_start();
    let (range, complete) = rest.split_once('/')?;
    let (first, last) = range.split_once('-')?;
    let num = |t: &str| -> Option<u64> {
        (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let (first, last, complete) = (num(first)?, num(last)?, num(complete)?);
    (first <= last && last < complete).then_some((first, last, complete))
}

/// What the body of a checked response is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// As expected: read `body_len` bytes and count a success.
    Good { body_len: u64 },
    /// Wrong, but the body is delimited: read (and discard) `body_len` bytes,
    /// count the error, and keep the connection.
    Bad { kind: ErrorKind, body_len: u64 },
    /// Wrong, and the body cannot be delimited: count the error and close.
    Fatal { kind: ErrorKind },
}

/// Checks a response head against the request: an object of `size` bytes,
/// whole (expect 200) or a range (expect 206 with a matching Content-Range).
pub fn check(head: &Head, size: u64, range: Option<ByteRange>) -> Verdict {
    if head.chunked {
        // oca and nginx send Content-Length for files; chunked is not supported yet.
        return Verdict::Fatal {
            kind: ErrorKind::Protocol,
        };
    }
    if head.status < 200 {
        return Verdict::Fatal {
            kind: ErrorKind::Protocol,
        };
    }
    let Some(body_len) = head.content_length else {
        return Verdict::Fatal {
            kind: ErrorKind::Protocol,
        };
    };
    let bad = |kind| Verdict::Bad { kind, body_len };
    let expected_status = if range.is_some() { 206 } else { 200 };
    if head.status != expected_status {
        return bad(ErrorKind::Status);
    }
    match range {
        None if body_len != size => bad(ErrorKind::Length),
        None => Verdict::Good { body_len },
        Some(r) => {
            if head.bad_content_range {
                return bad(ErrorKind::Protocol);
            }
            if head.content_range != Some((r.first, r.last, size)) || body_len != r.len() {
                return bad(ErrorKind::Length);
            }
            Verdict::Good { body_len }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &str) -> Head {
        parse_head(raw.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn retry_after_in_seconds_is_read_and_a_date_is_not() {
        let h =
            head("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n");
        assert_eq!((h.status, h.retry_after), (503, Some(3)));
        let h = head("HTTP/1.1 503 x\r\nretry-after: Fri, 31 Dec 1999 23:59:59 GMT\r\n\r\n");
        assert_eq!(h.retry_after, None);
        assert_eq!(head("HTTP/1.1 200 OK\r\n\r\n").retry_after, None);
    }

    #[test]
    fn request_heads() {
        let mut buf = b"stale".to_vec();
        write_request(&mut buf, &RequestHead::get("/a%20b", "h:81"));
        assert_eq!(
            buf,
            b"GET /a%20b HTTP/1.1\r\nHost: h:81\r\nUser-Agent: oca-bench\r\n\r\n"
        );
        let range = Some(ByteRange {
            first: 10,
            last: 19,
        });
        write_request(
            &mut buf,
            &RequestHead {
                range,
                ..RequestHead::get("/k", "h")
            },
        );
        assert_eq!(
            buf,
            b"GET /k HTTP/1.1\r\nHost: h\r\nUser-Agent: oca-bench\r\nRange: bytes=10-19\r\n\r\n"
        );
        let post = RequestHead {
            method: "POST",
            headers: &[("Authorization", "Bearer vt_x")],
            body_len: Some(2),
            ..RequestHead::get("/v1/play?x=1", "h:81")
        };
        write_request(&mut buf, &post);
        assert_eq!(
            String::from_utf8(buf.clone()).unwrap(),
            "POST /v1/play?x=1 HTTP/1.1\r\nHost: h:81\r\nUser-Agent: oca-bench\r\n\
             Authorization: Bearer vt_x\r\nContent-Length: 2\r\n\r\n"
        );
        let close = RequestHead {
            method: "DELETE",
            headers: &[("Connection", "close")],
            ..RequestHead::get("/v1/plays/p", "h")
        };
        write_request(&mut buf, &close);
        assert!(buf.starts_with(b"DELETE /v1/plays/p HTTP/1.1\r\n"));
        assert!(buf.ends_with(b"Connection: close\r\n\r\n"));
    }

    #[test]
    fn bodies_are_framed_by_status_coding_and_length() {
        let f = |raw: &str, head_request| framing(&head(raw), head_request);
        let len = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(f(len, false), Ok(Framing::Length(5)));
        assert_eq!(f(len, true), Ok(Framing::Empty));
        assert_eq!(
            f(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Framing::Empty)
        );
        assert_eq!(
            f("HTTP/1.1 204 No Content\r\n\r\n", false),
            Ok(Framing::Empty)
        );
        assert_eq!(
            f(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                false
            ),
            Ok(Framing::Chunked),
            "chunked wins over a length"
        );
        assert_eq!(f("HTTP/1.0 200 OK\r\n\r\n", false), Ok(Framing::Close));
        assert_eq!(
            f("HTTP/1.1 100 Continue\r\n\r\n", false),
            Err(ErrorKind::Protocol)
        );
    }

    #[test]
    fn parses_heads() {
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
        assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\n\r"), Ok(None));
        assert_eq!(parse_head(b"garbage\r\n\r\n"), Err(ErrorKind::Protocol));
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            Err(ErrorKind::Protocol)
        );
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ErrorKind::Protocol)
        );

        let raw = "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\
                   Content-Range: bytes 10-19/100\r\nConnection: close\r\n\r\nBODY";
        let h = head(raw);
        assert_eq!(h.status, 206);
        assert_eq!(h.len, raw.len() - 4);
        assert_eq!(h.content_length, Some(10));
        assert_eq!(h.content_range, Some((10, 19, 100)));
        assert!(h.close);

        let h = head("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert!(h.close, "1.0 closes by default");
        let h = head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(!h.close);
        let h = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(h.chunked && !h.close);
    }

    #[test]
    fn content_range_syntax() {
        assert_eq!(parse_content_range(b"bytes 0-0/1"), Some((0, 0, 1)));
        assert_eq!(parse_content_range(b" bytes 5-9/10 "), Some((5, 9, 10)));
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "bytes */10",
            "bytes 0-1/*",
            "bytes -1-2/3",
            "bytes 1-2",
            "items 0-1/2",
            "bytes +1-2/3",
        ] {
            assert_eq!(parse_content_range(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn checks_whole_objects() {
        let ok = head("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        assert_eq!(check(&ok, 100, None), Verdict::Good { body_len: 100 });
        assert_eq!(
            check(&ok, 101, None),
            Verdict::Bad {
                kind: ErrorKind::Length,
                body_len: 100
            }
        );
        let missing = head("HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\n");
        assert_eq!(
            check(&missing, 100, None),
            Verdict::Bad {
                kind: ErrorKind::Status,
                body_len: 9
            }
        );
        let chunked = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_eq!(
            check(&chunked, 100, None),
            Verdict::Fatal {
                kind: ErrorKind::Protocol
            }
        );
        let no_len = head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(check(&no_len, 1, None), Verdict::Fatal { .. }));
        let cont = head("HTTP/1.1 100 Continue\r\n\r\n");
        assert!(matches!(check(&cont, 1, None), Verdict::Fatal { .. }));
    }

    #[test]
    fn checks_ranges() {
        let r = Some(ByteRange {
            first: 10,
            last: 19,
        });
        let ok = head(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\
             Content-Range: bytes 10-19/100\r\n\r\n",
        );
        assert_eq!(check(&ok, 100, r), Verdict::Good { body_len: 10 });
        // Other size, other range, wrong length: all length mismatches.
        assert!(matches!(
            check(&ok, 99, r),
            Verdict::Bad {
                kind: ErrorKind::Length,
                ..
            }
        ));
        let shifted = Some(ByteRange {
            first: 11,
            last: 20,
        });
        assert!(matches!(
            check(&ok, 100, shifted),
            Verdict::Bad {
                kind: ErrorKind::Length,
                ..
            }
        ));
        let wrong_len = head(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 9\r\n\
             Content-Range: bytes 10-19/100\r\n\r\n",
        );
        assert!(matches!(
            check(&wrong_len, 100, r),
            Verdict::Bad {
                kind: ErrorKind::Length,
                body_len: 9
            }
        ));
        // A server ignoring Range answers 200 with the whole object.
        let whole = head("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n");
        assert!(matches!(
            check(&whole, 100, r),
            Verdict::Bad {
                kind: ErrorKind::Status,
                body_len: 100
            }
        ));
        let garbled = head(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\
             Content-Range: bytes ten/100\r\n\r\n",
        );
        assert!(matches!(
            check(&garbled, 100, r),
            Verdict::Bad {
                kind: ErrorKind::Protocol,
                ..
            }
        ));
        let absent = head("HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n");
        assert!(matches!(
            check(&absent, 100, r),
            Verdict::Bad {
                kind: ErrorKind::Length,
                ..
            }
        ));
    }
}
