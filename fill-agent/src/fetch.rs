//! Downloading one object from one source: resume with Range, stream to the
//! partial file under the global rate cap, hash as it arrives, judge the
//! source's throughput, verify size and SHA-256, fsync, commit.

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_client::wire::{FillObject, FillSource};
use ring::digest;

use crate::disk::Disks;
use crate::rate::Bucket;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("source unreachable: {0}")]
    Unreachable(String),
    #[error("source answered HTTP {0}")]
    Status(u16),
    #[error("transfer failed: {0}")]
    Transfer(String),
    #[error("source too slow: {bps} bit/s")]
    Slow { bps: u64 },
    #[error("corrupt: {0}")]
    Corrupt(String),
    #[error("disk: {0}")]
    Disk(#[from] io::Error),
}

impl FetchError {
    /// Whether the source is to blame (and should be skipped for a while).
    pub fn blames_source(&self) -> bool {
        !matches!(self, FetchError::Disk(_))
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            FetchError::Unreachable(_) | FetchError::Status(_) | FetchError::Transfer(_) => {
                "failed"
            }
            FetchError::Slow { .. } => "slow",
            FetchError::Corrupt(_) => "corrupt",
            FetchError::Disk(_) => "disk",
        }
    }
}

/// What every download shares.
pub struct Shared {
    pub http: reqwest::Client,
    pub bucket: Mutex<Bucket>,
    pub min_throughput_bps: u64,
    pub slow_grace: Duration,
    /// Bytes received this run (all sources), for progress and the rate.
    pub received: AtomicU64,
}

/// The outcome of a good fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Bytes transferred this time (less than the size when resumed).
    pub transferred: u64,
    pub resumed_from: u64,
}

/// Fetch `obj` from `src` into root `root` and commit it.
pub async fn fetch(
    shared: &Arc<Shared>,
    disks: &Disks,
    root: usize,
    src: &FillSource,
    obj: &FillObject,
) -> Result<Fetched, FetchError> {
    let part_path = disks.partial_path(root, &obj.sha256);
    std::fs::create_dir_all(part_path.parent().unwrap_or(&disks.roots[root]))?;
    let mut have = std::fs::metadata(&part_path).map_or(0, |m| m.len());
    if have > obj.size {
        std::fs::remove_file(&part_path)?;
        have = 0;
    }
    // Resuming: the bytes already there are hashed again (cheap next to
    // fetching them) so the final check covers the whole object.
    let mut hash = digest::Context::new(&digest::SHA256);
    if have > 0 {
        blocking(|| hash_prefix(&part_path, have, &mut hash))?;
    }
    let resumed_from = have;
    let mut transferred = 0u64;
    if have < obj.size {
        let url = format!("{}{}", src.base_url, obj.key);
        let mut req = shared.http.get(&url);
        if have > 0 {
            req = req.header(reqwest::header::RANGE, format!("bytes={have}-"));
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let append = match (status, have) {
            (206, h) if h > 0 => true,
            (200, _) => false,
            (416, _) => {
                // What we hold is not a prefix the source recognises: start over.
                std::fs::remove_file(&part_path)?;
                return Err(FetchError::Status(416));
            }
            (s, _) => return Err(FetchError::Status(s)),
        };
        if !append && have > 0 {
            have = 0;
            hash = digest::Context::new(&digest::SHA256);
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&part_path)?;
        let started = Instant::now();
        // Time spent pausing for our own rate cap is not the source's slowness.
        let mut paused = Duration::ZERO;
        // Received bytes are written and hashed in batches off the async
        // workers, so one download waiting on the disk does not stall the others.
        let mut pending: Vec<u8> = Vec::with_capacity(FLUSH_AT + 64 * 1024);
        let mut flush = |pending: &mut Vec<u8>, file: &mut std::fs::File| -> io::Result<()> {
            if pending.is_empty() {
                return Ok(());
            }
            blocking(|| {
                file.write_all(pending)?;
                hash.update(pending);
                Ok::<_, io::Error>(())
            })?;
            // Counted once on disk: a crash never loses counted bytes.
            shared
                .received
                .fetch_add(pending.len() as u64, Ordering::Relaxed);
            pending.clear();
            Ok(())
        };
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| FetchError::Transfer(e.to_string()))?
        {
            let n = chunk.len() as u64;
            if have + n > obj.size {
                drop(file);
                std::fs::remove_file(&part_path)?;
                return Err(FetchError::Corrupt(format!(
                    "more than the planned {} bytes",
                    obj.size
                )));
            }
            pending.extend_from_slice(&chunk);
            if pending.len() >= FLUSH_AT {
                flush(&mut pending, &mut file)?;
            }
            have += n;
            transferred += n;
            let pause = shared
                .bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .take(n, Instant::now());
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
                paused += pause;
            }
            let elapsed = started.elapsed().saturating_sub(paused);
            if elapsed > shared.slow_grace {
                let bps = (transferred as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
                if bps < shared.min_throughput_bps {
                    // Keep what arrived: the next source resumes from it.
                    flush(&mut pending, &mut file)?;
                    blocking(|| file.sync_data())?;
                    return Err(FetchError::Slow { bps });
                }
            }
        }
        flush(&mut pending, &mut file)?;
        blocking(|| file.sync_all())?;
    }
    if have != obj.size {
        return Err(FetchError::Transfer(format!(
            "ended at {have} of {} bytes",
            obj.size
        )));
    }
    let got = hex::encode(hash.finish());
    if got != obj.sha256 {
        // Discarded whole: which bytes were bad is unknowable.
        std::fs::remove_file(&part_path)?;
        return Err(FetchError::Corrupt(format!(
            "SHA-256 {got}, expected {}",
            obj.sha256
        )));
    }
    blocking(|| disks.commit(root, &obj.sha256, &obj.key))?;
    Ok(Fetched {
        transferred,
        resumed_from,
    })
}

/// Write and hash in batches of this many bytes.
const FLUSH_AT: usize = 256 * 1024;

/// Run blocking file work without stalling the other tasks of this worker
/// (on a current-thread runtime, as in unit tests, just run it).
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn hash_prefix(path: &std::path::Path, len: u64, hash: &mut digest::Context) -> io::Result<()> {
    let mut f = std::fs::File::open(path)?.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hash.update(&buf[..n]);
    }
}
