//! Response heads, written by hand into a reused buffer: the set of headers we
//! send is small and fixed, and formatting them must not allocate per request.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::plan::{self, Plan};
use crate::store::OpenObject;

use super::request::HeadError;

/// Headers a browser player on another origin may read from our responses.
const CORS: &[u8] = b"Access-Control-Allow-Origin: *\r\n\
Access-Control-Expose-Headers: Content-Length, Content-Range, Accept-Ranges, ETag\r\n";

/// Methods we answer; sent in `Allow` with 405 and in CORS preflights.
pub const ALLOW: &str = "GET, HEAD, OPTIONS";

/// Reason phrase for every status we send.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        304 => "Not Modified",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// The one place a refused request head becomes a status and a body text.
pub fn status_for(e: HeadError) -> (u16, &'static str) {
    match e {
        HeadError::BadRequest(why) => (400, why),
        HeadError::UriTooLong => (414, "request line too long"),
        HeadError::HeadersTooLarge => (431, "request header fields too large"),
        HeadError::VersionNotSupported => (505, "only HTTP/1.0 and HTTP/1.1 are supported"),
    }
}

thread_local! {
    /// (unix second, IMF-fixdate) so the Date header is formatted once a second.
    static DATE: RefCell<(u64, [u8; 29])> = const { RefCell::new((0, [0; 29])) };
}

fn push_date(out: &mut Vec<u8>, now: SystemTime) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|cell| {
        let mut c = cell.borrow_mut();
        if c.0 != secs {
            let s = httpdate::fmt_http_date(now);
            if s.len() == 29 {
                c.1.copy_from_slice(s.as_bytes());
                c.0 = secs;
            }
        }
        out.extend_from_slice(b"Date: ");
        out.extend_from_slice(&c.1);
        out.extend_from_slice(b"\r\n");
    });
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

fn status_line(out: &mut Vec<u8>, status: u16, now: SystemTime) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_num(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\nServer: oca\r\n");
    push_date(out, now);
}

fn connection(out: &mut Vec<u8>, keep_alive: bool, minor: u8) {
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
}

/// How a response is framed on the connection.
#[derive(Debug, Clone, Copy)]
pub struct Framing {
    pub keep_alive: bool,
    /// The request's HTTP/1.x minor version.
    pub minor: u8,
    pub now: SystemTime,
}

/// The slice of the object file a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    pub offset: u64,
    pub len: u64,
}

/// Write the head for an object response per `plan`; returns the status and the
/// byte range of the file to send after it (none for HEAD, 304, 412 and 416).
pub fn object_head(
    out: &mut Vec<u8>,
    obj: &OpenObject,
    p: &Plan,
    send_body: bool,
    cache_control: &str,
    f: Framing,
) -> (u16, Option<Body>) {
    let (status, body) = match *p {
        Plan::Full { len } => (200, Some(Body { offset: 0, len })),
        Plan::Partial { start, len, .. } => (206, Some(Body { offset: start, len })),
        Plan::NotModified => (304, None),
        Plan::PreconditionFailed => (412, None),
        Plan::RangeNotSatisfiable { .. } => (416, None),
    };
    status_line(out, status, f.now);
    match *p {
        Plan::Full { .. } | Plan::Partial { .. } => {
            out.extend_from_slice(b"Content-Type: ");
            out.extend_from_slice(obj.content_type.as_bytes());
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_num(out, body.map_or(0, |b| b.len));
            out.extend_from_slice(b"\r\n");
            if status == 206 {
                out.extend_from_slice(b"Content-Range: ");
                plan::write_content_range(out, p);
                out.extend_from_slice(b"\r\n");
            }
        }
        Plan::RangeNotSatisfiable { .. } => {
            out.extend_from_slice(b"Content-Range: ");
            plan::write_content_range(out, p);
            out.extend_from_slice(b"\r\nContent-Length: 0\r\n");
        }
        Plan::PreconditionFailed => out.extend_from_slice(b"Content-Length: 0\r\n"),
        Plan::NotModified => {}
    }
    out.extend_from_slice(b"Accept-Ranges: bytes\r\nETag: ");
    out.extend_from_slice(obj.etag.as_bytes());
    out.extend_from_slice(b"\r\nLast-Modified: ");
    out.extend_from_slice(obj.last_modified.as_bytes());
    out.extend_from_slice(b"\r\nCache-Control: ");
    out.extend_from_slice(cache_control.as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(CORS);
    connection(out, f.keep_alive, f.minor);
    out.extend_from_slice(b"\r\n");
    (
        status,
        if send_body {
            body.filter(|b| b.len > 0)
        } else {
            None
        },
    )
}

/// A complete short response with a text body saying why (`head_only` for HEAD
/// requests: same headers, no body).
pub fn simple(out: &mut Vec<u8>, status: u16, why: &str, f: Framing, head_only: bool) {
    status_line(out, status, f.now);
    match status {
        405 => {
            out.extend_from_slice(b"Allow: ");
            out.extend_from_slice(ALLOW.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        503 => out.extend_from_slice(b"Retry-After: 1\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\nContent-Length: ");
    push_num(out, why.len() as u64 + 1);
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\n");
    out.extend_from_slice(CORS);
    connection(out, f.keep_alive, f.minor);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(why.as_bytes());
        out.push(b'\n');
    }
}

/// Answer to a CORS preflight (OPTIONS): browsers ask before sending Range or
/// conditional headers cross-origin.
pub fn preflight(out: &mut Vec<u8>, f: Framing) {
    status_line(out, 204, f.now);
    out.extend_from_slice(
        b"Allow: GET, HEAD, OPTIONS\r\n\
Access-Control-Allow-Origin: *\r\n\
Access-Control-Allow-Methods: GET, HEAD, OPTIONS\r\n\
Access-Control-Allow-Headers: Range, If-Range, If-None-Match, If-Modified-Since, If-Match, If-Unmodified-Since\r\n\
Access-Control-Max-Age: 86400\r\n",
    );
    connection(out, f.keep_alive, f.minor);
    out.extend_from_slice(b"\r\n");
}

/// A full response body-and-head for the admin listener.
pub fn admin(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
    now: SystemTime,
) {
    status_line(out, status, now);
    out.extend_from_slice(b"Content-Type: ");
    out.extend_from_slice(content_type.as_bytes());
    out.extend_from_slice(b"\r\nContent-Length: ");
    push_num(out, body.len() as u64);
    out.extend_from_slice(b"\r\nCache-Control: no-store\r\n");
    if status == 401 {
        out.extend_from_slice(b"WWW-Authenticate: Bearer realm=\"oca-admin\"\r\n");
    }
    connection(out, keep_alive, 1);
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(body);
    }
}
