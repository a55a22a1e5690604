//! Deciding what a GET or HEAD response carries (RFC 9110 §13 and §14).
//!
//! Every body path (plaintext sendfile in `http::transport`, TLS encrypting
//! from pooled buffers in `tls::stream`, kernel TLS sendfile in `tls::ktls`)
//! sends what this one planner decided, through `http::conn`, so that
//! conditional requests and ranges behave identically whichever of them
//! ends up carrying the bytes. It is pure and allocation-free: it only
//! looks at header values the caller already has and at the validators of
//! the stored representation.

use std::time::{SystemTime, UNIX_EPOCH};

/// Only safe methods reach the planner; anything else is refused before a
/// body is ever considered, which keeps 304-versus-412 rules simple.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
}

/// What the server knows about the stored representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Representation length in bytes.
    pub len: u64,
    /// A strong entity-tag including its quotes, e.g. `"5f3a-1a"`, exactly
    /// as sent in the `ETag` header so comparisons are byte-for-byte.
    pub etag: &'a str,
    /// Compared at whole-second resolution because HTTP dates carry nothing
    /// finer; sub-second parts are truncated rather than trusted.
    pub last_modified: SystemTime,
}

/// Raw request header values (`None` = header absent), as RFC 9110 §5.3
/// reads repeated field lines: one value, the lines joined by commas.
/// If-Match and If-None-Match are lists, so their lines are kept in order as
/// [`FieldLines`] and mean the list of all of them. The others are
/// singletons whose grammar has no comma-joined form, so a repeated one is
/// invalid and passed as [`REPEATED`]: what each does with an invalid value
/// is what happens (see there).
#[derive(Debug, Clone, Copy, Default)]
pub struct Conditions<'a> {
    pub range: Option<&'a [u8]>,
    pub if_range: Option<&'a [u8]>,
    pub if_match: Option<FieldLines<'a>>,
    pub if_none_match: Option<FieldLines<'a>>,
    pub if_modified_since: Option<&'a [u8]>,
    pub if_unmodified_since: Option<&'a [u8]>,
}

/// The value a repeated singleton field (Range, If-Range, If-Modified-Since,
/// If-Unmodified-Since) stands as: its lines joined would be a list, which no
/// singleton's grammar allows, so the field is invalid. Then the dates are
/// ignored (RFC 9110 §13.1.3 names "more than one member" outright, §13.1.4
/// "a list of dates"), If-Range matches nothing so Range is ignored
/// (§13.1.5), and Range is ignored (§14.2): the whole object, `200`.
pub const REPEATED: &[u8] = b",";

/// Most lines one list field may take; more make it malformed (no client
/// sends that many, and the planner keeps no heap).
pub const MAX_FIELD_LINES: usize = 8;

/// The field lines of one list-based field (If-Match, If-None-Match) in the
/// order received: together one list, as if joined with ", " (RFC 9110 §5.3).
/// Borrowed from the request, so planning allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldLines<'a> {
    lines: [&'a [u8]; MAX_FIELD_LINES],
    /// Lines received; past `MAX_FIELD_LINES` only counted.
    count: usize,
}

impl<'a> FieldLines<'a> {
    pub fn new(line: &'a [u8]) -> FieldLines<'a> {
        let mut lines = [&[][..]; MAX_FIELD_LINES];
        lines[0] = line;
        FieldLines { lines, count: 1 }
    }

    /// Adds the next line of the same field.
    pub fn push(&mut self, line: &'a [u8]) {
        if let Some(slot) = self.lines.get_mut(self.count) {
            *slot = line;
        }
        self.count = self.count.saturating_add(1);
    }

    /// The lines in order; `None` when there were more than fit.
    pub fn lines(&self) -> Option<&[&'a [u8]]> {
        self.lines.get(..self.count)
    }
}

impl<'a> From<&'a [u8]> for FieldLines<'a> {
    fn from(line: &'a [u8]) -> FieldLines<'a> {
        FieldLines::new(line)
    }
}

/// The response shape, leaving headers and IO to the caller so the same
/// decision drives every body source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// 200 with the whole body.
    Full { len: u64 },
    /// 206 with `Content-Range: bytes start-(start+len-1)/total`; `len` is
    /// never zero and `start + len <= total`.
    Partial { start: u64, len: u64, total: u64 },
    /// 304: the client's cached copy is current.
    NotModified,
    /// 412: a precondition the client relied on no longer holds.
    PreconditionFailed,
    /// 416 with `Content-Range: bytes */total` so the client can retry.
    RangeNotSatisfiable { total: u64 },
}

impl Plan {
    /// Keeps the plan-to-status mapping next to the plan, so response
    /// writers cannot disagree about it.
    pub fn status(&self) -> u16 {
        match self {
            Plan::Full { .. } => 200,
            Plan::Partial { .. } => 206,
            Plan::NotModified => 304,
            Plan::PreconditionFailed => 412,
            Plan::RangeNotSatisfiable { .. } => 416,
        }
    }
}

/// Outcome of parsing one `Range` header against a representation length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeSpec {
    /// Absent, not the `bytes` unit, or syntactically invalid: RFC 9110
    /// says to ignore such a header, i.e. serve the whole representation.
    Ignore,
    /// Exactly one satisfiable range (any others were unsatisfiable).
    Single { start: u64, len: u64 },
    /// Two or more satisfiable ranges. We do not produce
    /// `multipart/byteranges` (video players never need it, and it is a
    /// known amplification vector); RFC 9110 §14.2 lets a server ignore
    /// Range, so [`plan`] answers with the whole object (200).
    Multiple,
    /// Syntactically valid, but no range overlaps the representation
    /// (including every range of a zero-length one): 416.
    Unsatisfiable,
}

