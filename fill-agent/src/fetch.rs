//! Downloading one object from one source: resume with Range, stream to the
//! partial file under the global rate cap (written and hashed on a disk
//! thread, `diskio`), judge the source's throughput, verify size and SHA-256,
//! fsync, commit.

use std::io::{self, Read};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use control_client::wire::{FillObject, FillSource};
use ring::digest;

use crate::disk::Disks;
use crate::diskio::{DiskIo, Sink, SyncMode};
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
    pub http: crate::transfer::Transfers,
    pub bucket: Mutex<Bucket>,
    pub min_throughput_bps: u64,
    pub slow_grace: Duration,
    /// Bytes received this run (all sources) and on disk, for progress and
    /// the rate.
    pub received: Arc<AtomicU64>,
    /// How the disk threads reach the disks.
    pub disk_io: DiskIo,
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
    let resumed_from = have;
    let mut transferred = 0u64;
    let digest = if have < obj.size {
        let url = format!("{}{}", src.base_url, obj.key);
        let mut resp = shared
            .http
            .get(&url, have)
            .await
            .map_err(FetchError::Unreachable)?;
        let status = resp.status;
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
        if !append {
            have = 0;
        }
        // Resuming: the bytes already there are hashed again (cheap next to
        // fetching them) so the final check covers the whole object.
        let hash = if have > 0 {
            let path = part_path.clone();
            tokio::task::spawn_blocking(move || hash_prefix(&path, have))
                .await
                .map_err(io::Error::other)??
        } else {
            digest::Context::new(&digest::SHA256)
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(!append)
            .open(&part_path)?;
        let mut sink = shared
            .disk_io
            .sink(file, have, hash, shared.received.clone());
        match receive(
            shared,
            &mut resp,
            &mut sink,
            obj.size,
            &mut have,
            &mut transferred,
        )
        .await
        {
            Ok(()) => sink.finish(SyncMode::All).await?,
            Err(e @ FetchError::Slow { .. }) => {
                // Keep what arrived: the next source resumes from it.
                sink.finish(SyncMode::Data).await?;
                return Err(e);
            }
            Err(e) => {
                sink.abandon().await;
                if matches!(e, FetchError::Corrupt(_)) {
                    std::fs::remove_file(&part_path)?;
                }
                return Err(e);
            }
        }
    } else {
        let path = part_path.clone();
        tokio::task::spawn_blocking(move || hash_prefix(&path, have))
            .await
            .map_err(io::Error::other)??
            .finish()
    };
    if have != obj.size {
        return Err(FetchError::Transfer(format!(
            "ended at {have} of {} bytes",
            obj.size
        )));
    }
    let got = hex::encode(digest);
    if got != obj.sha256 {
        // Discarded whole: which bytes were bad is unknowable.
        std::fs::remove_file(&part_path)?;
        return Err(FetchError::Corrupt(format!(
            "SHA-256 {got}, expected {}",
            obj.sha256
        )));
    }
    shared
        .disk_io
        .commit(part_path, disks.object_path(root, &obj.key))
        .await?;
    Ok(Fetched {
        transferred,
        resumed_from,
    })
}

/// Stream the body into `sink` under the rate cap, judging the source's
/// pace: `have` and `transferred` count what arrived.
async fn receive(
    shared: &Shared,
    resp: &mut crate::transfer::Response,
    sink: &mut Sink,
    size: u64,
    have: &mut u64,
    transferred: &mut u64,
) -> Result<(), FetchError> {
    let started = Instant::now();
    // Time spent pausing for our own rate cap is not the source's slowness.
    let mut paused = Duration::ZERO;
    while let Some(chunk) = resp.chunk().await.map_err(FetchError::Transfer)? {
        let n = chunk.len() as u64;
        if *have + n > size {
            return Err(FetchError::Corrupt(format!(
                "more than the planned {size} bytes"
            )));
        }
        sink.push(&chunk).await?;
        *have += n;
        *transferred += n;
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
            let bps = (*transferred as f64 * 8.0 / elapsed.as_secs_f64()) as u64;
            if bps < shared.min_throughput_bps {
                return Err(FetchError::Slow { bps });
            }
        }
    }
    Ok(())
}

/// The SHA-256 context over the first `len` bytes of `path`.
fn hash_prefix(path: &std::path::Path, len: u64) -> io::Result<digest::Context> {
    let mut hash = digest::Context::new(&digest::SHA256);
    let mut f = std::fs::File::open(path)?.take(len);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hash);
        }
        hash.update(&buf[..n]);
    }
}
