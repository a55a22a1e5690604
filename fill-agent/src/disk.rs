//! The appliance's disks as the fill agent sees them: which planned objects are
//! there, where downloads in progress live, space, atomic commits, eviction.
//!
//! A download goes to `<root>/tmp/fill-<sha256>.part` (named by content, so a
//! restart finds it again and a changed object never resumes into stale bytes)
//! and is renamed into `<root>/objects/<key>` only after its size and SHA-256
//! check out and it is fsynced: players can never see a partial object.

use std::io;
use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt;

/// A key from a plan that is safe to join beneath a root.
pub fn safe_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('/')
        && key
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
        && key.bytes().all(|b| b.is_ascii_graphic() && b != b'\\')
}

/// A SHA-256 from a plan, usable in a file name.
pub fn safe_sha(sha: &str) -> bool {
    sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

#[derive(Debug, Clone)]
pub struct Disks {
    pub roots: Vec<PathBuf>,
    /// Only roots that are mount points are written to.
    require_mount: bool,
}

/// Space on one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    pub total: u64,
    pub available: u64,
}

impl Disks {
    pub fn new(roots: Vec<PathBuf>) -> Disks {
        Disks {
            roots,
            require_mount: false,
        }
    }

    pub fn requiring_mounts(mut self, require_mount: bool) -> Disks {
        self.require_mount = require_mount;
        self
    }

    /// Whether downloads may go to `root`: it is a directory with oca's layout
    /// (`objects/`), and a mount point when that is required. A vanished or
    /// unmounted disk is skipped, never recreated on another filesystem.
    pub fn writable(&self, root: usize) -> bool {
        let root = &self.roots[root];
        let (Ok(meta), true) = (std::fs::metadata(root), root.join("objects").is_dir()) else {
            return false;
        };
        if !self.require_mount {
            return meta.is_dir();
        }
        // A mount point: its parent is on another device (or it is `/`).
        std::fs::metadata(root.join(".."))
            .is_ok_and(|p| p.dev() != meta.dev() || p.ino() == meta.ino())
    }

    pub fn object_path(&self, root: usize, key: &str) -> PathBuf {
        self.roots[root].join("objects").join(key)
    }

    pub fn partial_path(&self, root: usize, sha: &str) -> PathBuf {
        self.roots[root]
            .join("tmp")
            .join(format!("fill-{sha}.part"))
    }

    /// The root holding committed object `key` and its size, if any root has it.
    pub fn locate(&self, key: &str) -> Option<(usize, u64)> {
        (0..self.roots.len()).find_map(|r| {
            let m = std::fs::metadata(self.object_path(r, key)).ok()?;
            m.is_file().then_some((r, m.len()))
        })
    }

    /// Size of the committed object `key`, if any root has it.
    pub fn present(&self, key: &str) -> Option<u64> {
        self.locate(key).map(|(_, size)| size)
    }

    /// A download in progress for content `sha`: (root, bytes so far).
    pub fn partial(&self, sha: &str) -> Option<(usize, u64)> {
        (0..self.roots.len()).find_map(|r| {
            std::fs::metadata(self.partial_path(r, sha))
                .ok()
                .map(|m| (r, m.len()))
        })
    }

    /// Space per root, `None` for a root that cannot be read.
    pub fn space(&self, root: usize) -> Option<Space> {
        let v = rustix::fs::statvfs(&self.roots[root]).ok()?;
        Some(Space {
            total: v.f_blocks.saturating_mul(v.f_frsize),
            available: v.f_bavail.saturating_mul(v.f_frsize),
        })
    }

    /// Bytes that may still be written without eating into the headroom, over
    /// distinct filesystems.
    pub fn room(&self, headroom_percent: f64) -> u64 {
        let mut seen = Vec::new();
        let mut room = 0u64;
        for r in (0..self.roots.len()).filter(|&r| self.writable(r)) {
            let Ok(dev) = std::fs::metadata(&self.roots[r]).map(|m| m.dev()) else {
                continue;
            };
            if seen.contains(&dev) {
                continue;
            }
            seen.push(dev);
            if let Some(s) = self.space(r) {
                let keep = (s.total as f64 * headroom_percent / 100.0) as u64;
                room += s.available.saturating_sub(keep);
            }
        }
        room
    }