/// Decides the response per RFC 9110 §13.2.2, in its order: If-Match, else
/// If-Unmodified-Since (412); If-None-Match, else If-Modified-Since (304);
/// then Range, gated by If-Range.
///
/// HEAD ignores Range and always plans [`Plan::Full`]: RFC 9110 only defines
/// Range for GET, and a HEAD answering 200 with the full Content-Length tells
/// a client more than a 206 would. (Many servers answer HEAD with 206 too;
/// clients must cope with both.)
///
/// Unparsable dates are ignored, as §13.1.3/§13.1.4 require; unparsable
/// entity-tag lists simply match nothing, which makes If-Match fail (412)
/// and If-None-Match not apply.
pub fn plan(method: Method, cond: &Conditions<'_>, v: &Validators<'_>) -> Plan {
    let lm = whole_secs(v.last_modified);
    if let Some(field) = &cond.if_match {
        if !etag_list_matches(field, v.etag, Comparison::Strong) {
            return Plan::PreconditionFailed;
        }
    } else if let Some(date) = cond.if_unmodified_since.and_then(parse_date)
        && lm > date
    {
        return Plan::PreconditionFailed;
    }

    // Both methods are GET or HEAD, so a failed If-None-Match is always 304.
    if let Some(field) = &cond.if_none_match {
        if etag_list_matches(field, v.etag, Comparison::Weak) {
            return Plan::NotModified;
        }
    } else if let Some(date) = cond.if_modified_since.and_then(parse_date)
        && lm <= date
    {
        return Plan::NotModified;
    }

    let full = Plan::Full { len: v.len };
    let Some(range) = cond.range else {
        return full;
    };
    if method == Method::Head {
        return full;
    }
    if let Some(field) = cond.if_range
        && !if_range_matches(field, v, lm)
    {
        return full;
    }
    match parse_range(range, v.len) {
        RangeSpec::Ignore | RangeSpec::Multiple => full,
        RangeSpec::Single { start, len } => Plan::Partial {
            start,
            len,
            total: v.len,
        },
        RangeSpec::Unsatisfiable => Plan::RangeNotSatisfiable { total: v.len },
    }
}

/// Parses a `Range` value against `len`, exposed so other body paths and
/// tests can reuse exactly the rules [`plan`] applies.
///
/// Accepts `bytes=` (unit case-insensitive) followed by a comma-separated
/// list of `a-b`, `a-` and `-n`, with optional whitespace and empty list
/// elements (RFC 9110 §5.6.1). Any malformed spec, `b < a`, or a first-pos
/// too large for `u64` makes the whole header [`RangeSpec::Ignore`]. An
/// overflowing last-pos or suffix-length means "to the end"/"everything",
/// since that is the only sensible reading of a number larger than any file.
pub fn parse_range(value: &[u8], len: u64) -> RangeSpec {
    const UNIT: &[u8] = b"bytes=";
    let value = trim_ows(value);
    if value.len() < UNIT.len() || !value[..UNIT.len()].eq_ignore_ascii_case(UNIT) {
        return RangeSpec::Ignore;
    }
    let mut any_spec = false;
    let mut satisfiable = 0usize;
    // Only read when exactly one spec is satisfiable, so "last seen" is it.
    let mut chosen = (0, 0);
    for element in value[UNIT.len()..].split(|&b| b == b',') {
        let element = trim_ows(element);
        if element.is_empty() {
            continue;
        }
        any_spec = true;
        let Some(spec) = parse_spec(element) else {
            return RangeSpec::Ignore;
        };
        if let Some(range) = spec.resolve(len) {
            chosen = range;
            satisfiable += 1;
        }
    }
    match satisfiable {
        _ if !any_spec => RangeSpec::Ignore,
        0 => RangeSpec::Unsatisfiable,
        1 => RangeSpec::Single {
            start: chosen.0,
            len: chosen.1,
        },
        _ => RangeSpec::Multiple,
    }
}

/// Appends `bytes a-b/total` (206) or `bytes */total` (416) to `out`; other
/// plans carry no Content-Range, so nothing is written. Appending (rather
/// than returning a `String`) lets a response writer format straight into
/// its reusable header buffer.
pub fn write_content_range(out: &mut Vec<u8>, plan: &Plan) {
    match *plan {
        Plan::Partial { start, len, total } => {
            debug_assert!(len > 0, "a Partial plan never has len 0");
            out.extend_from_slice(b"bytes ");
            push_u64(out, start);
            out.push(b'-');
            push_u64(out, start.saturating_add(len.saturating_sub(1)));
            out.push(b'/');
            push_u64(out, total);
        }
        Plan::RangeNotSatisfiable { total } => {
            out.extend_from_slice(b"bytes */");
            push_u64(out, total);
        }
        Plan::Full { .. } | Plan::NotModified | Plan::PreconditionFailed => {}
    }
}

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// One syntactically valid range-spec, before it meets a length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-last`; `last` is `u64::MAX` when absent or overflowing.
    FromTo(u64, u64),
    /// `-n`, saturated at `u64::MAX`.
    Suffix(u64),
}

impl Spec {
    /// The `(start, len)` this spec selects from a `len`-byte
    /// representation, or `None` if it selects nothing.
    fn resolve(self, len: u64) -> Option<(u64, u64)> {
        match self {
            Spec::FromTo(first, last) if first < len => {
                let end = last.min(len - 1);
                Some((first, end - first + 1))
            }
            Spec::FromTo(..) => None,
            Spec::Suffix(n) if n > 0 && len > 0 => {
                let start = len.saturating_sub(n);
                Some((start, len - start))
            }
            Spec::Suffix(_) => None,
        }
    }
}

/// A run of ASCII digits, saturated at `u64::MAX`; the flag says whether it
/// saturated, because first-pos and last-pos treat overflow differently.
fn parse_digits(s: &[u8]) -> Option<(u64, bool)> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut n = 0u64;
    for &d in s {
        match n
            .checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
        {
            Some(next) => n = next,
            None => return Some((u64::MAX, true)),
        }
    }
    Some((n, false))
}

fn parse_spec(s: &[u8]) -> Option<Spec> {
    let dash = s.iter().position(|&b| b == b'-')?;
    let (first, last) = (&s[..dash], &s[dash + 1..]);
    if first.is_empty() {
        return parse_digits(last).map(|(n, _)| Spec::Suffix(n));
    }
    let (first, overflow) = parse_digits(first)?;
    if overflow {
        return None;
    }
    let last = if last.is_empty() {
        u64::MAX
    } else {
        parse_digits(last)?.0
    };
    (last >= first).then_some(Spec::FromTo(first, last))
}

fn is_ows(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s
        && is_ows(*first)
    {
        s = rest;
    }
    while let [rest @ .., last] = s
        && is_ows(*last)
    {
        s = rest;
    }
    s
}

/// Seconds since the epoch, floored, in a type wide enough for any
/// `SystemTime` so comparisons never overflow or panic.
fn whole_secs(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::from(d.as_secs()),
        Err(e) => {
            let d = e.duration();
            -i128::from(d.as_secs()) - i128::from(d.subsec_nanos() > 0)
        }
    }
}

