//! Where downloads meet the disk: appending to a partial file, hashing,
//! fsyncs and the commit's rename, all on disk threads of their own (tokio's
//! blocking pool), never on the async workers that receive the bytes: a
//! download waiting for the disk stalls no other, and one object's hashing
//! overlaps its own transfer (and others' hashing, on other cores).
//!
//! Two ways to the disk, chosen once at start (`disk_io`):
//! - **threads** (the default): `pwrite(2)`, `fsync(2)` and `rename(2)` on
//!   the disk threads, one at a time;
//! - **io_uring** (`io_uring` or `auto`): each disk thread has a ring; it
//!   queues a batch's write and hashes the next batch while the kernel
//!   writes, keeps up to [`crate::sys::DEPTH`] writes in flight, links the
//!   last write to the file's fsync, and the commit's rename to the
//!   directory's fsync. Measured side by side (docs/BENCHMARKS.md, fill) it
//!   was not ahead of blocking calls (buffered writes that cannot complete
//!   at once go to io_uring's kernel workers anyway), so it is not the
//!   default.
//!
//! A kernel without io_uring, a seccomp filter or `kernel.io_uring_disabled`
//! that refuses it, or one without the operations used, means threads, said
//! once in the log. Registered buffers
//! are not used: the bytes arrive in buffers the HTTP client owns and are
//! copied once into a batch, and buffered writes copy them into the page
//! cache; a registered buffer would only add a copy.

use std::cell::RefCell;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ring::digest;
use tokio::sync::mpsc;

use crate::sys::Ring;

/// What the configuration asks for (`disk_io`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskIoChoice {
    /// io_uring where the kernel allows it, else threads.
    Auto,
    /// Try io_uring (falling back as `auto` does, and saying so).
    IoUring,
    /// Blocking calls on the disk threads: the default, the simpler way,
    /// which io_uring did not beat side by side (docs/BENCHMARKS.md, fill).
    #[default]
    Threads,
}

/// How this agent reaches its disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskIo {
    Uring,
    Threads,
}

/// Bytes handed to a disk thread at once.
pub const BATCH: usize = 256 * 1024;
/// Batches queued per download before its receiver waits.
const QUEUE: usize = 4;
/// Idle batch buffers kept for the next batch, whichever download it is
/// (16 MiB): enough for several downloads' queues.
const POOL_MAX: usize = 64;

/// Batch buffers shared by every download. Filling a used buffer again
/// costs no allocation and no page faults (fresh 256 KiB buffers per batch
/// cost measurably more CPU under memory pressure), and one pool for the
/// process keeps the memory in use flat: per-download buffers freed on
/// whichever disk thread ran them spread over glibc's per-thread arenas and
/// made the resident size creep up as the blocking pool's threads came and
/// went (the lab's soak saw it).
static POOL: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// An empty buffer of `BATCH` capacity, from the pool when it has one.
fn take_buffer() -> Vec<u8> {
    let spare = POOL.lock().map(|mut p| p.pop()).unwrap_or(None);
    match spare {
        Some(mut b) => {
            b.clear();
            b
        }
        None => Vec::with_capacity(BATCH),
    }
}

/// Keep `b` for a later batch, unless the pool is full.
fn give_back(b: Vec<u8>) {
    if b.capacity() < BATCH {
        return;
    }
    if let Ok(mut p) = POOL.lock()
        && p.len() < POOL_MAX
    {
        p.push(b);
    }
}

