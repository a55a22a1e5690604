//! Cold reads: bringing a window of a file that is not in the page cache into
//! it, off the serving threads, without letting cold work crowd out hot
//! viewers.
//!
//! Every connection's cold windows go to one queue, in arrival order, and a
//! fixed number of loaders serve it: that bounds the cold IO however many
//! cold clients there are. The loaders run at `cold_nice` (0 by default;
//! above it hot requests win the CPU, at a cost to cold throughput).
//!
//! - `threads` (the default): `cold_threads` threads, each loading a whole
//!   window with `sendfile(2)` to /dev/null, so the kernel reads the pages
//!   into the cache and no byte is copied to user space. Measured side by
//!   side, this gave cold clients more throughput than the io_uring reads,
//!   which must copy every byte into a buffer that is then thrown away
//!   (docs/DISK-PATHS.md).
//! - `io_uring`: one thread splits each window into [`sys::READ_PIECE`] reads
//!   and keeps at most [`sys::READ_DEPTH`] of them in flight; the kernel's
//!   io_uring workers inherit its priority. Where io_uring is not to be had
//!   (an old kernel, `kernel.io_uring_disabled`, a seccomp filter), threads
//!   serve the queue, said once in the log.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::Arc;
use std::sync::mpsc;

use prometheus_client::metrics::counter::Counter;
use tokio::sync::oneshot;

use crate::sys;

/// A window to load, and who waits for it.
struct Job {
    file: Arc<File>,
    offset: u64,
    len: u64,
    done: oneshot::Sender<io::Result<()>>,
}

/// The cold-read queue, shared by every connection.
#[derive(Clone)]
pub struct ColdReads {
    /// Windows found cold and loaded (`oca_disk_cold_loads_total`).
    pub loads: Counter,
    tx: mpsc::Sender<Job>,
    path: &'static str,
}

impl std::fmt::Debug for ColdReads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ColdReads")
            .field("path", &self.path)
            .finish()
    }
}

impl ColdReads {
    /// Start the loaders: an io_uring if `use_uring` (and the kernel allows
    /// one), else `threads` threads. Counts loads in `loads`.
    pub fn start(loads: Counter, use_uring: bool, threads: usize, nice: i32) -> ColdReads {
        let (tx, rx) = mpsc::channel::<Job>();
        let ring = if use_uring {
            match sys::ReadRing::new() {
                Ok(r) => Some(r),
                Err(e) => {
                    tracing::warn!(error = %e, "io_uring unavailable; cold reads use blocking threads");
                    None
                }
            }
        } else {
            None
        };
        let path = if ring.is_some() {
            "io_uring"
        } else {
            "threads"
        };
        match ring {
            Some(ring) => {
                spawn("oca-cold", move || {
                    sys::lower_thread_priority(nice);
                    uring_loop(ring, rx);
                });
            }
            None => {
                let rx = Arc::new(std::sync::Mutex::new(rx));
                for i in 0..threads.max(1) {
                    let rx = rx.clone();
                    spawn(&format!("oca-cold-{i}"), move || {
                        sys::lower_thread_priority(nice);
                        blocking_loop(&rx);
                    });
                }
            }
        }
        ColdReads { loads, tx, path }
    }

    /// How cold windows are loaded: `io_uring` or `threads`.
    pub fn path(&self) -> &'static str {
        self.path
    }

    /// Load `file[offset..offset+len]` into the page cache; returns once it
    /// is there (or the read failed).
    pub async fn load(&self, file: &File, offset: u64, len: u64) -> io::Result<()> {
        self.loads.inc();
        let (done, wait) = oneshot::channel();
        let job = Job {
            file: Arc::new(file.try_clone()?),
            offset,
            len,
            done,
        };
        self.tx
            .send(job)
            .map_err(|_| io::Error::other("the cold-read thread has stopped"))?;
        wait.await
            .map_err(|_| io::Error::other("the cold-read thread has stopped"))?
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        tracing::error!(error = %e, "cannot start a cold-read thread; cold windows will fail");
    }
}

/// A job being read: the next byte to queue, reads outstanding, first error.
struct Loading {
    job: Job,
    next: u64,
    outstanding: usize,
    error: Option<io::Error>,
}

impl Loading {
    fn end(&self) -> u64 {
        self.job.offset + self.job.len
    }
}

