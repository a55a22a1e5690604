//! Turning an HTTP request-target into an object-store key.
//!
//! The key is later joined beneath a storage root, so this module is the
//! single place that decides which targets are safe. It is deliberately
//! strict: anything that could be read two ways (encoded slashes, dot
//! segments, backslashes, empty segments, non-UTF-8) is refused rather than
//! normalised, so the key a request names is exactly the key the store sees.

/// Longest key accepted; bounded so decoding can use a fixed stack buffer
/// and so absurd targets are refused before they reach the store.
pub const MAX_KEY_LEN: usize = 1024;

/// Why a target yields no key: the caller maps these straight to a status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// 400: the target is malformed or unsafe; the text is for the body.
    BadRequest(&'static str),
    /// 404: well-formed, but names no object (the root or a "directory").
    NotFound,
}

/// Decodes `target` into a store key written to `out`, so a connection can
/// reuse one `String` for every request instead of allocating per request.
///
/// `out` is cleared first and, on error, left empty. On success the key is
/// non-empty, at most [`MAX_KEY_LEN`] bytes, has no leading `/`, no `\`, no
/// control bytes, no empty, `.` or `..` segments, so joining it beneath a
/// root directory cannot escape that root.
///
/// The raw query (after the first `?`, before any `#`) is handed back
/// undecoded because only the caller knows whether it means anything.
pub fn object_key<'a>(target: &'a [u8], out: &mut String) -> Result<Option<&'a [u8]>, PathError> {
    out.clear();
    // Whitespace or control bytes can never appear in a request-target; they
    // would only get here through a lax request-line parser, and letting them
    // into the (otherwise unvalidated) query invites log or header injection.
    if target.iter().any(|&b| b <= b' ' || b == 0x7f) {
        return Err(bad("invalid character in request-target"));
    }
    let target = match target.iter().position(|&b| b == b'#') {
        Some(i) => &target[..i],
        None => target,
    };
    let (target, query) = match target.iter().position(|&b| b == b'?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    let path = if target.first() == Some(&b'/') {
        target
    } else if let Some(rest) = strip_http_scheme(target) {
        let slash = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(slash);
        check_authority(authority)?;
        if path.is_empty() {
            return Err(PathError::NotFound);
        }
        path
    } else {
        return Err(bad("unsupported request-target form"));
    };
    decode_path(&path[1..], out)?;
    Ok(query)
}

fn bad(reason: &'static str) -> PathError {
    PathError::BadRequest(reason)
}

/// Returns what follows `http://` or `https://` (scheme matched
/// case-insensitively, as RFC 3986 requires), or `None` for any other form.
fn strip_http_scheme(target: &[u8]) -> Option<&[u8]> {
    ["http://", "https://"].iter().find_map(|scheme| {
        let n = scheme.len();
        (target.len() >= n && target[..n].eq_ignore_ascii_case(scheme.as_bytes()))
            .then(|| &target[n..])
    })
}

/// The authority is not used for lookup, but a malformed one means the
/// client (or something in between) is not speaking HTTP as we understand it.
fn check_authority(authority: &[u8]) -> Result<(), PathError> {
    if authority.is_empty() {
        return Err(bad("missing host in absolute-form target"));
    }
    let ok = authority
        .iter()
        .all(|&b| is_unreserved_or_sub_delim(b) || matches!(b, b':' | b'@' | b'[' | b']' | b'%'));
    if ok {
        Ok(())
    } else {
        Err(bad("invalid character in host"))
    }
}

