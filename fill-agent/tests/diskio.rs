//! The fill agent's disk path on real filesystems, through io_uring and
//! through blocking calls: bytes and hashes right, a full disk (short writes,
//! then ENOSPC) and a failing fsync reported as errors, never as success, and
//! never with other bytes than those sent. Mounts need root, as the e2e tests
//! do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fill_agent::diskio::{BATCH, DiskIo, DiskIoChoice, SyncMode};
use ring::digest;

fn both() -> Vec<DiskIo> {
    let uring = DiskIo::select(DiskIoChoice::IoUring);
    assert_eq!(
        uring,
        DiskIo::Uring,
        "this kernel offers io_uring; the tests measure both paths"
    );
    vec![DiskIo::Uring, DiskIo::Threads]
}

/// Deterministic bytes, not a repeating pattern (a misplaced batch shows).
fn data(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Push `bytes` in uneven chunks through a sink on `io` into `path`, after
/// `prefix` bytes already there; the outcome of the first failure or of
/// the end.
async fn write(
    io: DiskIo,
    path: &Path,
    prefix: &[u8],
    bytes: &[u8],
    sync: SyncMode,
) -> (std::io::Result<digest::Digest>, u64) {
    std::fs::write(path, prefix).unwrap();
    let mut hash = digest::Context::new(&digest::SHA256);
    hash.update(prefix);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let written = Arc::new(AtomicU64::new(0));
    let mut sink = io.sink(file, prefix.len() as u64, hash, written.clone());
    for chunk in bytes.chunks(70_001) {
        if let Err(e) = sink.push(chunk).await {
            return (Err(e), written.load(Ordering::Relaxed));
        }
    }
    let r = sink.finish(sync).await;
    (r, written.load(Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_paths_write_resume_hash_and_commit() {
    let dir = tempfile::tempdir().unwrap();
    for io in both() {
        let all = data(3_000_000);
        let (prefix, rest) = all.split_at(123_457);
        let part = dir.path().join(format!("{}.part", io.name()));
        let (r, written) = write(io, &part, prefix, rest, SyncMode::All).await;
        let got = r.unwrap();
        assert_eq!(got.as_ref(), digest::digest(&digest::SHA256, &all).as_ref());
        assert_eq!(written, rest.len() as u64, "{}", io.name());
        assert_eq!(std::fs::read(&part).unwrap(), all, "{}", io.name());
        // The commit: renamed into a directory made for it, durably.
        let to = dir.path().join(io.name()).join("titles/t/seg.m4s");
        io.commit(part.clone(), to.clone()).await.unwrap();
        assert!(!part.exists());
        assert_eq!(std::fs::read(&to).unwrap(), all);
        // A commit of something that is not there fails, and says why.
        let e = io.commit(part.clone(), to.clone()).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{}", io.name());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_download_keeps_exactly_what_was_handed_over() {
    let dir = tempfile::tempdir().unwrap();
    for io in both() {
        let path = dir.path().join(io.name());
        std::fs::write(&path, b"").unwrap();
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let bytes = data(1_000_000);
        let hash = digest::Context::new(&digest::SHA256);
        let mut sink = io.sink(file, 0, hash, Arc::new(AtomicU64::new(0)));
        sink.push(&bytes).await.unwrap();
        sink.abandon().await;
        // What was handed to the disk thread (whole batches) is there and
        // right; the batch still being filled was not handed over.
        let kept = std::fs::read(&path).unwrap();
        assert!(
            !kept.is_empty() && kept.len() <= bytes.len(),
            "{}",
            io.name()
        );
        assert_eq!(kept, bytes[..kept.len()], "{}", io.name());
    }
}

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted on drop.
struct Mount {
    dir: tempfile::TempDir,
    loops: Vec<PathBuf>,
    mounts: Vec<PathBuf>,
}

impl Mount {
    fn tmpfs(bytes: u64) -> Mount {
        let dir = tempfile::tempdir().unwrap();
        let m = Mount {
            dir,
            loops: Vec::new(),
            mounts: Vec::new(),
        };
        m.mount_tmpfs(m.dir.path(), bytes);
        m
    }

    fn mount_tmpfs(&self, at: &Path, bytes: u64) {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(at));
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let umount = |at: &Path| {
            let ok = Command::new("umount")
                .arg(at)
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(at).status();
            }
        };
        for m in self.mounts.iter().rev() {
            umount(m);
        }
        for l in &self.loops {
            let _ = Command::new("losetup").arg("-d").arg(l).status();
        }
        umount(self.dir.path());
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} (needs root): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_an_error_and_what_fitted_is_the_right_bytes() {
    for io in both() {
        let m = Mount::tmpfs(1 << 20);
        let path = m.path().join("part");
        // A prefix that is no whole number of batches: the write that
        // reaches the end of the space is short, the next one fails.
        let all = data(3 << 20);
        let (prefix, rest) = all.split_at(100_000);
        let (r, written) = write(io, &path, prefix, rest, SyncMode::All).await;
        let e = r.expect_err("3 MiB do not fit in 1 MiB");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{}: {e}", io.name());
        // Nothing after the short write was written, nothing before it lost.
        let kept = std::fs::read(&path).unwrap();
        assert!(kept.len() > (1 << 19), "{}: {}", io.name(), kept.len());
        assert_eq!(kept, all[..kept.len()], "{}", io.name());
        let landed = (kept.len() - prefix.len()) as u64;
        assert!(
            written <= landed && landed - written < BATCH as u64,
            "{}: {written} counted, {landed} landed",
            io.name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_fsync_is_an_error() {
    // ext4 on a loop device whose backing file sits on a tmpfs too small for
    // it: writes land in the page cache, writeback fails, fsync says EIO.
    let mut m = Mount::tmpfs(24 << 20);
    let image = m.path().join("disk.img");
    run(Command::new("truncate").args(["-s", "256M"]).arg(&image));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-O", "^has_journal", "-E", "nodiscard"])
        .arg(&image));
    let dev = PathBuf::from(run(Command::new("losetup")
        .args(["--find", "--show"])
        .arg(&image)));
    m.loops.push(dev.clone());
    let fs = m.path().join("fs");
    std::fs::create_dir(&fs).unwrap();
    run(Command::new("mount")
        .args(["-o", "errors=continue"])
        .arg(&dev)
        .arg(&fs));
    m.mounts.push(fs.clone());
    for io in both() {
        let path = fs.join(io.name());
        let bytes = data(64 << 20);
        let (r, _) = write(io, &path, b"", &bytes, SyncMode::All).await;
        let e = r.expect_err("the fsync cannot succeed");
        assert!(
            matches!(e.raw_os_error(), Some(libc::EIO | libc::ENOSPC)),
            "{}: {e}",
            io.name()
        );
    }
}