impl DiskIo {
    /// Decide from the configuration and what the kernel allows.
    pub fn select(choice: DiskIoChoice) -> DiskIo {
        if choice == DiskIoChoice::Threads {
            return DiskIo::Threads;
        }
        match Ring::new() {
            Ok(_) => {
                tracing::info!("disk writes, fsyncs and renames through io_uring");
                DiskIo::Uring
            }
            Err(e) => {
                unavailable(&e);
                DiskIo::Threads
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DiskIo::Uring => "io_uring",
            DiskIo::Threads => "threads",
        }
    }

    /// Start appending to `file` at `offset` (its length), the hash so far
    /// in `hash`; bytes written are added to `written` as they land.
    pub fn sink(
        self,
        file: File,
        offset: u64,
        hash: digest::Context,
        written: Arc<AtomicU64>,
    ) -> Sink {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::task::spawn_blocking(move || {
            let mut w = Writer::new(self, file, offset, written);
            disk_thread(&mut w, rx, hash)
        });
        Sink {
            tx,
            task,
            batch: take_buffer(),
        }
    }

    /// Move the verified, fsynced partial `from` to `to` and make that
    /// durable (fsync of `to`'s directory), on a disk thread.
    pub async fn commit(self, from: PathBuf, to: PathBuf) -> io::Result<()> {
        tokio::task::spawn_blocking(move || {
            let dir = to.parent().map(Path::to_path_buf).unwrap_or_default();
            std::fs::create_dir_all(&dir)?;
            let dir = File::open(&dir)?;
            if self == DiskIo::Uring
                && let Some(r) = with_ring(|ring| ring.rename_durably(&from, &to, &dir))
            {
                return r;
            }
            std::fs::rename(&from, &to)?;
            dir.sync_all()
        })
        .await
        .map_err(io::Error::other)?
    }
}

/// Said once per process: io_uring is not to be had, and why.
fn unavailable(e: &io::Error) {
    static SAID: AtomicBool = AtomicBool::new(false);
    if !SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "io_uring unavailable; disk writes use blocking calls on disk threads");
    }
}

thread_local! {
    /// This disk thread's ring, made on first use.
    static RING: RefCell<Option<Ring>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's ring; `None` if it cannot have one (said once).
fn with_ring<R>(f: impl FnOnce(&mut Ring) -> R) -> Option<R> {
    RING.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            match Ring::new() {
                Ok(r) => *slot = Some(r),
                Err(e) => {
                    unavailable(&e);
                    return None;
                }
            }
        }
        slot.as_mut().map(f)
    })
}

/// How a download ends on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// All of it (`fsync`): it is about to be verified and committed.
    All,
    /// Its data (`fdatasync`): kept to resume from later.
    Data,
}

enum Msg {
    Bytes(Vec<u8>),
    End(SyncMode),
}

/// One download's bytes on their way to its partial file: batched here, on
/// the async side, written and hashed on a disk thread.
pub struct Sink {
    tx: mpsc::Sender<Msg>,
    task: tokio::task::JoinHandle<io::Result<digest::Digest>>,
    batch: Vec<u8>,
}

impl Sink {
    /// Append `bytes`. Waits only when the disk thread is `QUEUE` batches
    /// behind; an error is the disk thread's (a failed write).
    pub async fn push(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.batch.extend_from_slice(bytes);
        if self.batch.len() >= BATCH {
            let full = std::mem::replace(&mut self.batch, take_buffer());
            if self.tx.send(Msg::Bytes(full)).await.is_err() {
                return Err(self.failure().await);
            }
        }
        Ok(())
    }

    /// Write what is left, sync as `sync` says, and return the hash of the
    /// whole file.
    pub async fn finish(mut self, sync: SyncMode) -> io::Result<digest::Digest> {
        let rest = std::mem::take(&mut self.batch);
        if !rest.is_empty() && self.tx.send(Msg::Bytes(rest)).await.is_err() {
            return Err(self.failure().await);
        }
        if self.tx.send(Msg::End(sync)).await.is_err() {
            return Err(self.failure().await);
        }
        drop(self.tx);
        self.task.await.map_err(io::Error::other)?
    }

    /// Stop without syncing: what was handed over is written (a later
    /// attempt resumes from it), then the disk thread ends.
    pub async fn abandon(self) {
        let Sink { tx, task, batch } = self;
        give_back(batch);
        drop(tx);
        let _ = task.await;
    }

    /// Why the disk thread stopped taking bytes.
    async fn failure(&mut self) -> io::Error {
        match (&mut self.task).await {
            Ok(Err(e)) => e,
            Ok(Ok(_)) => io::Error::other("the disk thread ended early"),
            Err(e) => io::Error::other(e),
        }
    }
}

/// The disk thread of one download. After a failure nothing of it stays
/// queued in the thread's ring (the next download on this thread gets a
/// clean one).
fn disk_thread(
    w: &mut Writer,
    rx: mpsc::Receiver<Msg>,
    hash: digest::Context,
) -> io::Result<digest::Digest> {
    let r = receive(w, rx, hash);
    if w.io == DiskIo::Uring {
        let _ = with_ring(|ring| {
            if r.is_err() {
                let _ = ring.drain();
                w.count(ring.take_written());
            }
            // Nothing stays with this thread's ring between downloads.
            while let Some(b) = ring.take_spare() {
                give_back(b);
            }
        });
    }
    r
}

