//! `http_request`: oca's request-head parser, its socket-side buffering, the
//! range/conditional planner and the response head written from the plan.
//!
//! Input: the bytes a client sends. Whatever follows the first complete head
//! (pipelined bytes, for a real client) picks the stored object the head is
//! planned against: its size, mtime and, sometimes, an arbitrary entity-tag.
//!
//! Properties:
//! - a parsed head lies within the buffer and the limits, ends in a blank
//!   line, and parses identically from exactly its own bytes;
//! - `HeadReader` reaches the same outcome however the bytes are split into
//!   reads, and when it reports a complete head the parser never asks for
//!   more (conn.rs relies on that);
//! - a planned range lies within the object and is what `parse_range` says;
//!   Range never changes a 304/412 outcome; HEAD never gets 206/416;
//! - the response head written for a plan is valid HTTP whose status,
//!   Content-Length, Content-Range and body slice all agree with the plan.

use std::cell::RefCell;
use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbitrary::Unstructured;
use oca::http::Settings;
use oca::http::reader::{HeadReader, ReadEnd};
use oca::http::request::{self, Limits, Method, RequestHead};
use oca::http::response::{self, Framing};
use oca::http::testing::Scripted;
use oca::plan::{self, Conditions, Plan, RangeSpec, Validators};
use oca::store::OpenObject;

/// oca's default limits (config.rs).
const DEFAULT_LIMITS: Limits = Limits {
    max_request_line: 8 * 1024,
    max_header_bytes: 16 * 1024,
};
/// The tightest limits `Config::validate` accepts, so that inputs of a few
/// kilobytes reach every limit check.
const TIGHT_LIMITS: Limits = Limits {
    max_request_line: 256,
    max_header_bytes: 256,
};

pub fn run(data: &[u8]) {
    let parsed = request::parse(data, DEFAULT_LIMITS);
    if let Ok(Some(head)) = &parsed {
        check_head(data, head, DEFAULT_LIMITS);
        plan_against_objects(head, &data[head.len..]);
    }
    for limits in [DEFAULT_LIMITS, TIGHT_LIMITS] {
        check_reader(data, limits);
    }
}

/// The fields of a head, comparable.
fn fields<'b>(h: &RequestHead<'b>) -> impl PartialEq + std::fmt::Debug + use<'b> {
    let c = h.conditions;
    (
        h.method,
        h.target,
        h.minor,
        h.keep_alive,
        h.has_body,
        h.len,
        [
            c.range,
            c.if_range,
            c.if_modified_since,
            c.if_unmodified_since,
        ],
        [c.if_match, c.if_none_match],
    )
}

fn check_head(data: &[u8], head: &RequestHead<'_>, limits: Limits) {
    assert!(head.len > 0 && head.len <= data.len(), "head length");
    assert!(head.len <= limits.max_header_bytes, "head over the limit");
    assert!(head.minor <= 1, "HTTP/1.{} accepted", head.minor);
    assert!(
        !(head.keep_alive && head.has_body),
        "kept alive after a body"
    );
    let own = &data[..head.len];
    assert!(
        own.ends_with(b"\n\n") || own.ends_with(b"\n\r\n"),
        "head does not end in a blank line"
    );
    match request::parse(own, limits) {
        Ok(Some(again)) => assert_eq!(fields(&again), fields(head), "reparse differs"),
        other => panic!("head does not parse from its own bytes: {other:?}"),
    }
}

// ----- HeadReader: the same outcome whatever the read sizes -----

/// What the connection loop would do with the bytes.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A head ending at this offset of the input, with these fields.
    Head(usize, String),
    /// A refusal with this status.
    Status(u16),
    /// EOF before any byte of a request.
    Closed,
    /// EOF inside a head.
    Eof,
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

fn settings(limits: Limits) -> Settings {
    Settings {
        header_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        send_timeout: Duration::from_secs(10),
        limits,
        cache_control: "public, max-age=31536000, immutable".into(),
        open_file_cache: 0,
        open_file_cache_valid: Duration::from_secs(1),
        max_connections: 1,
        tls_mapped_bodies: false,
    }
}

