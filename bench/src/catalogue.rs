//! The set of objects a run requests, from a keys file, a directory, or a JSON
//! catalogue.
//!
//! All three sources produce the same [`Catalogue`], and a catalogue's order is
//! deterministic (a directory is sorted), so the same `--seed` ranks the same
//! keys on two servers being compared.

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use hex::FromHex;
use serde::Deserialize;

/// One object that can be requested.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// Key relative to the server's root, with '/' separators and no leading '/'.
    pub key: String,
    /// Size in bytes, used to choose ranges and to check Content-Length.
    pub size: u64,
    /// SHA-256 of the whole object, checked on whole-object responses when known.
    pub sha256: Option<[u8; 32]>,
}

/// The objects of a run, in catalogue order (popularity ranks are assigned from
/// this order, shuffled by the seed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Catalogue {
    pub objects: Vec<Object>,
}

/// The JSON catalogue format, which the steering service will produce:
///
/// ```json
/// {"objects": [
///   {"key": "titles/t1/v720/seg-00001.m4s", "size": 123, "sha256": "9f86d0…"}
/// ]}
/// ```
///
/// - `key` (string, required): object key; a leading '/' is ignored.
/// - `size` (integer, required): object size in bytes.
/// - `sha256` (string, optional): lowercase or uppercase hex SHA-256 of the
///   whole object; omitted or `null` when unknown.
///
/// Unknown fields, at the top level or per object, are ignored so the producer
/// can add fields (rendition, title, popularity) without breaking older clients.
#[derive(Debug, Deserialize)]
struct JsonCatalogue {
    objects: Vec<JsonObject>,
}

#[derive(Debug, Deserialize)]
struct JsonObject {
    key: String,
    size: u64,
    #[serde(default)]
    sha256: Option<String>,
}

impl Catalogue {
    /// Reads a keys file: one object per line, `key size [sha256hex]`, fields
    /// separated by whitespace; blank lines and lines starting with '#' are skipped.
    pub fn from_keys_file(path: &Path) -> Result<Catalogue> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read keys file {}", path.display()))?;
        Self::parse_keys(&text).map_err(|e| anyhow!("{}:{e}", path.display()))
    }

    /// Parses the text of a keys file; errors start with the line number.
    pub fn parse_keys(text: &str) -> Result<Catalogue> {
        let mut objects = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let key = fields.next().unwrap_or_default();
            let Some(size) = fields.next() else {
                bail!("{n}: expected `key size [sha256]`, found only {key:?}");
            };
            let size: u64 = size
                .parse()
                .map_err(|_| anyhow!("{n}: size {size:?} is not a number of bytes"))?;
            let sha256 = match fields.next() {
                Some(h) => Some(parse_hex32(h).map_err(|e| anyhow!("{n}: sha256 {e}"))?),
                None => None,
            };
            if let Some(extra) = fields.next() {
                bail!("{n}: unexpected field {extra:?} after the sha256");
            }
            objects.push(object(key, size, sha256).map_err(|e| anyhow!("{n}: {e}"))?);
        }
        Catalogue { objects }.non_empty()
    }

    /// Reads a JSON catalogue (see [`JsonCatalogue`] for the format).
    pub fn from_json_file(path: &Path) -> Result<Catalogue> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read catalogue {}", path.display()))?;
        Self::parse_json(&text).map_err(|e| anyhow!("{}: {e}", path.display()))
    }

    /// Parses a JSON catalogue; errors name the object index.
    pub fn parse_json(text: &str) -> Result<Catalogue> {
        let raw: JsonCatalogue = serde_json::from_str(text).map_err(|e| anyhow!("{e}"))?;
        let mut objects = Vec::with_capacity(raw.objects.len());
        for (i, o) in raw.objects.into_iter().enumerate() {
            let sha = match o.sha256.as_deref() {
                Some(h) => Some(parse_hex32(h).map_err(|e| anyhow!("objects[{i}].sha256 {e}"))?),
                None => None,
            };
            objects.push(object(&o.key, o.size, sha).map_err(|e| anyhow!("objects[{i}]: {e}"))?);
        }
        Catalogue { objects }.non_empty()
    }

    /// Scans a directory of files; if it holds `objects/` (an oca disk root),
    /// that is scanned instead. Keys are relative paths, sorted so that the
    /// order (and hence the ranking for a seed) does not depend on the file system.
    /// Dot-files are skipped, as oca skips them.
    pub fn from_dir(dir: &Path) -> Result<Catalogue> {
        let objects_dir = dir.join("objects");
        let root = if objects_dir.is_dir() {
            objects_dir
        } else {
            dir.to_path_buf()
        };
        if !root.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        let mut objects = Vec::new();
        scan(&root, "", &mut objects)?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Catalogue { objects }
            .non_empty()
            .with_context(|| format!("in {}", root.display()))
    }

    fn non_empty(self) -> Result<Catalogue> {
        if self.objects.is_empty() {
            bail!("the catalogue has no objects");
        }
        Ok(self)
    }
}

