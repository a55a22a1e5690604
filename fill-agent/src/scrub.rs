//! Scrubbing: committed objects are read back, slowly, and checked against the
//! plan's SHA-256, so a file damaged on disk with its size intact (bit rot, a
//! stray write) is found, moved aside and fetched again. (oca itself checks
//! sizes on every open; only the plan knows the hashes.)

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ring::digest;
use tokio::sync::watch;

use crate::agent::Agent;
use crate::disk;

/// Read committed planned objects back at `scrub_rate_bps`, one at a time in
/// plan order, round and round: a damaged one is quarantined, oca is told
/// (it stops serving and reporting it), and the next pass fetches it again.
pub(crate) async fn run(agent: Arc<Agent>, mut stop: watch::Receiver<bool>) {
    let rate = agent.cfg.scrub_rate_bps;
    if rate == 0 {
        return;
    }
    let (mut objects, mut cursor) = (Vec::new(), 0usize);
    loop {
        if cursor >= objects.len() {
            // A whole round done (or nothing to check yet): rest, then start
            // over with the newest plan.
            if !objects.is_empty() {
                agent.set(|s| s.scrub_rounds += 1);
            }
            tokio::select! {
                _ = tokio::time::sleep(agent.cfg.poll_interval) => {}
                _ = stop.changed() => return,
            }
            objects = agent
                .control
                .cached_fill_plan()
                .map(|p| {
                    p.items
                        .into_iter()
                        .flat_map(|i| i.objects)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            cursor = 0;
            continue;
        }
        let obj = objects[cursor].clone();
        cursor += 1;
        if !disk::safe_key(&obj.key) || !disk::safe_sha(&obj.sha256) {
            continue;
        }
        let Some((root, _)) = agent.disks.locate(&obj.key) else {
            continue;
        };
        let path = agent.disks.object_path(root, &obj.key);
        let (size, sha) = (obj.size, obj.sha256.clone());
        let check = tokio::task::spawn_blocking(move || verify(&path, size, &sha, rate));
        let verdict = tokio::select! {
            r = check => r,
            _ = stop.changed() => return,
        };
        match verdict {
            Ok(Ok(true)) => {
                agent.metrics.scrub_bytes.inc_by(obj.size);
                agent.set(|s| {
                    s.scrub_objects += 1;
                    s.scrub_bytes += obj.size;
                });
            }
            Ok(Ok(false)) => {
                agent.metrics.scrub_damaged.inc();
                agent.set(|s| s.scrub_damaged += 1);
                match quarantine(&agent.disks.roots[root], &obj.key) {
                    Ok(to) => tracing::error!(
                        key = %obj.key, to = %to.display(),
                        "damaged object (hash mismatch) quarantined; it will be fetched again"
                    ),
                    Err(e) => {
                        tracing::error!(key = %obj.key, error = %e, "damaged object could not be quarantined; removing it");
                        let _ = agent.disks.remove(&obj.key);
                    }
                }
                agent.tell_oca(&obj.key).await;
            }
            // Gone meanwhile (evicted, or oca quarantined it): nothing to check.
            Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
            Ok(Err(e)) => tracing::warn!(key = %obj.key, error = %e, "cannot read an object back"),
            Err(e) => tracing::warn!(error = %e, "scrub task failed"),
        }
    }
}

/// Whether the file at `path` is exactly `size` bytes hashing to `sha256`
/// (lowercase hex), reading at most `rate_bps` bits per second.
pub fn verify(path: &Path, size: u64, sha256: &str, rate_bps: u64) -> io::Result<bool> {
    let mut file = std::fs::File::open(path)?;
    if file.metadata()?.len() != size {
        return Ok(false);
    }
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut buf = vec![0u8; 1 << 20];
    let started = Instant::now();
    let mut read = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        read += n as u64;
        // Pace to the rate: never ahead of `read` bytes at `rate_bps`.
        let due = Duration::from_secs_f64(read as f64 * 8.0 / rate_bps.max(1) as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    Ok(read == size && hex::encode(hash.finish()) == sha256)
}

/// Move `<root>/objects/<key>` to `<root>/quarantine/<unix time>-<key>` (slashes
/// as `%2F`), where an operator can look at it; the same place oca uses.
pub fn quarantine(root: &Path, key: &str) -> io::Result<PathBuf> {
    let dir = root.join("quarantine");
    std::fs::create_dir_all(&dir)?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let to = dir.join(format!("{stamp}-{}", key.replace('/', "%2F")));
    std::fs::rename(root.join("objects").join(key), &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_byte_or_size_fails_and_the_original_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects/t/a.m4s");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let sha = hex::encode(digest::digest(&digest::SHA256, &bytes));
        let fast = u64::MAX / 16;
        assert!(verify(&path, bytes.len() as u64, &sha, fast).unwrap());
        assert!(!verify(&path, bytes.len() as u64 + 1, &sha, fast).unwrap());
        let mut bad = bytes.clone();
        bad[123_456] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(!verify(&path, bytes.len() as u64, &sha, fast).unwrap());

        let to = quarantine(dir.path(), "t/a.m4s").unwrap();
        assert!(!path.exists());
        assert!(to.ends_with(to.file_name().unwrap()));
        assert!(
            to.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with("-t%2Fa.m4s")
        );
    }

    #[test]
    fn reading_is_paced_to_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes = vec![1u8; 2 << 20];
        std::fs::write(&path, &bytes).unwrap();
        let sha = hex::encode(digest::digest(&digest::SHA256, &bytes));
        let started = Instant::now();
        // 2 MiB at 40 Mbit/s: about 0.42 s.
        assert!(verify(&path, bytes.len() as u64, &sha, 40_000_000).unwrap());
        assert!(started.elapsed() >= Duration::from_millis(380));
    }
}