fn through_reader(data: &[u8], limits: Limits, sizes: &'static [usize]) -> Outcome {
    let settings = settings(limits);
    let (_drain_tx, mut drain) = tokio::sync::watch::channel(false);
    let mut stream = Scripted::new(data, sizes);
    let mut reader = HeadReader::new();
    let filled =
        RUNTIME.with(|rt| rt.block_on(reader.fill_head(&mut stream, &settings, &mut drain)));
    match filled {
        Ok(()) => {
            let buffered = reader.buffered();
            let skipped = stream.delivered() - buffered.len();
            match request::parse(buffered, limits) {
                Ok(Some(h)) => Outcome::Head(skipped + h.len, format!("{:?}", fields(&h))),
                Ok(None) => panic!(
                    "the reader saw a blank line but the parser wants more: {:?}",
                    buffered.escape_ascii().to_string()
                ),
                Err(e) => Outcome::Status(response::status_for(e).0),
            }
        }
        Err(ReadEnd::Refused(e)) => Outcome::Status(response::status_for(e).0),
        Err(ReadEnd::Closed) => Outcome::Closed,
        Err(ReadEnd::Io(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Outcome::Eof,
        Err(other) => panic!("unexpected end of a scripted read: {other:?}"),
    }
}

fn check_reader(data: &[u8], limits: Limits) {
    let whole = through_reader(data, limits, &[usize::MAX]);
    let split = through_reader(data, limits, &[1, 3, 7, 2, 64, 5, 128, 1, 2]);
    assert_eq!(whole, split, "outcome depends on how the bytes were read");
    if let Outcome::Head(end, _) = &whole {
        // The head the reader delimits is the one the parser finds in the
        // input. The reader drops leading empty lines before parsing (so they
        // never count against the limits); do the same here.
        let blank = data
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        let direct = request::parse(&data[blank..], limits)
            .expect("parses")
            .expect("complete");
        assert_eq!(
            *end,
            blank + direct.len,
            "reader and parser disagree on the head's end"
        );
    }
}

// ----- Planning and the response head -----

thread_local! {
    /// One open object whose validators each case overwrites; the file is
    /// never read (bodies are planned, not sent).
    static OBJECT: RefCell<OpenObject> = RefCell::new(OpenObject {
        file: std::fs::File::open("/dev/null").expect("/dev/null"),
        size: 0,
        modified: UNIX_EPOCH,
        etag: "\"0-0\"".into(),
        last_modified: httpdate::fmt_http_date(UNIX_EPOCH).into_boxed_str(),
        content_type: "video/mp4",
        disk: 0,
        opened_at: Instant::now(),
    });
    static OUT: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn plan_against_objects(head: &RequestHead<'_>, tail: &[u8]) {
    let method = match head.method {
        Method::Get => plan::Method::Get,
        Method::Head => plan::Method::Head,
        _ => return,
    };
    let mut u = Unstructured::new(tail);
    let any_len: u64 = u.arbitrary().unwrap_or_default();
    // Whole seconds as oca's store reports them, or with a sub-second part
    // the planner must ignore.
    let secs = u64::from(u.arbitrary::<u32>().unwrap_or(1_700_000_000));
    let nanos = u.int_in_range(0..=999_999_999u32).unwrap_or(0);
    let modified = UNIX_EPOCH + Duration::new(secs, nanos);
    // An arbitrary entity-tag, as long as it can travel in a header (the
    // store only ever makes hex ones).
    let odd_etag: Option<&str> = match u.arbitrary::<bool>() {
        Ok(true) => u
            .arbitrary::<&str>()
            .ok()
            .filter(|e| !e.bytes().any(|b| b < 0x20 || b == 0x7f)),
        _ => None,
    };
    for len in [0, 1, 4096, 1_000_000, any_len, u64::MAX] {
        // The store's format (store.rs), unless the input brought its own.
        let etag = match odd_etag {
            Some(e) => e.to_owned(),
            None => format!("\"{secs:x}-{len:x}\""),
        };
        check_plan(method, &head.conditions, len, modified, &etag);
    }
}

fn check_plan(
    method: plan::Method,
    c: &Conditions<'_>,
    len: u64,
    modified: SystemTime,
    etag: &str,
) {
    let v = Validators {
        len,
        etag,
        last_modified: modified,
    };
    let p = plan::plan(method, c, &v);
    match p {
        Plan::Full { len: l } => assert_eq!(l, len),
        Plan::Partial {
            start,
            len: n,
            total,
        } => {
            assert_eq!(method, plan::Method::Get, "HEAD got 206");
            assert!(n > 0 && total == len, "{p:?} for length {len}");
            assert!(
                start.checked_add(n).is_some_and(|end| end <= len),
                "{p:?} runs past length {len}"
            );
            let range = c.range.expect("206 without Range");
            assert_eq!(
                plan::parse_range(range, len),
                RangeSpec::Single { start, len: n }
            );
        }
        Plan::RangeNotSatisfiable { total } => {
            assert_eq!(method, plan::Method::Get, "HEAD got 416");
            assert_eq!(total, len);
            let range = c.range.expect("416 without Range");
            assert_eq!(plan::parse_range(range, len), RangeSpec::Unsatisfiable);
        }
        Plan::NotModified | Plan::PreconditionFailed => {}
    }
    let without_range = plan::plan(method, &Conditions { range: None, ..*c }, &v);
    match p {
        Plan::NotModified | Plan::PreconditionFailed => assert_eq!(p, without_range),
        _ => assert_eq!(without_range, Plan::Full { len }),
    }
    check_response_head(method, &p, len, modified, etag);
}

fn check_response_head(method: plan::Method, p: &Plan, len: u64, modified: SystemTime, etag: &str) {
    OBJECT.with_borrow_mut(|obj| {
        obj.size = len;
        obj.modified = modified;
        obj.etag = etag.into();
        obj.last_modified = httpdate::fmt_http_date(modified).into_boxed_str();
    });
    let framing = Framing {
        keep_alive: true,
        minor: 1,
        now: UNIX_EPOCH + Duration::from_secs(1_800_000_000),
    };
    let send_body = method == plan::Method::Get;
    OUT.with_borrow_mut(|out| {
        out.clear();
        let (status, body) = OBJECT.with_borrow(|obj| {
            response::object_head(out, obj, p, send_body, "public, max-age=1", framing)
        });
        assert_eq!(status, p.status());
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        let Ok(httparse::Status::Complete(n)) = resp.parse(out) else {
            panic!(
                "response head does not parse: {:?}",
                out.escape_ascii().to_string()
            );
        };
        assert_eq!(n, out.len(), "bytes after the response head");
        assert_eq!(resp.code, Some(status));
        let header = |name: &str| {
            let mut found = resp
                .headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case(name));
            let first = found
                .next()
                .map(|h| std::str::from_utf8(h.value).expect("ASCII"));
            assert!(found.next().is_none(), "{name} twice");
            first
        };
        let content_length = header("content-length").map(|v| v.parse::<u64>().expect("number"));
        let content_range = header("content-range");
        match *p {
            Plan::Full { len: l } => {
                assert_eq!(content_length, Some(l));
                assert_eq!(content_range, None);
                let expect = (send_body && l > 0).then_some(response::Body { offset: 0, len: l });
                assert_eq!(body, expect);
            }
            Plan::Partial {
                start,
                len: n,
                total,
            } => {
                assert_eq!(content_length, Some(n));
                let last = start + n - 1;
                assert_eq!(
                    content_range,
                    Some(&*format!("bytes {start}-{last}/{total}"))
                );
                assert_eq!(
                    body,
                    Some(response::Body {
                        offset: start,
                        len: n
                    })
                );
            }
            Plan::RangeNotSatisfiable { total } => {
                assert_eq!(content_length, Some(0));
                assert_eq!(content_range, Some(&*format!("bytes */{total}")));
                assert_eq!(body, None);
            }
            Plan::PreconditionFailed => {
                assert_eq!(content_length, Some(0));
                assert_eq!(body, None);
            }
            Plan::NotModified => {
                assert_eq!(content_length, None, "304 with Content-Length");
                assert_eq!(body, None);
            }
        }
        if let Some(b) = body {
            assert!(b.len > 0 && b.offset.checked_add(b.len).is_some_and(|e| e <= len));
        }
    });
}