    /// The root with the most room for a new download.
    pub fn pick_root(&self, headroom_percent: f64) -> Option<usize> {
        (0..self.roots.len())
            .filter(|&r| self.writable(r))
            .filter_map(|r| {
                let s = self.space(r)?;
                let keep = (s.total as f64 * headroom_percent / 100.0) as u64;
                Some((r, s.available.saturating_sub(keep)))
            })
            .max_by_key(|&(_, room)| room)
            .map(|(r, _)| r)
    }

    /// Every committed object: (key, size), from walking the roots.
    pub fn objects(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for root in &self.roots {
            let base = root.join("objects");
            walk(&base, &base, &mut out);
        }
        out
    }

    /// Move a verified, fsynced download into place, durably.
    pub fn commit(&self, root: usize, sha: &str, key: &str) -> io::Result<()> {
        let to = self.object_path(root, key);
        let dir = to.parent().unwrap_or(&self.roots[root]);
        std::fs::create_dir_all(dir)?;
        std::fs::rename(self.partial_path(root, sha), &to)?;
        // The rename is durable only once the directory is.
        std::fs::File::open(dir)?.sync_all()
    }

    /// Delete a committed object wherever it is; true if something was removed.
    pub fn remove(&self, key: &str) -> io::Result<bool> {
        let mut removed = false;
        for r in 0..self.roots.len() {
            match std::fs::remove_file(self.object_path(r, key)) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<(String, u64)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(t) = e.file_type() else { continue };
        let p = e.path();
        if t.is_dir() {
            walk(base, &p, out);
        } else if t.is_file()
            && let (Ok(rel), Ok(m)) = (p.strip_prefix(base), e.metadata())
            && let Some(k) = rel.to_str()
        {
            out.push((k.to_owned(), m.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_hashes_from_a_plan_are_checked_before_touching_disk() {
        for good in ["titles/t1/v1/seg-1.m4s", "a"] {
            assert!(safe_key(good), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "a//b",
            "./a",
            "a b",
            "a\\b",
            "a/..",
        ] {
            assert!(!safe_key(bad), "{bad}");
        }
        assert!(safe_sha(&"ab".repeat(32)));
        assert!(!safe_sha("../x"));
    }

    #[test]
    fn only_roots_with_the_layout_and_if_required_a_mount_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = Disks::new(vec![dir.path().to_owned()]);
        assert!(!d.writable(0), "no objects/: not a disk oca has seen");
        std::fs::create_dir(dir.path().join("objects")).unwrap();
        assert!(d.writable(0));
        assert_eq!(d.pick_root(0.0), Some(0));
        // A temp directory is not a mount point: an unmounted disk looks so.
        let d = d.requiring_mounts(true);
        assert!(!d.writable(0));
        assert_eq!(d.pick_root(0.0), None);
        assert_eq!(d.room(0.0), 0);
        // `/` is a mount point.
        assert!(
            Disks::new(vec!["/".into()])
                .requiring_mounts(true)
                .writable(0)
                == std::path::Path::new("/objects").is_dir()
        );
    }

    #[test]
    fn commit_moves_a_partial_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let d = Disks::new(vec![dir.path().to_owned()]);
        let sha = "00".repeat(32);
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(d.partial_path(0, &sha), b"bytes").unwrap();
        assert_eq!(d.partial(&sha), Some((0, 5)));
        assert_eq!(d.present("t/r/x"), None);
        d.commit(0, &sha, "t/r/x").unwrap();
        assert_eq!(d.present("t/r/x"), Some(5));
        assert_eq!(d.partial(&sha), None);
        assert_eq!(d.objects(), vec![("t/r/x".to_owned(), 5)]);
        assert!(d.remove("t/r/x").unwrap());
        assert!(!d.remove("t/r/x").unwrap());
        // No headroom: the test machine's disk may be fuller than 90%.
        assert!(d.room(0.0) > 0);
        assert_eq!(d.pick_root(0.0), Some(0));
    }
}
