//! `path`: oca's request-target → object-key sanitiser, and the token and
//! query helpers that run on the same bytes.
//!
//! Input: a request-target, as the request line carries it.
//!
//! Properties of every accepted key:
//! - non-empty, at most `MAX_KEY_LEN` bytes, relative (no leading `/`), no
//!   NUL or other control byte, no `\`, no empty, `.` or `..` segment;
//! - joined beneath a root it has only normal components (cannot escape);
//! - every segment is one `is_valid_segment` accepts (the store indexes it);
//! - canonical: percent-encoding the key again and sanitising that gives the
//!   same key back, and a key with nothing to encode is a fixed point;
//! - the query handed back is the raw text between `?` and `#`.
//!
//! Errors leave the output buffer empty. `split_token` returns pieces of its
//! input, and a token never contains `/`, `?` or `#`.

use std::path::{Component, Path};

use oca::path::{MAX_KEY_LEN, is_valid_segment, object_key, query_param, split_token};

pub fn run(data: &[u8]) {
    let mut key = String::from("left over from the previous request");
    match object_key(data, &mut key) {
        Ok(query) => {
            check_key(&key);
            check_query(data, query);
            check_canonical(&key);
        }
        Err(_) => assert!(key.is_empty(), "output not cleared after an error"),
    }

    let (token, rest) = split_token(data);
    assert!(is_suffix(data, rest), "split_token invented a target");
    if let Some(t) = token {
        assert!(!t.iter().any(|b| matches!(b, b'/' | b'?' | b'#')));
        assert!(
            data.windows(3 + t.len())
                .any(|w| w.starts_with(b"/t/") && &w[3..] == t),
            "token is not a /t/ segment of the target"
        );
        // What follows the token is checked as the object's target.
        let mut key2 = String::new();
        if object_key(rest, &mut key2).is_ok() {
            check_key(&key2);
        }
    }
    if let Some(v) = query_param(data, b"token") {
        assert!(is_subslice(data, v));
        assert!(!v.contains(&b'&'));
    }
}

fn check_key(key: &str) {
    assert!(
        !key.is_empty() && key.len() <= MAX_KEY_LEN,
        "key length {}",
        key.len()
    );
    assert!(!key.starts_with('/'), "absolute key {key:?}");
    assert!(
        !key.bytes().any(|b| b < 0x20 || b == 0x7f || b == b'\\'),
        "control byte or backslash in {key:?}"
    );
    for seg in key.split('/') {
        assert!(
            !seg.is_empty() && seg != "." && seg != "..",
            "segment {seg:?} in {key:?}"
        );
        assert!(is_valid_segment(seg), "the store would not index {seg:?}");
    }
    let root = Path::new("/srv/oca/objects");
    let joined = root.join(key);
    assert!(joined.starts_with(root), "{key:?} escapes the root");
    assert!(
        Path::new(key)
            .components()
            .all(|c| matches!(c, Component::Normal(_))),
        "{key:?} has a non-normal component"
    );
}

fn check_query(target: &[u8], query: Option<&[u8]>) {
    let before_fragment = target.split(|&b| b == b'#').next().unwrap_or_default();
    let expected = before_fragment
        .iter()
        .position(|&b| b == b'?')
        .map(|i| &before_fragment[i + 1..]);
    assert_eq!(query, expected, "query is not the raw text between ? and #");
}

/// pchar without `%`: bytes that stand for themselves in a path segment.
fn literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn check_canonical(key: &str) {
    let mut encoded = String::from("/");
    for b in key.bytes() {
        if b == b'/' || literal(b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let mut again = String::new();
    assert_eq!(
        object_key(encoded.as_bytes(), &mut again),
        Ok(None),
        "re-encoded key {encoded:?} refused"
    );
    assert_eq!(again, key, "re-encoding {key:?} changed it");
    if key.bytes().all(|b| b == b'/' || literal(b)) {
        let mut fixed = String::new();
        let plain = format!("/{key}");
        assert_eq!(object_key(plain.as_bytes(), &mut fixed), Ok(None));
        assert_eq!(fixed, key, "sanitising is not idempotent on {key:?}");
    }
}

fn is_suffix(whole: &[u8], part: &[u8]) -> bool {
    whole.ends_with(part) && is_subslice(whole, part)
}

/// Whether `part` points into `whole` (not merely equal bytes elsewhere).
fn is_subslice(whole: &[u8], part: &[u8]) -> bool {
    let w = whole.as_ptr_range();
    let p = part.as_ptr_range();
    part.is_empty() || (w.start <= p.start && p.end <= w.end)
}