fn scan(dir: &Path, prefix: &str, out: &mut Vec<Object>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue; // no URL names a non-UTF-8 file
        };
        if name.starts_with('.') {
            continue;
        }
        let key = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // Follow symlinks, as a server serving the directory would.
        let Ok(meta) = std::fs::metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            scan(&entry.path(), &key, out)?;
        } else if meta.is_file() {
            out.push(Object {
                key,
                size: meta.len(),
                sha256: None,
            });
        }
    }
    Ok(())
}

fn object(key: &str, size: u64, sha256: Option<[u8; 32]>) -> Result<Object> {
    let key = key.strip_prefix('/').unwrap_or(key);
    if key.is_empty() {
        bail!("empty key");
    }
    if key.bytes().any(|b| b.is_ascii_control()) {
        bail!("key {key:?} contains a control character");
    }
    Ok(Object {
        key: key.to_owned(),
        size,
        sha256,
    })
}

/// Parses 64 hex digits into a SHA-256 digest.
pub fn parse_hex32(s: &str) -> Result<[u8; 32]> {
    <[u8; 32]>::from_hex(s).map_err(|e| anyhow!("{s:?} is not 64 hex digits: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn keys_file_forms() {
        let c = Catalogue::parse_keys(&format!(
            "# comment\n\ntitles/t1/seg-1.m4s 123\n/a/b 0 {SHA}\n  c\t7  \n"
        ))
        .unwrap();
        assert_eq!(c.objects.len(), 3);
        assert_eq!(c.objects[0].key, "titles/t1/seg-1.m4s");
        assert_eq!(c.objects[0].size, 123);
        assert_eq!(c.objects[0].sha256, None);
        assert_eq!(c.objects[1].key, "a/b");
        assert_eq!(hex::encode(c.objects[1].sha256.unwrap()), SHA);
        assert_eq!(c.objects[2].size, 7);
    }

    #[test]
    fn keys_file_errors_name_the_line() {
        let cases = [
            ("a 1\nb\n", "2: expected `key size [sha256]`"),
            ("a 1\n\nb x\n", "3: size \"x\" is not a number"),
            ("a -1\n", "1: size \"-1\""),
            ("a 1 abc\n", "1: sha256 \"abc\" is not 64 hex digits"),
            (&format!("a 1 {SHA} z\n"), "1: unexpected field \"z\""),
            ("# nothing\n", "no objects"),
            ("/ 1\n", "1: empty key"),
        ];
        for (text, want) in cases {
            let err = Catalogue::parse_keys(text).unwrap_err().to_string();
            assert!(
                err.starts_with(want) || err.contains(want),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn json_catalogue() {
        let c = Catalogue::parse_json(&format!(
            r#"{{"version":1,"objects":[
                {{"key":"titles/t1/v720/seg-00001.m4s","size":123,"sha256":"{SHA}","title":"x"}},
                {{"key":"b","size":5,"sha256":null}},
                {{"key":"c","size":6}}]}}"#
        ))
        .unwrap();
        assert_eq!(c.objects.len(), 3);
        assert_eq!(c.objects[0].key, "titles/t1/v720/seg-00001.m4s");
        assert!(c.objects[0].sha256.is_some());
        assert_eq!(c.objects[1].sha256, None);
        assert_eq!(c.objects[2].size, 6);
    }

    #[test]
    fn json_errors() {
        let e = Catalogue::parse_json(r#"{"objects":[{"key":"a","size":1,"sha256":"zz"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("objects[0].sha256"), "{e}");
        let e = Catalogue::parse_json(r#"{"objects":[{"key":"a"}]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("size"), "{e}");
        let e = Catalogue::parse_json(r#"{"objects":[]}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no objects"), "{e}");
    }

    #[test]
    fn directory_and_disk_root() {
        let dir = tempfile::tempdir().unwrap();
        let put = |rel: &str, len: usize| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, vec![0u8; len]).unwrap();
        };
        put("b/2.m4s", 2);
        put("a/1.m4s", 1);
        put("a/.tmp", 9);
        let c = Catalogue::from_dir(dir.path()).unwrap();
        let keys: Vec<_> = c.objects.iter().map(|o| (o.key.as_str(), o.size)).collect();
        assert_eq!(keys, [("a/1.m4s", 1), ("b/2.m4s", 2)]);

        // An oca disk root: only objects/ counts, tmp/ is not served.
        put("objects/titles/t1/seg.m4s", 3);
        put("tmp/partial", 4);
        let c = Catalogue::from_dir(dir.path()).unwrap();
        assert_eq!(c.objects.len(), 1);
        assert_eq!(c.objects[0].key, "titles/t1/seg.m4s");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(hex::encode(parse_hex32(SHA).unwrap()), SHA);
        assert_eq!(
            hex::encode(parse_hex32(&SHA.to_uppercase()).unwrap()),
            SHA,
            "uppercase accepted"
        );
    }
}