/// The io_uring loader: jobs in arrival order, each split into pieces, the
/// ring kept as full as `READ_DEPTH` allows.
fn uring_loop(mut ring: sys::ReadRing, rx: mpsc::Receiver<Job>) {
    let mut jobs: Vec<Option<Loading>> = Vec::new();
    let mut order: VecDeque<usize> = VecDeque::new();
    loop {
        // Idle: sleep until a job comes (or every sender is gone).
        if ring.in_flight() == 0 && order.is_empty() {
            match rx.recv() {
                Ok(job) => admit(&mut jobs, &mut order, job),
                Err(_) => return,
            }
        }
        while let Ok(job) = rx.try_recv() {
            admit(&mut jobs, &mut order, job);
        }
        // Queue pieces, oldest job first.
        while ring.has_room() {
            let Some(&id) = order.front() else { break };
            let l = jobs[id].as_mut().expect("a queued job");
            let len = (l.end() - l.next).min(sys::READ_PIECE as u64) as usize;
            if let Err(e) = ring.queue(&l.job.file, l.next, len, id as u64) {
                l.error.get_or_insert(e);
                l.next = l.end();
            } else {
                l.next += len as u64;
                l.outstanding += 1;
            }
            if l.next >= l.end() {
                order.pop_front();
                finish_if_done(&mut jobs, id);
            }
        }
        let done = match ring.reap(ring.in_flight() > 0) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "cold-read ring failed; failing its windows");
                for l in jobs.drain(..).flatten() {
                    let _ = l.job.done.send(Err(io::Error::other("cold read failed")));
                }
                order.clear();
                return;
            }
        };
        for (id, res) in done {
            let id = id as usize;
            if let Some(l) = jobs.get_mut(id).and_then(Option::as_mut) {
                l.outstanding -= 1;
                if let Err(e) = res {
                    l.error.get_or_insert(e);
                    // No point reading the rest of a window that failed.
                    if l.next < l.end() {
                        l.next = l.end();
                        order.retain(|&j| j != id);
                    }
                }
            }
            finish_if_done(&mut jobs, id);
        }
    }
}

fn admit(jobs: &mut Vec<Option<Loading>>, order: &mut VecDeque<usize>, job: Job) {
    let l = Loading {
        next: job.offset,
        job,
        outstanding: 0,
        error: None,
    };
    let id = match jobs.iter().position(Option::is_none) {
        Some(i) => {
            jobs[i] = Some(l);
            i
        }
        None => {
            jobs.push(Some(l));
            jobs.len() - 1
        }
    };
    if jobs[id].as_ref().is_some_and(|l| l.job.len == 0) {
        finish_if_done(jobs, id);
    } else {
        order.push_back(id);
    }
}

/// Answer a job whose pieces are all queued and read.
fn finish_if_done(jobs: &mut [Option<Loading>], id: usize) {
    let done = jobs[id]
        .as_ref()
        .is_some_and(|l| l.next >= l.end() && l.outstanding == 0);
    if done && let Some(l) = jobs[id].take() {
        let _ = l.job.done.send(l.error.map_or(Ok(()), Err));
    }
}

/// A loader thread: one window at a time, into the page cache without a copy
/// to user space ([`sys::load_into_cache`]).
fn blocking_loop(rx: &std::sync::Mutex<mpsc::Receiver<Job>>) {
    loop {
        let job = match rx.lock().unwrap_or_else(|p| p.into_inner()).recv() {
            Ok(j) => j,
            Err(_) => return,
        };
        let r = sys::load_into_cache(&job.file, job.offset, job.len);
        let _ = job.done.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways load what was asked for, report a bad file, and survive many
    /// windows at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windows_load_through_either_path_and_errors_come_back() {
        let mut f = tempfile::tempfile().unwrap();
        let len = 3 * sys::READ_PIECE as u64 + 12_345;
        std::io::Write::write_all(&mut f, &vec![7u8; len as usize]).unwrap();
        for uring in [true, false] {
            let cold = ColdReads::start(Counter::default(), uring, 3, 10);
            assert_eq!(cold.path(), if uring { "io_uring" } else { "threads" });
            let mut waits = Vec::new();
            for i in 0..40u64 {
                let cold = cold.clone();
                let f = f.try_clone().unwrap();
                waits.push(tokio::spawn(async move {
                    let at = (i * 100_003) % len;
                    cold.load(&f, at, len - at).await
                }));
            }
            for w in waits {
                w.await.unwrap().unwrap();
            }
            assert_eq!(cold.loads.get(), 40);
            // Past the end: nothing to read, not an error.
            cold.load(&f, len + 10, 100).await.unwrap();
            // A file opened for writing only cannot be read: EBADF comes back.
            let dir = tempfile::tempdir().unwrap();
            let wo = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(dir.path().join("w"))
                .unwrap();
            std::io::Write::write_all(&mut &wo, &[1u8; 5000]).unwrap();
            let e = cold.load(&wo, 0, 5000).await.unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EBADF), "{uring}: {e}");
        }
    }
}