fn receive(
    w: &mut Writer,
    mut rx: mpsc::Receiver<Msg>,
    mut hash: digest::Context,
) -> io::Result<digest::Digest> {
    while let Some(msg) = rx.blocking_recv() {
        match msg {
            Msg::Bytes(b) => {
                // Hash first: with io_uring the write then runs while this
                // thread waits for (and hashes) the next batch.
                hash.update(&b);
                w.write(b)?;
            }
            Msg::End(sync) => {
                w.sync(sync)?;
                return Ok(hash.finish());
            }
        }
    }
    // Abandoned: let queued writes land, keep no ring state about them.
    w.settle()?;
    Ok(hash.finish())
}

/// Appends batches to one file, through this thread's ring or `pwrite`.
struct Writer {
    io: DiskIo,
    file: Arc<File>,
    offset: u64,
    written: Arc<AtomicU64>,
    /// The latest batch, held back so the end can link it to the fsync.
    held: Option<Vec<u8>>,
}

impl Writer {
    fn new(io: DiskIo, file: File, offset: u64, written: Arc<AtomicU64>) -> Writer {
        Writer {
            io,
            file: Arc::new(file),
            offset,
            written,
            held: None,
        }
    }

    fn write(&mut self, batch: Vec<u8>) -> io::Result<()> {
        if let Some(prev) = self.held.replace(batch) {
            self.emit(prev)?;
        }
        Ok(())
    }

    /// Write `batch` at the current offset.
    fn emit(&mut self, batch: Vec<u8>) -> io::Result<()> {
        let len = batch.len() as u64;
        let at = self.offset;
        self.offset += len;
        // The batch moves into the ring; it is still here if there is none.
        let mut batch = Some(batch);
        if self.io == DiskIo::Uring
            && let Some(r) = with_ring(|ring| {
                let b = batch.take().unwrap_or_default();
                let r = ring.queue_write(&self.file, b, at);
                while let Some(b) = ring.take_spare() {
                    give_back(b);
                }
                (r, ring.take_written())
            })
        {
            self.count(r.1);
            return r.0;
        }
        let batch = batch.unwrap_or_default();
        self.file.write_all_at(&batch, at)?;
        self.count(len);
        give_back(batch);
        Ok(())
    }

    fn sync(&mut self, sync: SyncMode) -> io::Result<()> {
        let tail = self.held.take().unwrap_or_default();
        let at = self.offset;
        self.offset += tail.len() as u64;
        let len = tail.len() as u64;
        let data_only = sync == SyncMode::Data;
        let mut tail = Some(tail);
        if self.io == DiskIo::Uring
            && let Some(r) = with_ring(|ring| {
                let t = tail.take().unwrap_or_default();
                let r = ring.write_and_sync(&self.file, t, at, data_only);
                (r, ring.take_written())
            })
        {
            self.count(r.1);
            return r.0;
        }
        let tail = tail.unwrap_or_default();
        self.file.write_all_at(&tail, at)?;
        self.count(len);
        give_back(tail);
        if data_only {
            self.file.sync_data()
        } else {
            self.file.sync_all()
        }
    }

    /// Write what is held and wait for every queued write.
    fn settle(&mut self) -> io::Result<()> {
        if let Some(b) = self.held.take() {
            self.emit(b)?;
        }
        if self.io == DiskIo::Uring
            && let Some(r) = with_ring(|ring| (ring.drain(), ring.take_written()))
        {
            self.count(r.1);
            return r.0;
        }
        Ok(())
    }

    fn count(&self, n: u64) {
        self.written.fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_pool_hands_out_empty_batches_and_stays_bounded() {
        let mut b = take_buffer();
        assert!(b.is_empty() && b.capacity() >= BATCH);
        b.extend_from_slice(&[7; 1000]);
        give_back(b);
        // A used buffer comes back empty, whoever took it before.
        assert!(take_buffer().is_empty());
        for _ in 0..POOL_MAX + 10 {
            give_back(Vec::with_capacity(BATCH));
        }
        // Too small to be a batch: not kept.
        give_back(Vec::with_capacity(16));
        let pool = POOL.lock().unwrap();
        assert!(pool.len() <= POOL_MAX);
        assert!(pool.iter().all(|b| b.capacity() >= BATCH));
    }
}
