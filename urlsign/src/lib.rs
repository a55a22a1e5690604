//! Signed URL tokens.
//!
//! The control plane signs a token that says "the holder may fetch objects under
//! this path prefix until this time (optionally: only from this client prefix)";
//! the appliance verifies it on every request. Both sides use this crate, so they
//! cannot disagree about the format.
//!
//! # Format (version 1)
//!
//! ```text
//! token   = b64url(payload) "." b64url(tag)
//! payload = "1" LF kid LF expires LF path_prefix LF client_prefix
//! tag     = HMAC-SHA256(secret of kid, payload)
//! ```
//!
//! `b64url` is base64url without padding. `kid` names the key (1–32 of
//! `A-Z a-z 0-9 - _`); `expires` is unix seconds (decimal); `path_prefix` starts
//! with `/` and covers a path when it equals it, or is a prefix ending in `/`, or
//! is followed in the path by `/` (so `/titles/t1` covers `/titles/t1/a.m4s` but
//! not `/titles/t10/a.m4s`); `client_prefix` is empty or a CIDR such as
//! `203.0.113.0/24` or `2001:db8::/32`. The tag is checked (in constant time)
//! before any other field is trusted.
//!
//! Verification does not allocate: the token is decoded into stack buffers.

mod keys;
mod prefix;
mod token;

pub use keys::{Key, KeyError, KeySet, generate_secret};
pub use prefix::ClientPrefix;
pub use token::{Claims, MAX_TOKEN_LEN, Reject, sign, verify};
