//! The fill agent's only unsafe code: io_uring submissions. The kernel reads
//! a submission's buffer and paths after `push` returns, so a [`Ring`] owns
//! every buffer (and a handle on every file) it has submitted until the
//! completion for it has been reaped, and waits for all of them before it is
//! dropped: nothing it submitted can outlive the memory it points to.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use io_uring::{IoUring, opcode, squeue, types};

/// Writes in flight per ring: with 256 KiB batches, 1 MiB queued per
/// download, enough to keep a disk busy while the thread hashes the next.
pub const DEPTH: usize = 4;

/// One write the kernel may still be doing.
struct InFlight {
    file: Arc<File>,
    buf: Vec<u8>,
    /// Bytes of `buf` already written (short writes are continued).
    done: usize,
    offset: u64,
}

/// User data of operations that are not writes.
const FSYNC: u64 = u64::MAX;
const RENAME: u64 = u64::MAX - 1;

/// An io_uring instance for one thread's disk work.
pub struct Ring {
    ring: IoUring,
    /// Slots of writes in flight, by user data.
    slots: Vec<Option<InFlight>>,
    /// The first error a completed write reported, until someone asks.
    error: Option<io::Error>,
    /// Short writes continued so far (each breaks a link to an fsync).
    continued: u64,
    /// Bytes written since `take_written` last asked, failures or not.
    written: u64,
    /// Buffers of completed writes, for the writer to use again.
    spare: Vec<Vec<u8>>,
}

