//! `players --verify DIR`: the SHA-256 of every packaged file, so each
//! segment a viewer receives can be checked against what was packaged.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use ring::digest::{SHA256, digest};

/// Object key (path under the packaged tree) → SHA-256 of its bytes.
#[derive(Debug, Default)]
pub struct Packaged(HashMap<String, Vec<u8>>);

/// What a body was found to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Right,
    Wrong,
    /// Not a packaged file (nothing to compare with).
    Unknown,
}

impl Packaged {
    /// Hashes every file under `dir`.
    pub fn load(dir: &Path) -> Result<Packaged> {
        let mut out = HashMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            let entries =
                std::fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))?;
            for e in entries {
                let path = e?.path();
                if path.is_dir() {
                    todo.push(path);
                    continue;
                }
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let key = path
                    .strip_prefix(dir)
                    .expect("walked from dir")
                    .to_string_lossy()
                    .into_owned();
                out.insert(key, digest(&SHA256, &bytes).as_ref().to_vec());
            }
        }
        anyhow::ensure!(!out.is_empty(), "{} holds no files", dir.display());
        Ok(Packaged(out))
    }

    /// Checks `body`, fetched from request target `target`, against the file
    /// its key names; returns the check and the key.
    pub fn check<'a>(&self, target: &'a str, body: &[u8]) -> (Check, &'a str) {
        let key = object_key(target);
        let check = match self.0.get(key) {
            None => Check::Unknown,
            Some(want) if digest(&SHA256, body).as_ref() == want.as_slice() => Check::Right,
            Some(_) => Check::Wrong,
        };
        (check, key)
    }
}

/// The object key in a request target: the path without its query, without
/// a `/t/<token>/` prefix, without the leading slash.
pub fn object_key(target: &str) -> &str {
    let path = target.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_prefix('/').unwrap_or(path);
    match path.strip_prefix("t/") {
        Some(rest) => rest.split_once('/').map_or("", |(_, key)| key),
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_from_path_or_query_token_forms() {
        assert_eq!(
            object_key("/t/abc.def/titles/t1/v0/s1.m4s"),
            "titles/t1/v0/s1.m4s"
        );
        assert_eq!(
            object_key("/titles/t1/v0/s1.m4s?token=abc"),
            "titles/t1/v0/s1.m4s"
        );
        assert_eq!(object_key("/t/only-token"), "");
        assert_eq!(object_key("/titles/t1/init.mp4#x"), "titles/t1/init.mp4");
    }

    #[test]
    fn bodies_are_checked_against_the_packaged_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("titles/t1")).unwrap();
        std::fs::write(dir.path().join("titles/t1/s1.m4s"), b"segment one").unwrap();
        let p = Packaged::load(dir.path()).unwrap();
        let t = "/t/tok/titles/t1/s1.m4s";
        assert_eq!(
            p.check(t, b"segment one"),
            (Check::Right, "titles/t1/s1.m4s")
        );
        assert_eq!(p.check(t, b"segment 0ne").0, Check::Wrong);
        assert_eq!(p.check(t, b"segment").0, Check::Wrong);
        assert_eq!(p.check("/t/tok/titles/t1/s2.m4s", b"x").0, Check::Unknown);
        let empty = tempfile::tempdir().unwrap();
        assert!(Packaged::load(empty.path()).is_err());
    }
}