/// RFC 3986 `unreserved` / `sub-delims`: with `:` and `@` these make up
/// `pchar` minus percent-encodings.
fn is_unreserved_or_sub_delim(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
        )
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes the path (without its leading `/`) segment by segment, so every
/// check applies to what the filesystem would see, not to the spelling.
fn decode_path(path: &[u8], out: &mut String) -> Result<(), PathError> {
    // One spare byte lets a key of exactly MAX_KEY_LEN be followed by a
    // trailing '/' and still report NotFound rather than "too long".
    let mut buf = [0u8; MAX_KEY_LEN + 1];
    let mut n = 0;
    let mut segments = path.split(|&b| b == b'/').peekable();
    while let Some(raw) = segments.next() {
        let is_last = segments.peek().is_none();
        let seg_start = n;
        n = decode_segment(raw, &mut buf, n)?;
        match &buf[seg_start..n] {
            // Only the root or a "directory": there is no object to serve.
            [] if is_last => return Err(PathError::NotFound),
            [] => return Err(bad("empty path segment")),
            b"." | b".." => return Err(bad("dot segment in path")),
            _ => {}
        }
        if !is_last {
            *buf.get_mut(n).ok_or(bad("path too long"))? = b'/';
            n += 1;
        }
    }
    if n > MAX_KEY_LEN {
        return Err(bad("path too long"));
    }
    let key = std::str::from_utf8(&buf[..n]).map_err(|_| bad("path is not valid UTF-8"))?;
    out.push_str(key);
    Ok(())
}

/// Appends one decoded segment to `buf` at `n`, returning the new length.
fn decode_segment(raw: &[u8], buf: &mut [u8], mut n: usize) -> Result<usize, PathError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let byte = if b == b'%' {
            let hi = raw.get(i + 1).copied().and_then(hex_val);
            let lo = raw.get(i + 2).copied().and_then(hex_val);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(bad("invalid percent-encoding"));
            };
            i += 3;
            match hi << 4 | lo {
                // A decoded '/' would silently change the segment structure
                // the dot-segment check relied on.
                b'/' => return Err(bad("encoded slash in path")),
                d => d,
            }
        } else if b == b'\\' {
            return Err(bad("backslash in path"));
        } else if is_unreserved_or_sub_delim(b) || b == b':' || b == b'@' {
            i += 1;
            b
        } else {
            return Err(bad("invalid character in path"));
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(bad("control character in path"));
        }
        if byte == b'\\' {
            return Err(bad("backslash in path"));
        }
        *buf.get_mut(n).ok_or(bad("path too long"))? = byte;
        n += 1;
    }
    Ok(n)
}

/// Split a signed-URL token carried as the first path segment
/// (`/t/<token>/titles/...`) off a request-target. Returns the token, if any, and
/// the target for the object itself (origin-form). Absolute-form targets are
/// reduced to their path first. A target without the `/t/` segment is returned
/// unchanged.
pub fn split_token(target: &[u8]) -> (Option<&[u8]>, &[u8]) {
    let path = if target.first() == Some(&b'/') {
        target
    } else {
        match strip_http_scheme(target) {
            Some(rest) => match rest.iter().position(|&b| b == b'/') {
                Some(i) => &rest[i..],
                None => return (None, target),
            },
            None => return (None, target),
        }
    };
    let Some(after) = path.strip_prefix(b"/t/") else {
        return (None, target);
    };
    let end = after
        .iter()
        .position(|&b| b == b'/' || b == b'?' || b == b'#')
        .unwrap_or(after.len());
    (Some(&after[..end]), &after[end..])
}

/// The raw value of `name` in a query string (`a=1&token=xyz`), if present.
pub fn query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let rest = pair.strip_prefix(name)?;
        rest.strip_prefix(b"=")
    })
}