/// Any format httpdate accepts (IMF-fixdate, RFC 850, asctime); `None` for
/// anything else, which callers treat as "header absent".
fn parse_date(field: &[u8]) -> Option<i128> {
    let s = std::str::from_utf8(trim_ows(field)).ok()?;
    httpdate::parse_http_date(s).ok().map(whole_secs)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Splits `W/"x"` into `(true, "\"x\"")`; the opaque part keeps its quotes.
fn split_weak(tag: &[u8]) -> (bool, &[u8]) {
    match tag.strip_prefix(b"W/") {
        Some(opaque) => (true, opaque),
        None => (false, tag),
    }
}

/// Parses one entity-tag at the start of `s`, returning whether it is weak,
/// its opaque part (with quotes) and the unparsed rest.
fn parse_entity_tag(s: &[u8]) -> Option<(bool, &[u8], &[u8])> {
    let (weak, s) = split_weak(s);
    let body = s.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    // etagc = %x21 / %x23-7E / obs-text
    if !body[..close]
        .iter()
        .all(|&b| b == 0x21 || (0x23..=0x7e).contains(&b) || b >= 0x80)
    {
        return None;
    }
    Some((weak, &s[..close + 2], &body[close + 1..]))
}

/// `*` or a comma-separated list of entity-tags, over all of the field's
/// lines. A malformed list matches nothing at all, rather than whatever
/// happened to precede the garbage; `*` is only valid as the whole value, so
/// `*` on one of several lines is malformed too.
fn etag_list_matches(field: &FieldLines<'_>, etag: &str, cmp: Comparison) -> bool {
    let Some(lines) = field.lines() else {
        return false;
    };
    if let [only] = lines
        && trim_ows(only) == b"*"
    {
        return true;
    }
    let mut matched = false;
    for line in lines {
        match etag_line_matches(line, etag, cmp) {
            Some(m) => matched |= m,
            None => return false,
        }
    }
    matched
}

/// Whether one line of entity-tags holds ours; `None` when it is malformed.
fn etag_line_matches(line: &[u8], etag: &str, cmp: Comparison) -> Option<bool> {
    let (ours_weak, ours) = split_weak(etag.as_bytes());
    let mut matched = false;
    let mut rest = trim_ows(line);
    loop {
        while let [b, tail @ ..] = rest
            && (is_ows(*b) || *b == b',')
        {
            rest = tail;
        }
        if rest.is_empty() {
            return Some(matched);
        }
        let (weak, opaque, tail) = parse_entity_tag(rest)?;
        let strong_ok = !weak && !ours_weak;
        matched |= opaque == ours && (cmp == Comparison::Weak || strong_ok);
        rest = trim_ows(tail);
        if !rest.is_empty() && rest[0] != b',' {
            return None;
        }
    }
}

/// If-Range holds one validator: an entity-tag (must be strong and strongly
/// equal) or an HTTP-date (must equal Last-Modified exactly). Anything else
/// does not match, so the client gets the whole, current representation.
fn if_range_matches(field: &[u8], v: &Validators<'_>, lm: i128) -> bool {
    let field = trim_ows(field);
    if field.starts_with(b"\"") || field.starts_with(b"W/") {
        let (ours_weak, ours) = split_weak(v.etag.as_bytes());
        matches!(parse_entity_tag(field), Some((false, opaque, rest))
            if rest.is_empty() && !ours_weak && opaque == ours)
    } else {
        parse_date(field) == Some(lm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const ETAG: &str = "\"5f3a-1a\"";
    /// 1_700_000_000 seconds after the epoch.
    const LM: &str = "Tue, 14 Nov 2023 22:13:20 GMT";
    const LM_RFC850: &str = "Tuesday, 14-Nov-23 22:13:20 GMT";
    const LM_ASCTIME: &str = "Tue Nov 14 22:13:20 2023";
    const BEFORE: &str = "Tue, 14 Nov 2023 22:13:19 GMT";
    const AFTER: &str = "Tue, 14 Nov 2023 22:13:21 GMT";

    fn lm_time() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn v(len: u64) -> Validators<'static> {
        Validators {
            len,
            etag: ETAG,
            last_modified: lm_time(),
        }
    }

    /// Builds Conditions from `(header name, value)` pairs, so each table row
    /// reads like the request it models; a repeated name is taken as the
    /// request parser takes it (list lines add up, a singleton is REPEATED).
    fn cond<'a>(headers: &[(&str, &'a str)]) -> Conditions<'a> {
        let mut c = Conditions::default();
        for &(name, value) in headers {
            let value = value.as_bytes();
            let list = match name {
                "if-match" => &mut c.if_match,
                "if-none-match" => &mut c.if_none_match,
                _ => {
                    let slot = match name {
                        "range" => &mut c.range,
                        "if-range" => &mut c.if_range,
                        "if-modified-since" => &mut c.if_modified_since,
                        "if-unmodified-since" => &mut c.if_unmodified_since,
                        other => panic!("unknown header {other}"),
                    };
                    *slot = Some(if slot.is_some() { REPEATED } else { value });
                    continue;
                }
            };
            match list {
                Some(lines) => lines.push(value),
                None => *list = Some(FieldLines::new(value)),
            }
        }
        c
    }

    const FULL: Plan = Plan::Full { len: 100 };
    const NM: Plan = Plan::NotModified;
    const PF: Plan = Plan::PreconditionFailed;
    const fn part(start: u64, len: u64) -> Plan {
        Plan::Partial {
            start,
            len,
            total: 100,
        }
    }

    fn check(method: Method, headers: &[(&str, &str)], expected: Plan) {
        let got = plan(method, &cond(headers), &v(100));
        assert_eq!(got, expected, "{method:?} {headers:?}");
    }

    #[test]
    fn if_match() {
        let rows: &[(&str, Plan)] = &[
            ("*", FULL),
            (" * ", FULL),
            (ETAG, FULL),
            ("\"x\", \"5f3a-1a\"", FULL),
            ("\"5f3a-1a\",\"x\"", FULL),
            (",, \"x\" ,\t\"5f3a-1a\" ,", FULL),
            ("W/\"5f3a-1a\"", PF),
            ("\"x\", W/\"5f3a-1a\"", PF),
            ("\"5f3a-1A\"", PF),
            ("\"5f3a-1a", PF),
            ("5f3a-1a", PF),
            ("\"other\"", PF),
            ("", PF),
            (",", PF),
            ("*, \"5f3a-1a\"", PF),
            ("\"5f3a-1a\" garbage", PF),
            ("garbage, \"5f3a-1a\"", PF),
            ("\"5f3a-1a\"\"x\"", PF),
            ("w/\"5f3a-1a\"", PF),
            ("\"5f3a 1a\"", PF),
        ];
        for &(value, expected) in rows {
            check(Method::Get, &[("if-match", value)], expected);
            check(Method::Head, &[("if-match", value)], expected);
        }
    }

    #[test]
    fn if_unmodified_since() {
        let rows: &[(&str, Plan)] = &[
            (LM, FULL),
            (AFTER, FULL),
            ("Fri, 31 Dec 9999 23:59:59 GMT", FULL),
            (BEFORE, PF),
            ("Thu, 01 Jan 1970 00:00:00 GMT", PF),
            (LM_RFC850, FULL),
            (LM_ASCTIME, FULL),
            ("Tuesday, 14-Nov-23 22:13:19 GMT", PF),
            (" Tue, 14 Nov 2023 22:13:19 GMT\t", PF),
            // Unparsable dates are ignored (the header is treated as absent).
            ("yesterday", FULL),
            ("", FULL),
            ("Wed, 14 Nov 2023 22:13:19 GMT", FULL),
            ("Tue, 14 Nov 2023 22:13:19 GMT\u{e9}", FULL),
        ];
        for &(value, expected) in rows {
            check(Method::Get, &[("if-unmodified-since", value)], expected);
        }
        // If-Match takes over entirely, whether it passes or fails.
        check(
            Method::Get,
            &[("if-match", ETAG), ("if-unmodified-since", BEFORE)],
            FULL,
        );
        check(
            Method::Get,
            &[("if-match", "*"), ("if-unmodified-since", BEFORE)],
            FULL,
        );
        check(
            Method::Get,
            &[("if-match", "\"x\""), ("if-unmodified-since", AFTER)],
            PF,
        );
    }

    #[test]
    fn if_none_match() {
        let rows: &[(&str, Plan)] = &[
            (ETAG, NM),
            ("*", NM),
            ("W/\"5f3a-1a\"", NM),
            ("\"a\", W/\"5f3a-1a\"", NM),
            ("\"a\",\"b\",\"5f3a-1a\"", NM),
            ("  \"5f3a-1a\"  ", NM),
            ("\"other\"", FULL),
            ("W/\"other\"", FULL),
            ("\"5f3a-1a", FULL),
            ("5f3a-1a", FULL),
            ("", FULL),
            ("\"5f3a-1a\" ; x", FULL),
            ("*, \"5f3a-1a\"", FULL),
            ("W/ \"5f3a-1a\"", FULL),
        ];
        for &(value, expected) in rows {
            check(Method::Get, &[("if-none-match", value)], expected);
            check(Method::Head, &[("if-none-match", value)], expected);
        }
    }

    #[test]
    fn if_modified_since() {
        let rows: &[(&str, Plan)] = &[
            (LM, NM),
            (AFTER, NM),
            (LM_RFC850, NM),
            (LM_ASCTIME, NM),
            (BEFORE, FULL),
            ("Thu, 01 Jan 1970 00:00:00 GMT", FULL),
            ("not a date", FULL),
            ("Tue, 14 Nov 2023 22:13:20 UTC", FULL),
            ("Tue, 14 Nov 2023 25:13:20 GMT", FULL),
            ("", FULL),
        ];
        for &(value, expected) in rows {
            check(Method::Get, &[("if-modified-since", value)], expected);
            check(Method::Head, &[("if-modified-since", value)], expected);
        }
        // If-None-Match takes over entirely, whether it matches or not.
        check(
            Method::Get,
            &[("if-none-match", "\"x\""), ("if-modified-since", AFTER)],
            FULL,
        );
        check(
            Method::Get,
            &[("if-none-match", "garbage"), ("if-modified-since", LM)],
            FULL,
        );
        check(
            Method::Get,
            &[("if-none-match", ETAG), ("if-modified-since", BEFORE)],
            NM,
        );
    }

    /// RFC 9110 §5.3: repeated lines of a list field are one list; a repeated
    /// singleton is invalid and handled as its invalid value is.
    #[test]
    fn repeated_fields() {
        let inm = |v| ("if-none-match", v);
        let im = |v| ("if-match", v);
        let rows: &[(&[(&str, &str)], Plan)] = &[
            // Our tag on any line of a list field counts.
            (&[inm("\"a\""), inm(ETAG)], NM),
            (&[inm("\"a\", \"b\""), inm("\"c\""), inm(ETAG)], NM),
            (&[inm("\"a\""), inm("\"b\"")], FULL),
            (&[im("\"a\""), im(ETAG)], FULL),
            (&[im("\"a\""), im("\"b\"")], PF),
            // A malformed line spoils the whole list, as in one line.
            (&[inm(ETAG), inm("garbage")], FULL),
            (&[im(ETAG), im("garbage")], PF),
            // `*` is only valid alone: "*, *" and "*, tag" are malformed.
            (&[inm("*"), inm("*")], FULL),
            (&[inm("*"), inm(ETAG)], FULL),
            (&[im("*"), im(ETAG)], PF),
            // Empty lines are empty list elements.
            (&[inm(""), inm(ETAG)], NM),
            // Repeated dates are ignored, even when each alone would apply.
            (
                &[("if-modified-since", LM), ("if-modified-since", LM)],
                FULL,
            ),
            (
                &[
                    ("if-unmodified-since", BEFORE),
                    ("if-unmodified-since", BEFORE),
                ],
                FULL,
            ),
            // A repeated If-Range matches nothing: the Range is ignored.
            (
                &[
                    ("range", "bytes=0-9"),
                    ("if-range", ETAG),
                    ("if-range", ETAG),
                ],
                FULL,
            ),
            // A repeated Range is ignored.
            (&[("range", "bytes=0-9"), ("range", "bytes=0-9")], FULL),
            (&[("range", "bytes=0-9")], part(0, 10)),
        ];
        for &(headers, expected) in rows {
            check(Method::Get, headers, expected);
        }
        // More lines than the planner keeps make the list malformed.
        let many = vec![inm("\"a\""); MAX_FIELD_LINES];
        check(Method::Get, &[many.as_slice(), &[inm(ETAG)]].concat(), FULL);
        check(Method::Get, &[&many[1..], &[inm(ETAG)][..]].concat(), NM);
    }

    #[test]
    fn sub_second_last_modified_is_truncated() {
        let mut val = v(100);
        val.last_modified = lm_time() + Duration::from_millis(999);
        let ims = cond(&[("if-modified-since", LM)]);
        assert_eq!(plan(Method::Get, &ims, &val), NM);
        let ius = cond(&[("if-unmodified-since", LM)]);
        assert_eq!(plan(Method::Get, &ius, &val), Plan::Full { len: 100 });
        let ir = cond(&[("range", "bytes=0-0"), ("if-range", LM)]);
        assert_eq!(plan(Method::Get, &ir, &val), part(0, 1));
    }

    #[test]
    fn pre_epoch_and_far_future_last_modified_do_not_panic() {
        for lm in [
            UNIX_EPOCH - Duration::from_millis(1),
            UNIX_EPOCH - Duration::from_secs(1 << 40),
            UNIX_EPOCH + Duration::from_secs(1 << 50),
        ] {
            let val = Validators {
                last_modified: lm,
                ..v(100)
            };
            let c = cond(&[
                ("if-modified-since", LM),
                ("range", "bytes=0-1"),
                ("if-range", LM),
            ]);
            let expected = if lm < lm_time() { NM } else { FULL };
            assert_eq!(plan(Method::Get, &c, &val), expected);
        }
        let just_before = Validators {
            last_modified: UNIX_EPOCH - Duration::from_millis(1),
            ..v(100)
        };
        let epoch = cond(&[("if-unmodified-since", "Thu, 01 Jan 1970 00:00:00 GMT")]);
        assert_eq!(plan(Method::Get, &epoch, &just_before), FULL);
    }

    #[test]
    fn evaluation_order() {
        let rows: &[(&[(&str, &str)], Plan)] = &[
            // 412 from If-Match beats a matching If-None-Match and any Range.
            (&[("if-match", "\"x\""), ("if-none-match", ETAG)], PF),
            (&[("if-match", "\"x\""), ("range", "bytes=0-1")], PF),
            (
                &[("if-unmodified-since", BEFORE), ("if-none-match", ETAG)],
                PF,
            ),
            (
                &[
                    ("if-unmodified-since", BEFORE),
                    ("if-modified-since", AFTER),
                ],
                PF,
            ),
            (
                &[("if-unmodified-since", BEFORE), ("range", "bytes=500-")],
                PF,
            ),
            // Passing If-Match then a matching If-None-Match: 304.
            (&[("if-match", ETAG), ("if-none-match", ETAG)], NM),
            (
                &[("if-unmodified-since", AFTER), ("if-modified-since", AFTER)],
                NM,
            ),
            // 304 beats Range, even an unsatisfiable one.
            (&[("if-none-match", ETAG), ("range", "bytes=0-1")], NM),
            (&[("if-modified-since", LM), ("range", "bytes=500-")], NM),
            // Every precondition passes: the range applies.
            (
                &[
                    ("if-match", ETAG),
                    ("if-none-match", "\"x\""),
                    ("range", "bytes=10-19"),
                    ("if-range", ETAG),
                ],
                part(10, 10),
            ),
            (
                &[
                    ("if-unmodified-since", LM),
                    ("if-modified-since", BEFORE),
                    ("range", "bytes=-5"),
                ],
                part(95, 5),
            ),
        ];
        for &(headers, expected) in rows {
            check(Method::Get, headers, expected);
        }
    }

    #[test]
    fn range_and_if_range() {
        let rows: &[(&[(&str, &str)], Plan)] = &[
            (&[], FULL),
            (&[("range", "bytes=0-0")], part(0, 1)),
            (&[("range", "bytes=0-99")], part(0, 100)),
            (&[("range", "bytes=10-")], part(10, 90)),
            (&[("range", "bytes=-10")], part(90, 10)),
            (&[("range", "bytes=-1000")], part(0, 100)),
            (&[("range", "bytes=50-1000")], part(50, 50)),
            (
                &[("range", "bytes=100-")],
                Plan::RangeNotSatisfiable { total: 100 },
            ),
            (
                &[("range", "bytes=-0")],
                Plan::RangeNotSatisfiable { total: 100 },
            ),
            (&[("range", "bytes=0-1,5-6")], FULL),
            (&[("range", "bytes=5-1")], FULL),
            (&[("range", "items=0-1")], FULL),
            (&[("range", "bytes=")], FULL),
            // If-Range without Range is ignored.
            (&[("if-range", "\"x\"")], FULL),
            (&[("if-range", ETAG), ("range", "bytes=0-9")], part(0, 10)),
            (
                &[("if-range", " \"5f3a-1a\" "), ("range", "bytes=0-9")],
                part(0, 10),
            ),
            (&[("if-range", LM), ("range", "bytes=0-9")], part(0, 10)),
            (
                &[("if-range", LM_RFC850), ("range", "bytes=0-9")],
                part(0, 10),
            ),
            (
                &[("if-range", LM_ASCTIME), ("range", "bytes=0-9")],
                part(0, 10),
            ),
            // Anything but an exact strong validator match: whole body.
            (
                &[("if-range", "W/\"5f3a-1a\""), ("range", "bytes=0-9")],
                FULL,
            ),
            (&[("if-range", "\"other\""), ("range", "bytes=0-9")], FULL),
            (
                &[("if-range", "\"5f3a-1a\", \"x\""), ("range", "bytes=0-9")],
                FULL,
            ),
            (&[("if-range", "\"5f3a-1a"), ("range", "bytes=0-9")], FULL),
            (&[("if-range", "*"), ("range", "bytes=0-9")], FULL),
            (&[("if-range", "5f3a-1a"), ("range", "bytes=0-9")], FULL),
            (&[("if-range", BEFORE), ("range", "bytes=0-9")], FULL),
            (&[("if-range", AFTER), ("range", "bytes=0-9")], FULL),
            (&[("if-range", "garbage"), ("range", "bytes=0-9")], FULL),
            (&[("if-range", ""), ("range", "bytes=0-9")], FULL),
            // A failed If-Range also suppresses the 416.
            (&[("if-range", "\"other\""), ("range", "bytes=500-")], FULL),
            (
                &[("if-range", ETAG), ("range", "bytes=500-")],
                Plan::RangeNotSatisfiable { total: 100 },
            ),
        ];
        for &(headers, expected) in rows {
            check(Method::Get, headers, expected);
            // HEAD never gets 206 or 416: Range only applies to GET.
            let head_expected = match expected {
                Plan::Partial { .. } | Plan::RangeNotSatisfiable { .. } => FULL,
                other => other,
            };
            check(Method::Head, headers, head_expected);
        }
    }

    #[test]
    fn weak_stored_etag_never_matches_strongly() {
        let val = Validators {
            etag: "W/\"5f3a-1a\"",
            ..v(100)
        };
        let get = |headers: &[(&str, &str)]| plan(Method::Get, &cond(headers), &val);
        assert_eq!(get(&[("if-match", "W/\"5f3a-1a\"")]), PF);
        assert_eq!(get(&[("if-match", ETAG)]), PF);
        assert_eq!(get(&[("if-match", "*")]), FULL);
        assert_eq!(get(&[("if-none-match", ETAG)]), NM);
        assert_eq!(get(&[("if-range", ETAG), ("range", "bytes=0-0")]), FULL);
    }

    #[test]
    fn zero_length_representation() {
        let val = v(0);
        let get = |headers: &[(&str, &str)]| plan(Method::Get, &cond(headers), &val);
        assert_eq!(get(&[]), Plan::Full { len: 0 });
        for r in [
            "bytes=0-",
            "bytes=0-0",
            "bytes=-1",
            "bytes=-0",
            "bytes=5-10,-3",
        ] {
            assert_eq!(
                get(&[("range", r)]),
                Plan::RangeNotSatisfiable { total: 0 },
                "{r}"
            );
        }
        assert_eq!(get(&[("range", "bytes=1-0")]), Plan::Full { len: 0 });
        assert_eq!(get(&[("range", "bytes=x")]), Plan::Full { len: 0 });
    }

    #[test]
    fn parse_range_table() {
        use RangeSpec::*;
        const fn one(start: u64, len: u64) -> RangeSpec {
            Single { start, len }
        }
        let rows: &[(&str, u64, RangeSpec)] = &[
            ("bytes=0-0", 10, one(0, 1)),
            ("bytes=0-9", 10, one(0, 10)),
            ("bytes=3-5", 10, one(3, 3)),
            ("bytes=9-9", 10, one(9, 1)),
            ("bytes=0-", 10, one(0, 10)),
            ("bytes=7-", 10, one(7, 3)),
            ("bytes=-1", 10, one(9, 1)),
            ("bytes=-3", 10, one(7, 3)),
            ("bytes=-10", 10, one(0, 10)),
            ("bytes=-11", 10, one(0, 10)),
            ("bytes=-18446744073709551615", 10, one(0, 10)),
            ("bytes=-99999999999999999999999", 10, one(0, 10)),
            // last-pos beyond the end (or beyond u64) clamps to the end.
            ("bytes=5-10", 10, one(5, 5)),
            ("bytes=5-18446744073709551615", 10, one(5, 5)),
            ("bytes=0-99999999999999999999999", 10, one(0, 10)),
            ("bytes=3-99999999999999999999999", 10, one(3, 7)),
            // Unit is case-insensitive; whitespace and empty elements are OK.
            ("BYTES=1-2", 10, one(1, 2)),
            ("Bytes=1-2", 10, one(1, 2)),
            (" bytes=1-2 ", 10, one(1, 2)),
            ("bytes= 1-2", 10, one(1, 2)),
            ("bytes=1-2 ,", 10, one(1, 2)),
            ("bytes=,1-2", 10, one(1, 2)),
            ("bytes=\t1-2\t", 10, one(1, 2)),
            ("bytes=00-01", 10, one(0, 2)),
            // One satisfiable among unsatisfiable ones.
            ("bytes=20-30, 1-2", 10, one(1, 2)),
            ("bytes=1-2, 20-", 10, one(1, 2)),
            ("bytes=-0, 4-", 10, one(4, 6)),
            ("bytes=18446744073709551615-, -2", 10, one(8, 2)),
            // Unsatisfiable.
            ("bytes=10-", 10, Unsatisfiable),
            ("bytes=10-20", 10, Unsatisfiable),
            ("bytes=-0", 10, Unsatisfiable),
            ("bytes=-0,-0", 10, Unsatisfiable),
            ("bytes=10-,11-12,-0", 10, Unsatisfiable),
            ("bytes=18446744073709551615-", 10, Unsatisfiable),
            (
                "bytes=18446744073709551615-18446744073709551615",
                u64::MAX,
                Unsatisfiable,
            ),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-1", 0, Unsatisfiable),
            ("bytes=-99999999999999999999999", 0, Unsatisfiable),
            // Two or more satisfiable: served whole.
            ("bytes=0-1,2-3", 10, Multiple),
            ("bytes=0-1,0-1", 10, Multiple),
            ("bytes=0-,-1", 10, Multiple),
            ("bytes=0-1, 50-60, -2", 10, Multiple),
            // Syntactically invalid or not bytes: ignored.
            ("", 10, Ignore),
            ("bytes", 10, Ignore),
            ("bytes=", 10, Ignore),
            ("bytes=,", 10, Ignore),
            ("bytes= , ", 10, Ignore),
            ("bytes =0-1", 10, Ignore),
            ("bytes:0-1", 10, Ignore),
            ("items=0-1", 10, Ignore),
            ("byte=0-1", 10, Ignore),
            ("bytes=5-1", 10, Ignore),
            ("bytes=0-1,5-1", 10, Ignore),
            ("bytes=0-1,x", 10, Ignore),
            ("bytes=-", 10, Ignore),
            ("bytes=1", 10, Ignore),
            ("bytes=a-b", 10, Ignore),
            ("bytes=1-2-3", 10, Ignore),
            ("bytes=--1", 10, Ignore),
            ("bytes=+1-2", 10, Ignore),
            ("bytes=1-+2", 10, Ignore),
            ("bytes=1 -2", 10, Ignore),
            ("bytes=1- 2", 10, Ignore),
            ("bytes=0x1-2", 10, Ignore),
            ("bytes=1-2;x", 10, Ignore),
            ("bytes=1.0-2", 10, Ignore),
            ("bytes=\u{661}-2", 10, Ignore),
            ("bytes=99999999999999999999999-", 10, Ignore),
            ("bytes=18446744073709551616-", 10, Ignore),
            (
                "bytes=99999999999999999999999-99999999999999999999999",
                10,
                Ignore,
            ),
            ("bytes=5-1", 0, Ignore),
        ];
        for &(value, len, expected) in rows {
            assert_eq!(
                parse_range(value.as_bytes(), len),
                expected,
                "{value:?} len={len}"
            );
        }
    }

    #[test]
    fn content_range_formatting() {
        let rows: &[(Plan, &str)] = &[
            (
                Plan::Partial {
                    start: 0,
                    len: 1,
                    total: 1,
                },
                "bytes 0-0/1",
            ),
            (
                Plan::Partial {
                    start: 10,
                    len: 90,
                    total: 100,
                },
                "bytes 10-99/100",
            ),
            (
                Plan::Partial {
                    start: 0,
                    len: u64::MAX,
                    total: u64::MAX,
                },
                "bytes 0-18446744073709551614/18446744073709551615",
            ),
            (
                Plan::Partial {
                    start: u64::MAX - 1,
                    len: 1,
                    total: u64::MAX,
                },
                "bytes 18446744073709551614-18446744073709551614/18446744073709551615",
            ),
            (Plan::RangeNotSatisfiable { total: 0 }, "bytes */0"),
            (
                Plan::RangeNotSatisfiable { total: 1234567890 },
                "bytes */1234567890",
            ),
            (Plan::Full { len: 5 }, ""),
            (Plan::NotModified, ""),
            (Plan::PreconditionFailed, ""),
        ];
        let mut out = Vec::with_capacity(128);
        for &(p, expected) in rows {
            out.clear();
            out.extend_from_slice(b"Content-Range: ");
            write_content_range(&mut out, &p);
            assert_eq!(
                out,
                format!("Content-Range: {expected}").as_bytes(),
                "{p:?}"
            );
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(FULL.status(), 200);
        assert_eq!(part(0, 1).status(), 206);
        assert_eq!(NM.status(), 304);
        assert_eq!(PF.status(), 412);
        assert_eq!(Plan::RangeNotSatisfiable { total: 0 }.status(), 416);
    }

    /// A range-spec as a test generates it, before it is spelled out.
    #[derive(Debug, Clone)]
    enum GenSpec {
        FromTo(u64, Option<u64>),
        /// `a-` followed by a last-pos too large for u64.
        FromHuge(u64),
        Suffix(u64),
        SuffixHuge,
    }

    impl GenSpec {
        fn spell(&self) -> String {
            const HUGE: &str = "99999999999999999999999";
            match self {
                GenSpec::FromTo(a, Some(b)) => format!("{a}-{b}"),
                GenSpec::FromTo(a, None) => format!("{a}-"),
                GenSpec::FromHuge(a) => format!("{a}-{HUGE}"),
                GenSpec::Suffix(n) => format!("-{n}"),
                GenSpec::SuffixHuge => format!("-{HUGE}"),
            }
        }

        /// Whether byte `i` is selected: the definition from RFC 9110 §14.1.2,
        /// independent of how the parser computes start and length.
        fn covers(&self, i: u64, len: u64) -> bool {
            let i = u128::from(i);
            let len = u128::from(len);
            i < len
                && match *self {
                    GenSpec::FromTo(a, b) => {
                        i >= u128::from(a) && b.is_none_or(|b| i <= u128::from(b))
                    }
                    GenSpec::FromHuge(a) => i >= u128::from(a),
                    GenSpec::Suffix(n) => i + u128::from(n) >= len,
                    GenSpec::SuffixHuge => true,
                }
        }

        fn invalid(&self) -> bool {
            matches!(*self, GenSpec::FromTo(a, Some(b)) if b < a)
        }

        /// The selected bytes as (first, last) inclusive, in u128 arithmetic.
        fn selected(&self, len: u64) -> Option<(u128, u128)> {
            let l = u128::from(len);
            let (first, last) = match *self {
                GenSpec::FromTo(a, b) => (u128::from(a), b.map_or(u128::MAX, u128::from)),
                GenSpec::FromHuge(a) => (u128::from(a), u128::MAX),
                GenSpec::Suffix(n) => (
                    l.saturating_sub(u128::from(n)),
                    if n == 0 { 0 } else { u128::MAX },
                ),
                GenSpec::SuffixHuge => (0, u128::MAX),
            };
            let last = last.min(l.checked_sub(1)?);
            (first <= last && !matches!(*self, GenSpec::Suffix(0))).then_some((first, last))
        }
    }

    fn num() -> impl Strategy<Value = u64> {
        prop_oneof![0..80u64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1)]
    }

    fn gen_spec() -> impl Strategy<Value = GenSpec> {
        prop_oneof![
            4 => (num(), proptest::option::of(num())).prop_map(|(a, b)| GenSpec::FromTo(a, b)),
            1 => num().prop_map(GenSpec::FromHuge),
            3 => num().prop_map(GenSpec::Suffix),
            1 => Just(GenSpec::SuffixHuge),
        ]
    }

    fn spell_header(specs: &[GenSpec], unit: &str, ws: &[bool]) -> String {
        let mut h = format!("{unit}=");
        for (i, s) in specs.iter().enumerate() {
            if i > 0 {
                h.push(',');
            }
            if ws.get(i).copied().unwrap_or(false) {
                h.push(' ');
            }
            h.push_str(&s.spell());
        }
        h
    }

    fn unit() -> impl Strategy<Value = &'static str> {
        proptest::sample::select(&["bytes", "BYTES", "Bytes"][..])
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Against small representations, compare with slicing a real body
        /// by the byte-selection definition.
        #[test]
        fn partial_bytes_match_the_definition(
            len in 0..300u64,
            specs in proptest::collection::vec(gen_spec(), 1..4),
            ws in proptest::collection::vec(any::<bool>(), 4),
            unit in unit(),
        ) {
            let body: Vec<u8> = (0..len).map(|i| (i * 7 + i / 256) as u8).collect();
            let header = spell_header(&specs, unit, &ws);
            let got = parse_range(header.as_bytes(), len);
            let planned = plan(Method::Get, &Conditions { range: Some(header.as_bytes()), ..Default::default() }, &Validators { len, etag: ETAG, last_modified: lm_time() });
            if specs.iter().any(GenSpec::invalid) {
                prop_assert_eq!(got, RangeSpec::Ignore);
                prop_assert_eq!(planned, Plan::Full { len });
                return Ok(());
            }
            let selections: Vec<Vec<u8>> = specs
                .iter()
                .map(|s| (0..len).filter(|&i| s.covers(i, len)).map(|i| body[i as usize]).collect::<Vec<u8>>())
                .filter(|sel| !sel.is_empty())
                .collect();
            match got {
                RangeSpec::Single { start, len: n } => {
                    prop_assert_eq!(selections.len(), 1);
                    prop_assert!(n > 0 && start + n <= len);
                    prop_assert_eq!(&body[start as usize..(start + n) as usize], &selections[0][..]);
                    prop_assert_eq!(planned, Plan::Partial { start, len: n, total: len });
                }
                RangeSpec::Unsatisfiable => {
                    prop_assert!(selections.is_empty());
                    prop_assert_eq!(planned, Plan::RangeNotSatisfiable { total: len });
                }
                RangeSpec::Multiple => {
                    prop_assert!(selections.len() >= 2);
                    prop_assert_eq!(planned, Plan::Full { len });
                }
                RangeSpec::Ignore => prop_assert!(false, "valid header {header:?} ignored"),
            }
        }

        /// Against any length up to u64::MAX, check the arithmetic.
        #[test]
        fn any_length_arithmetic(
            len in prop_oneof![0..10u64, any::<u64>(), Just(u64::MAX)],
            specs in proptest::collection::vec(gen_spec(), 1..4),
            unit in unit(),
        ) {
            let header = spell_header(&specs, unit, &[]);
            let got = parse_range(header.as_bytes(), len);
            if specs.iter().any(GenSpec::invalid) {
                prop_assert_eq!(got, RangeSpec::Ignore);
                return Ok(());
            }
            let sel: Vec<(u128, u128)> = specs.iter().filter_map(|s| s.selected(len)).collect();
            match got {
                RangeSpec::Single { start, len: n } => {
                    prop_assert_eq!(sel.len(), 1);
                    prop_assert!(n > 0);
                    prop_assert!(u128::from(start) + u128::from(n) <= u128::from(len));
                    prop_assert_eq!((u128::from(start), u128::from(start) + u128::from(n) - 1), sel[0]);
                    let p = Plan::Partial { start, len: n, total: len };
                    let mut out = Vec::new();
                    write_content_range(&mut out, &p);
                    prop_assert_eq!(String::from_utf8(out).unwrap(), format!("bytes {}-{}/{len}", sel[0].0, sel[0].1));
                }
                RangeSpec::Unsatisfiable => prop_assert!(sel.is_empty()),
                RangeSpec::Multiple => prop_assert!(sel.len() >= 2),
                RangeSpec::Ignore => prop_assert!(false, "valid header {header:?} ignored"),
            }
        }

        #[test]
        fn arbitrary_headers_never_panic(
            method in prop_oneof![Just(Method::Get), Just(Method::Head)],
            len in prop_oneof![0..10u64, any::<u64>()],
            headers in proptest::collection::vec(proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)), 6),
            lm_secs in any::<u32>(),
        ) {
            let c = Conditions {
                range: headers[0].as_deref(),
                if_range: headers[1].as_deref(),
                if_match: headers[2].as_deref().map(FieldLines::from),
                if_none_match: headers[3].as_deref().map(FieldLines::from),
                if_modified_since: headers[4].as_deref(),
                if_unmodified_since: headers[5].as_deref(),
            };
            let val = Validators { len, etag: ETAG, last_modified: UNIX_EPOCH + Duration::from_secs(lm_secs.into()) };
            let p = plan(method, &c, &val);
            match p {
                Plan::Partial { start, len: n, total } => {
                    prop_assert_eq!(method, Method::Get);
                    prop_assert!(n > 0 && total == len && start.checked_add(n).is_some_and(|e| e <= len));
                }
                Plan::RangeNotSatisfiable { total } => {
                    prop_assert_eq!(method, Method::Get);
                    prop_assert_eq!(total, len);
                    prop_assert_eq!(parse_range(c.range.unwrap(), len), RangeSpec::Unsatisfiable);
                }
                Plan::Full { len: l } => prop_assert_eq!(l, len),
                Plan::NotModified | Plan::PreconditionFailed => {}
            }
            // Range never changes the precondition outcome.
            let without_range = plan(method, &Conditions { range: None, ..c }, &val);
            match p {
                Plan::NotModified | Plan::PreconditionFailed => prop_assert_eq!(p, without_range),
                _ => prop_assert_eq!(without_range, Plan::Full { len }),
            }
        }

        #[test]
        fn unmatched_if_range_always_serves_whole(
            len in 0..1000u64,
            specs in proptest::collection::vec(gen_spec(), 1..4),
            if_range in prop_oneof![
                Just("W/\"5f3a-1a\"".to_owned()),
                Just("\"5f3a-1b\"".to_owned()),
                Just(BEFORE.to_owned()),
                Just(AFTER.to_owned()),
                "[ -~]{0,30}".prop_filter("must not be a matching validator", |s| {
                    let t = s.trim_matches([' ', '\t']);
                    t != ETAG && httpdate::parse_http_date(t).ok() != Some(lm_time())
                }),
            ],
        ) {
            let header = spell_header(&specs, "bytes", &[]);
            let c = Conditions { range: Some(header.as_bytes()), if_range: Some(if_range.as_bytes()), ..Default::default() };
            prop_assert_eq!(plan(Method::Get, &c, &v(len)), Plan::Full { len });
        }

        #[test]
        fn etag_lists_find_our_tag_anywhere(
            others in proptest::collection::vec("[a-z0-9-]{0,8}", 0..5),
            pos in any::<proptest::sample::Index>(),
            weak in any::<bool>(),
            ws in "[ \t]{0,2}",
        ) {
            let mut tags: Vec<String> = others.iter().filter(|t| *t != "5f3a-1a").map(|t| format!("\"{t}\"")).collect();
            let ours = if weak { format!("W/{ETAG}") } else { ETAG.to_owned() };
            tags.insert(pos.index(tags.len() + 1), ours);
            let field = tags.join(&format!("{ws},{ws}"));
            let get = |c: Conditions<'_>| plan(Method::Get, &c, &v(10));
            prop_assert_eq!(get(Conditions { if_none_match: Some(field.as_bytes().into()), ..Default::default() }), Plan::NotModified);
            let expected = if weak { Plan::PreconditionFailed } else { Plan::Full { len: 10 } };
            prop_assert_eq!(get(Conditions { if_match: Some(field.as_bytes().into()), ..Default::default() }), expected);
            // The same tags one to a line are the same list (RFC 9110 §5.3).
            let mut lines: Option<FieldLines<'_>> = None;
            for t in &tags {
                match &mut lines {
                    Some(l) => l.push(t.as_bytes()),
                    None => lines = Some(FieldLines::new(t.as_bytes())),
                }
            }
            prop_assert_eq!(get(Conditions { if_none_match: lines, ..Default::default() }), Plan::NotModified);
            prop_assert_eq!(get(Conditions { if_match: lines, ..Default::default() }), expected);
        }
    }
}