impl Ring {
    /// A ring, if the kernel lets this process have one and it can do every
    /// operation used here (write, fsync, renameat: Linux 5.11).
    /// ENOSYS (no io_uring), EPERM (seccomp, or `kernel.io_uring_disabled`)
    /// and an incomplete kernel are errors the caller falls back from.
    pub fn new() -> io::Result<Ring> {
        let ring = IoUring::new(2 * DEPTH as u32 + 2)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        for code in [
            opcode::Write::CODE,
            opcode::Fsync::CODE,
            opcode::RenameAt::CODE,
        ] {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks operation {code}"),
                ));
            }
        }
        Ok(Ring {
            ring,
            slots: (0..DEPTH).map(|_| None).collect(),
            error: None,
            continued: 0,
            written: 0,
            spare: Vec::new(),
        })
    }

    /// A buffer whose write has completed, to fill again (saves allocating
    /// and faulting in a fresh one per batch).
    pub fn take_spare(&mut self) -> Option<Vec<u8>> {
        self.spare.pop()
    }

    /// Bytes the kernel has written since the last call (completed writes,
    /// and the parts of short ones), whatever errors were reported.
    pub fn take_written(&mut self) -> u64 {
        std::mem::take(&mut self.written)
    }

    /// Queue `buf` to be written at `offset` of `file`, waiting for a free
    /// slot if `DEPTH` writes are in flight. An error is a failed earlier
    /// write (or this one could not be submitted).
    pub fn queue_write(&mut self, file: &Arc<File>, buf: Vec<u8>, offset: u64) -> io::Result<()> {
        self.reap(false)?;
        let slot = loop {
            if let Some(i) = self.slots.iter().position(Option::is_none) {
                break i;
            }
            self.reap(true)?;
        };
        self.slots[slot] = Some(InFlight {
            file: file.clone(),
            buf,
            done: 0,
            offset,
        });
        self.submit_write(slot, false)
    }

    /// Wait for every queued write; the first error any of them had.
    pub fn drain(&mut self) -> io::Result<()> {
        self.reap(false)?;
        while self.slots.iter().any(Option::is_some) {
            self.reap(true)?;
        }
        Ok(())
    }

    /// Write `tail` at `offset` and then fsync `file` (data only if
    /// `data_only`), linked so the fsync starts when the write has completed,
    /// after every write queued before.
    pub fn write_and_sync(
        &mut self,
        file: &Arc<File>,
        tail: Vec<u8>,
        offset: u64,
        data_only: bool,
    ) -> io::Result<()> {
        self.drain()?;
        let continued = self.continued;
        if !tail.is_empty() {
            self.slots[0] = Some(InFlight {
                file: file.clone(),
                buf: tail,
                done: 0,
                offset,
            });
            self.submit_write(0, true)?;
        }
        self.push(fsync_entry(file, data_only))?;
        let mut synced = None;
        while synced.is_none() || self.slots[0].is_some() {
            self.enter(1)?;
            let done = self.completions();
            for (data, res) in done {
                if data == FSYNC {
                    synced = Some(res);
                } else {
                    self.complete(data as usize, res);
                }
            }
        }
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        match synced {
            Some(r) if r < 0 && r != -libc::ECANCELED => {
                return Err(io::Error::from_raw_os_error(-r));
            }
            // A short write breaks the link (the fsync is cancelled or may
            // have run before the rest was written): sync again, alone.
            Some(r) if r < 0 || self.continued != continued => {
                self.push(fsync_entry(file, data_only))?;
                self.wait_one(FSYNC)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Rename `from` to `to` and then fsync `dir` (the directory holding
    /// `to`), linked: the rename is durable when this returns.
    pub fn rename_durably(&mut self, from: &Path, to: &Path, dir: &File) -> io::Result<()> {
        self.drain()?;
        let from = CString::new(from.as_os_str().as_bytes())?;
        let to = CString::new(to.as_os_str().as_bytes())?;
        let rename = opcode::RenameAt::new(
            types::Fd(libc::AT_FDCWD),
            from.as_ptr(),
            types::Fd(libc::AT_FDCWD),
            to.as_ptr(),
        )
        .build()
        .user_data(RENAME)
        .flags(squeue::Flags::IO_LINK);
        self.push(rename)?;
        self.push(
            opcode::Fsync::new(types::Fd(dir.as_raw_fd()))
                .build()
                .user_data(FSYNC),
        )?;
        // Both completions are reaped before `from` and `to` (which the
        // kernel reads) go out of scope.
        let (mut renamed, mut synced) = (None, None);
        while renamed.is_none() || synced.is_none() {
            self.enter(1)?;
            for c in self.ring.completion() {
                match c.user_data() {
                    RENAME => renamed = Some(c.result()),
                    _ => synced = Some(c.result()),
                }
            }
        }
        for r in [renamed, synced].into_iter().flatten() {
            if r < 0 {
                return Err(io::Error::from_raw_os_error(-r));
            }
        }
        Ok(())
    }

    /// Submit (the rest of) the write in `slot`.
    fn submit_write(&mut self, slot: usize, link: bool) -> io::Result<()> {
        let w = self.slots[slot].as_ref().expect("a queued write");
        let rest = &w.buf[w.done..];
        let mut e = opcode::Write::new(
            types::Fd(w.file.as_raw_fd()),
            rest.as_ptr(),
            rest.len() as u32,
        )
        .offset(w.offset + w.done as u64)
        .build()
        .user_data(slot as u64);
        if link {
            e = e.flags(squeue::Flags::IO_LINK);
        }
        self.push(e)
    }

    fn push(&mut self, e: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer in `e` refers to memory that stays alive
            // until its completion is reaped: write buffers and files are
            // owned by `self.slots`, paths by `rename_durably`, which reaps
            // both of its completions before returning; `Drop` drains.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return Ok(());
            }
            // Full submission queue: hand what is there to the kernel.
            self.enter(0)?;
        }
    }

    /// Reap completions (waiting for one if `wait`).
    fn reap(&mut self, wait: bool) -> io::Result<()> {
        self.enter(usize::from(wait))?;
        let done = self.completions();
        for (data, res) in done {
            self.complete(data as usize, res);
        }
        match self.error.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A write's completion: done, continued (a short write), or failed
    /// (the error kept for the caller).
    fn complete(&mut self, slot: usize, res: i32) {
        let Some(w) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let failed = match res {
            r if r < 0 => Some(io::Error::from_raw_os_error(-r)),
            0 => Some(io::ErrorKind::WriteZero.into()),
            _ => None,
        };
        if let Some(e) = failed {
            self.slots[slot] = None;
            self.error.get_or_insert(e);
            return;
        }
        w.done += res as usize;
        self.written += res as u64;
        if w.done < w.buf.len() {
            self.continued += 1;
            if let Err(e) = self.submit_write(slot, false) {
                self.slots[slot] = None;
                self.error.get_or_insert(e);
            }
        } else if let Some(w) = self.slots[slot].take()
            && self.spare.len() < DEPTH
        {
            self.spare.push(w.buf);
        }
    }

    /// The completions waiting: (user data, result).
    fn completions(&mut self) -> Vec<(u64, i32)> {
        self.ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect()
    }

    /// Submit what is queued and wait for `want` completions, again when a
    /// signal interrupts the wait.
    fn enter(&self, want: usize) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(want) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r.map(|_| ()),
            }
        }
    }

    fn wait_one(&mut self, data: u64) -> io::Result<()> {
        loop {
            self.enter(1)?;
            for c in self.ring.completion() {
                if c.user_data() == data {
                    return match c.result() {
                        r if r < 0 => Err(io::Error::from_raw_os_error(-r)),
                        _ => Ok(()),
                    };
                }
            }
        }
    }
}

fn fsync_entry(file: &File, data_only: bool) -> squeue::Entry {
    let flags = if data_only {
        types::FsyncFlags::DATASYNC
    } else {
        types::FsyncFlags::empty()
    };
    opcode::Fsync::new(types::Fd(file.as_raw_fd()))
        .flags(flags)
        .build()
        .user_data(FSYNC)
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The kernel may still be reading the buffers: wait for it.
        while self.slots.iter().any(Option::is_some) {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {
                    let done = self.completions();
                    for (data, res) in done {
                        self.complete(data as usize, res);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    // The ring cannot wait: leak the buffers rather than
                    // free memory the kernel may still read.
                    for s in &mut self.slots {
                        std::mem::forget(s.take());
                    }
                }
            }
        }
    }
}