/// Whether a file name found on disk can be part of a key that `object_key`
/// would produce, so the index never holds an object no URL can reach.
pub fn is_valid_segment(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= MAX_KEY_LEN
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b'\\' || b < 0x20 || b == 0x7f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::path::{Component, Path};

    fn key(target: &[u8]) -> Result<String, PathError> {
        let mut out = String::from("stale contents");
        let r = object_key(target, &mut out).map(|_| out.clone());
        if r.is_err() {
            assert!(out.is_empty(), "out must be empty after an error");
        }
        r
    }

    fn ok(target: &[u8], expected: &str) {
        assert_eq!(
            key(target),
            Ok(expected.to_owned()),
            "target {:?}",
            target.escape_ascii().to_string()
        );
    }

    fn bad_with(target: &[u8], reason: &'static str) {
        assert_eq!(
            key(target),
            Err(PathError::BadRequest(reason)),
            "target {:?}",
            target.escape_ascii().to_string()
        );
    }

    fn not_found(target: &[u8]) {
        assert_eq!(
            key(target),
            Err(PathError::NotFound),
            "target {:?}",
            target.escape_ascii().to_string()
        );
    }

    #[test]
    fn accepted_targets() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"/titles/t1/v720/seg-00001.m4s",
                "titles/t1/v720/seg-00001.m4s",
            ),
            (b"/a", "a"),
            (b"/a/b", "a/b"),
            (b"/caf%C3%A9.m4s", "caf\u{e9}.m4s"),
            (b"/caf%c3%a9.m4s", "caf\u{e9}.m4s"),
            (b"/%61%62", "ab"),
            (b"/a%20b", "a b"),
            (b"/a%25b", "a%b"),
            (b"/a%3Fb", "a?b"),
            (b"/a%23b", "a#b"),
            (b"/...", "..."),
            (b"/a/.../b", "a/.../b"),
            (b"/.hidden", ".hidden"),
            (b"/..a", "..a"),
            (b"/a..", "a.."),
            (b"/a.b/c", "a.b/c"),
            (b"/~user/!$&'()*+,;=:@-._", "~user/!$&'()*+,;=:@-._"),
            (b"/a?x=1", "a"),
            (b"/a#frag", "a"),
            (b"/a?x=1#frag", "a"),
            (b"/a#f?notquery", "a"),
            (b"http://h/a/b", "a/b"),
            (b"HTTP://h/a", "a"),
            (b"HtTpS://h/a", "a"),
            (b"https://h:8443/a/b", "a/b"),
            (b"http://user@h:80/a", "a"),
            (b"http://[::1]:8080/a", "a"),
            (b"http://h/a?q#f", "a"),
            (b"http://h/caf%C3%A9", "caf\u{e9}"),
        ];
        for (target, expected) in cases {
            ok(target, expected);
        }
    }

    #[test]
    fn returns_raw_query() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"/a", None),
            (b"/a?", Some(b"")),
            (b"/a?x=1&y=%20", Some(b"x=1&y=%20")),
            (b"/a?x=1#frag", Some(b"x=1")),
            (b"/a?x?y", Some(b"x?y")),
            (b"/a?x/../y", Some(b"x/../y")),
            (b"/a#frag?x", None),
            (b"http://h/a?q=1", Some(b"q=1")),
        ];
        for (target, expected) in cases {
            let mut out = String::new();
            assert_eq!(object_key(target, &mut out), Ok(*expected), "{target:?}");
        }
    }

    #[test]
    fn traversal_and_unsafe_spellings_are_rejected() {
        let cases: &[(&[u8], &str)] = &[
            (b"/../etc/passwd", "dot segment in path"),
            (b"/a/../../b", "dot segment in path"),
            (b"/a/..", "dot segment in path"),
            (b"/a/../", "dot segment in path"),
            (b"/..", "dot segment in path"),
            (b"/.", "dot segment in path"),
            (b"/a/./b", "dot segment in path"),
            (b"/./a", "dot segment in path"),
            (b"/%2e%2e/x", "dot segment in path"),
            (b"/%2E%2e/x", "dot segment in path"),
            (b"/%2E%2E/x", "dot segment in path"),
            (b"/.%2e/x", "dot segment in path"),
            (b"/%2e./x", "dot segment in path"),
            (b"/%2e/x", "dot segment in path"),
            (b"/x/%2e", "dot segment in path"),
            (b"/a%2fb", "encoded slash in path"),
            (b"/a%2Fb", "encoded slash in path"),
            (b"/a%2F..%2Fb", "encoded slash in path"),
            (b"/%2F", "encoded slash in path"),
            (b"/a\\b", "backslash in path"),
            (b"/..\\x", "backslash in path"),
            (b"/a%5cb", "backslash in path"),
            (b"/a%5Cb", "backslash in path"),
            (b"/a%00b", "control character in path"),
            (b"/a%0ab", "control character in path"),
            (b"/a%0D%0Ab", "control character in path"),
            (b"/a%1fb", "control character in path"),
            (b"/a%7Fb", "control character in path"),
            (b"/a\x00b", "invalid character in request-target"),
            (b"/a\rb", "invalid character in request-target"),
            (b"/a\nb", "invalid character in request-target"),
            (b"/a\tb", "invalid character in request-target"),
            (b"/a\x7fb", "invalid character in request-target"),
            (b"/a b", "invalid character in request-target"),
            (b"/a?x y", "invalid character in request-target"),
            (b"/a#x\x00", "invalid character in request-target"),
            (b"//etc/passwd", "empty path segment"),
            (b"/a//b", "empty path segment"),
            (b"/a//", "empty path segment"),
            (b"//", "empty path segment"),
            (b"http://h/../x", "dot segment in path"),
            (b"http://h/a/%2e%2e/x", "dot segment in path"),
            (b"http://h//etc/passwd", "empty path segment"),
            (b"/%ff", "path is not valid UTF-8"),
            (b"/%C3", "path is not valid UTF-8"),
            (b"/%C3%28", "path is not valid UTF-8"),
            (b"/%ED%A0%80", "path is not valid UTF-8"),
            (b"/%C0%AF", "path is not valid UTF-8"),
        ];
        for &(target, reason) in cases {
            bad_with(target, reason);
        }
    }

    #[test]
    fn invalid_percent_escapes_are_rejected() {
        for target in [
            &b"/%"[..],
            b"/a%",
            b"/%2",
            b"/a%2",
            b"/%2/x",
            b"/%zz",
            b"/%g0",
            b"/%0g",
            b"/%%41",
            b"/%+1",
            b"/%-1",
            b"/%2?x",
            b"/%2#x",
        ] {
            bad_with(target, "invalid percent-encoding");
        }
    }

    #[test]
    fn raw_bytes_outside_uri_path_syntax_are_rejected() {
        for b in [b'"', b'<', b'>', b'`', b'{', b'}', b'|', b'^', b'[', b']'] {
            bad_with(&[b'/', b'a', b, b'b'], "invalid character in path");
        }
        for b in 0x80..=0xffu8 {
            bad_with(&[b'/', b'a', b], "invalid character in path");
        }
        // Raw UTF-8 is still not a URI; it must arrive percent-encoded.
        bad_with("/caf\u{e9}".as_bytes(), "invalid character in path");
    }

    #[test]
    fn other_target_forms_are_rejected() {
        for target in [
            &b""[..],
            b"*",
            b"a/b",
            b"a",
            b"?x=1",
            b"#f",
            b"ftp://h/a",
            b"http:/a",
            b"http:",
            b"http//h/a",
            b"h:80",
            b"file:///etc/passwd",
        ] {
            bad_with(target, "unsupported request-target form");
        }
        bad_with(b"http:///a", "missing host in absolute-form target");
        bad_with(b"http://?x", "missing host in absolute-form target");
        bad_with(b"http://h\\x/a", "invalid character in host");
        bad_with(b"http://h^/a", "invalid character in host");
        bad_with(b"http://h\x80/a", "invalid character in host");
    }

    #[test]
    fn roots_and_directories_are_not_found() {
        for target in [
            &b"/"[..],
            b"/?x=1",
            b"/#f",
            b"/titles/",
            b"/titles/t1/",
            b"/a%20/",
            b"http://h",
            b"http://h/",
            b"https://h:443",
            b"http://h?x",
            b"http://h#f",
            b"http://h/titles/",
        ] {
            not_found(target);
        }
    }

    #[test]
    fn length_limit_applies_to_the_decoded_key() {
        let exact = "a".repeat(MAX_KEY_LEN);
        ok(format!("/{exact}").as_bytes(), &exact);
        // Encoded bytes count once each, so a long spelling is fine.
        ok(format!("/{}", "%61".repeat(MAX_KEY_LEN)).as_bytes(), &exact);
        let nested = "a/".repeat(MAX_KEY_LEN / 2 - 1) + "bb";
        assert_eq!(nested.len(), MAX_KEY_LEN);
        ok(format!("/{nested}").as_bytes(), &nested);
        // A directory of maximal length is still just a directory.
        not_found(format!("/{exact}/").as_bytes());
        bad_with(format!("/{exact}a").as_bytes(), "path too long");
        bad_with(format!("/{exact}/b").as_bytes(), "path too long");
        bad_with(
            format!("/{}", "a/".repeat(MAX_KEY_LEN)).as_bytes(),
            "path too long",
        );
        bad_with(
            format!("/{}", "x".repeat(100_000)).as_bytes(),
            "path too long",
        );
    }

    #[test]
    fn reuses_the_callers_buffer() {
        let mut out = String::with_capacity(MAX_KEY_LEN);
        let ptr = out.as_ptr();
        for target in [&b"/a/b"[..], b"/../x", b"/caf%C3%A9", b"/", b"/x"] {
            let _ = object_key(target, &mut out);
            assert_eq!(out.as_ptr(), ptr, "must not reallocate");
            assert_eq!(out.capacity(), MAX_KEY_LEN);
        }
        assert_eq!(out, "x");
    }

    #[test]
    fn every_single_byte_after_slash_is_classified() {
        for b in 0..=255u8 {
            let target = [b'/', b'k', b];
            let r = key(&target);
            let expect_ok = is_unreserved_or_sub_delim(b) || matches!(b, b':' | b'@');
            match r {
                // '?' and '#' end the path rather than joining it.
                Ok(k) if matches!(b, b'?' | b'#') => assert_eq!(k, "k"),
                Ok(k) => assert!(expect_ok && k.as_bytes() == &target[1..], "{b:#x}"),
                Err(PathError::NotFound) => assert_eq!(b, b'/'),
                Err(PathError::BadRequest(_)) => {
                    assert!(!expect_ok && b != b'/', "{b:#x}")
                }
            }
        }
    }

    /// The invariants callers depend on when joining the key under a root.
    fn assert_safe_key(k: &str) {
        assert!(!k.is_empty());
        assert!(k.len() <= MAX_KEY_LEN);
        assert!(!k.starts_with('/') && !k.ends_with('/'));
        assert!(!k.contains('\\'));
        assert!(!k.bytes().any(|b| b < 0x20 || b == 0x7f), "{k:?}");
        for seg in k.split('/') {
            assert!(!seg.is_empty() && seg != "." && seg != "..", "{k:?}");
        }
        let joined = Path::new("/srv/root").join(k);
        assert!(joined.starts_with("/srv/root"));
        assert!(
            Path::new(k)
                .components()
                .all(|c| matches!(c, Component::Normal(_))),
            "{k:?}"
        );
    }

    /// Pieces that exercise every decision, so random targets hit the
    /// interesting cases far more often than uniform bytes would.
    const PIECES: &[&str] = &[
        "/",
        "/",
        "/",
        ".",
        ".",
        "..",
        "a",
        "b",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "%00",
        "%",
        "%2",
        "%zz",
        "%41",
        "%C3%A9",
        "%C3",
        "%ff",
        "\u{e9}",
        "?",
        "#",
        "x=1",
        " ",
        "\x00",
        "http://h",
        "HTTPS://h:1",
        "*",
        "~",
        ":",
        "@",
        "|",
        "%20",
        "%7f",
        "%0a",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_and_ok_keys_are_safe(target in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut out = String::new();
            if object_key(&target, &mut out).is_ok() {
                assert_safe_key(&out);
            } else {
                prop_assert!(out.is_empty());
            }
        }

        #[test]
        fn adversarial_targets_yield_only_safe_keys(
            pieces in proptest::collection::vec(proptest::sample::select(PIECES), 0..24)
        ) {
            let target = pieces.concat();
            let mut out = String::new();
            match object_key(target.as_bytes(), &mut out) {
                Ok(query) => {
                    assert_safe_key(&out);
                    let before_frag = target.split('#').next().unwrap();
                    prop_assert_eq!(query, before_frag.split_once('?').map(|(_, q)| q.as_bytes()));
                }
                Err(_) => prop_assert!(out.is_empty()),
            }
        }

        #[test]
        fn percent_encoded_keys_round_trip(
            segs in proptest::collection::vec("[^/\\\\\\p{Cc}]{1,6}", 1..6),
            encode_mask in any::<u64>(),
            query in proptest::option::of("[a-zA-Z0-9=&%/?]{0,10}"),
        ) {
            prop_assume!(segs.iter().all(|s| s != "." && s != ".."));
            let expected = segs.join("/");
            let mut target = String::from("/");
            for (i, b) in expected.bytes().enumerate() {
                let must = !(is_unreserved_or_sub_delim(b) || matches!(b, b':' | b'@' | b'/'));
                if must || (b != b'/' && encode_mask >> (i % 64) & 1 == 1) {
                    target.push_str(&format!("%{b:02X}"));
                } else {
                    target.push(b as char);
                }
            }
            if let Some(q) = &query {
                target.push('?');
                target.push_str(q);
            }
            let mut out = String::new();
            let got = object_key(target.as_bytes(), &mut out);
            prop_assert_eq!(got, Ok(query.as_deref().map(str::as_bytes)));
            prop_assert_eq!(&out, &expected);
            // The same key is reached through the absolute form.
            let absolute = format!("http://example.com{target}");
            prop_assert_eq!(object_key(absolute.as_bytes(), &mut out).is_ok(), true);
            prop_assert_eq!(&out, &expected);
        }
    }

    #[test]
    fn tokens_split_off_the_path() {
        let cases: &[(&[u8], Option<&[u8]>, &[u8])] = &[
            (
                b"/t/abc.def/titles/t1/a.m4s",
                Some(b"abc.def"),
                b"/titles/t1/a.m4s",
            ),
            (b"/t/abc/x?y=1", Some(b"abc"), b"/x?y=1"),
            (b"/t/abc", Some(b"abc"), b""),
            (b"/titles/t/a", None, b"/titles/t/a"),
            (b"/tx/a", None, b"/tx/a"),
            (b"http://h:8080/t/tok/a.m4s", Some(b"tok"), b"/a.m4s"),
            (b"http://h", None, b"http://h"),
            (b"*", None, b"*"),
        ];
        for &(target, token, rest) in cases {
            assert_eq!(
                split_token(target),
                (token, rest),
                "{}",
                String::from_utf8_lossy(target)
            );
        }
        // A token segment followed by nothing is not an object.
        let mut out = String::new();
        assert!(object_key(split_token(b"/t/abc").1, &mut out).is_err());
    }

    #[test]
    fn query_params() {
        assert_eq!(query_param(b"token=abc", b"token"), Some(&b"abc"[..]));
        assert_eq!(query_param(b"a=1&token=x.y&b", b"token"), Some(&b"x.y"[..]));
        assert_eq!(query_param(b"tokens=abc", b"token"), None);
        assert_eq!(query_param(b"xtoken=abc", b"token"), None);
        assert_eq!(query_param(b"", b"token"), None);
    }
}
