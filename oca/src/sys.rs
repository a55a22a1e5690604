//! Every syscall the serving path makes that std does not wrap, behind a safe API.
//! This is the only module allowed `unsafe` (the workspace denies it elsewhere,
//! and main.rs forbids it).
//!
//! `rustix` makes most of the calls (openat2, sendfile, send, fadvise,
//! rlimits, setpriority) and `socket2` sets the listening sockets' options,
//! with no `unsafe` here. The rest are in `unsafe` blocks, each with its
//! SAFETY note: `cachestat(2)` (a syscall number libc does not name); with
//! the `ktls` feature, the kernel-TLS `setsockopt` calls that hand over
//! session keys; io_uring reads of cold windows ([`ReadRing`], whose buffers
//! must outlive the kernel's use of them); and read-only mappings of objects
//! (`tls_mapped_bodies`). Keeping them here makes the set of raw kernel
//! interfaces we depend on (and their fallbacks) visible in one place.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Mode, OFlags, ResolveFlags};

/// Whether `openat2(2)` is usable; cleared the first time the kernel says ENOSYS.
static OPENAT2_AVAILABLE: AtomicBool = AtomicBool::new(true);
/// Whether `cachestat(2)` (Linux 6.5+) is usable; cleared on ENOSYS.
static CACHESTAT_AVAILABLE: AtomicBool = AtomicBool::new(true);

/// Open `rel` read-only strictly beneath the directory `root`.
///
/// Uses `openat2(RESOLVE_BENEATH)` so that neither `..` nor a symlink (absolute or
/// relative) can take the lookup outside `root`, even if the tree is changed under
/// us. On kernels without openat2 we fall back to canonicalising the path and
/// checking the prefix, which is racy against a hostile writer of the store but
/// still rejects symlinks that point out of it.
pub fn open_beneath(root: &File, root_path: &Path, rel: &str) -> io::Result<File> {
    if OPENAT2_AVAILABLE.load(Ordering::Relaxed) {
        match rustix::fs::openat2(
            root.as_fd(),
            rel,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        ) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(rustix::io::Errno::NOSYS) => OPENAT2_AVAILABLE.store(false, Ordering::Relaxed),
            Err(e) => return Err(e.into()),
        }
    }
    let full = root_path.join(rel).canonicalize()?;
    let canon_root = root_path.canonicalize()?;
    if !full.starts_with(&canon_root) {
        return Err(io::Error::from(io::ErrorKind::NotFound));
    }
    File::open(full)
}

/// `sendfile(2)` up to `count` bytes from `file` at `*offset` into the socket `sock`.
///
/// Advances `*offset` by the number of bytes sent. The socket is non-blocking, so
/// `WouldBlock` means "wait for writability and call again".
pub fn sendfile(sock: impl AsFd, file: &File, offset: &mut u64, count: usize) -> io::Result<usize> {
    Ok(rustix::fs::sendfile(sock, file, Some(offset), count)?)
}

/// `send(2)` with `MSG_MORE`: the kernel holds a partial segment until the body that
/// follows (via sendfile), so the response head and the first body bytes share a
/// packet instead of the head going out alone.
pub fn send_more(sock: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        sock,
        buf,
        rustix::net::SendFlags::MORE | rustix::net::SendFlags::NOSIGNAL,
    )?)
}

/// Plain `send(2)` on a non-blocking socket.
pub fn send(sock: impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(rustix::net::send(
        sock,
        buf,
        rustix::net::SendFlags::NOSIGNAL,
    )?)
}

/// Hint that `file` will be read sequentially soon, so the kernel starts readahead
/// before sendfile would block on it. Failure is harmless and ignored.
pub fn advise_sequential(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
}

/// Number of CPUs this process may run on (for the default worker count).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Whether an open error means "no such object here" rather than disk trouble.
/// EXDEV and ELOOP are what RESOLVE_BENEATH answers for an escape attempt.
pub fn is_absent(e: &io::Error) -> bool {
    use rustix::io::Errno;
    matches!(
        Errno::from_io_error(e),
        Some(
            Errno::NOENT
                | Errno::NOTDIR
                | Errno::XDEV
                | Errno::LOOP
                | Errno::ISDIR
                | Errno::NAMETOOLONG
        )
    ) || e.kind() == io::ErrorKind::NotFound
}

/// A listening TCP socket with SO_REUSEPORT, so each worker can own one on the
/// same address and the kernel spreads new connections across them.
pub fn listen_socket(addr: std::net::SocketAddr) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// Raise the soft open-file limit to the hard limit; returns the resulting soft limit.
pub fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current != lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Which direction of a kernel TLS session a key belongs to.
#[cfg(feature = "ktls")]
#[derive(Debug, Clone, Copy)]
pub enum TlsDirection {
    Tx = 1,
    Rx = 2,
}

fn setsockopt_bytes(fd: std::os::fd::RawFd, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised buffer of exactly `value.len()` bytes
    // for the duration of the call; the kernel copies it and keeps no pointer.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Attach the kernel's `tls` upper-layer protocol to a connected TCP socket.
#[cfg(feature = "ktls")]
pub fn set_tls_ulp(fd: std::os::fd::RawFd) -> io::Result<()> {
    setsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_ULP, b"tls")
}

/// Install one direction's `tls12_crypto_info_*` (built by the caller).
#[cfg(feature = "ktls")]
pub fn set_tls_crypto(fd: std::os::fd::RawFd, dir: TlsDirection, info: &[u8]) -> io::Result<()> {
    const SOL_TLS: i32 = 282;
    setsockopt_bytes(fd, SOL_TLS, dir as i32, info)
}

/// Whether the kernel offers the `tls` ULP: try it on a loopback connection.
#[cfg(feature = "ktls")]
pub fn ktls_available() -> bool {
    use std::os::fd::AsRawFd;
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:0") else {
        return false;
    };
    let Ok(addr) = listener.local_addr() else {
        return false;
    };
    let Ok(client) = std::net::TcpStream::connect(addr) else {
        return false;
    };
    set_tls_ulp(client.as_raw_fd()).is_ok()
}

fn setsockopt_int(fd: std::os::fd::RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    setsockopt_bytes(fd, level, name, &value.to_ne_bytes())
}

/// The longest TCP MD5 key the kernel takes (`TCP_MD5SIG_MAXKEYLEN`).
pub const TCP_MD5_MAX_KEY: usize = 80;

/// Sign and check every TCP segment to and from `peer` on `listener` (and
/// the connections it accepts) with `key`: RFC 2385, `TCP_MD5SIG`. A segment
/// from `peer` without the signature, or with a wrong one, is dropped by the
/// kernel before any socket sees it.
/// On an IPv6 listener (which takes IPv4 too unless it is v6-only) an IPv4
/// peer is named by its v4-mapped address.
pub fn set_tcp_md5_key(
    listener: std::os::fd::RawFd,
    listener_v6: bool,
    peer: std::net::IpAddr,
    key: &[u8],
) -> io::Result<()> {
    let peer = match peer {
        std::net::IpAddr::V4(a) if listener_v6 => std::net::IpAddr::V6(a.to_ipv6_mapped()),
        p => p,
    };
    if key.is_empty() || key.len() > TCP_MD5_MAX_KEY {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a TCP MD5 key is 1 to 80 bytes",
        ));
    }
    // struct tcp_md5sig (linux/tcp.h): a sockaddr_storage for the peer, then
    // flags, prefix length, key length (u16), ifindex (int), and the key.
    let mut v = [0u8; 128 + 1 + 1 + 2 + 4 + TCP_MD5_MAX_KEY];
    match peer {
        std::net::IpAddr::V4(a) => {
            v[..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            v[4..8].copy_from_slice(&a.octets());
        }
        std::net::IpAddr::V6(a) => {
            v[..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            v[8..24].copy_from_slice(&a.octets());
        }
    }
    v[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    v[136..136 + key.len()].copy_from_slice(key);
    setsockopt_bytes(listener, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &v)
}

/// Send with a TTL (hop limit) of 255, as GTSM peers expect (RFC 5082).
pub fn set_ttl_255(fd: std::os::fd::RawFd, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)
    }
}

/// Drop every segment that arrives with a TTL (hop limit) below `min`.
pub fn set_min_ttl(fd: std::os::fd::RawFd, v6: bool, min: u8) -> io::Result<()> {
    if v6 {
        setsockopt_int(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_MINHOPCOUNT,
            i32::from(min),
        )
    } else {
        setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MINTTL, i32::from(min))
    }
}

/// Keep each accepted connection's SYN, so [`syn_ttl`] can read its TTL.
pub fn save_syns(listener: std::os::fd::RawFd) -> io::Result<()> {
    const TCP_SAVE_SYN: i32 = 27;
    setsockopt_int(listener, libc::IPPROTO_TCP, TCP_SAVE_SYN, 1)
}

/// The TTL (hop limit) the SYN of an accepted connection arrived with, from
/// the headers [`save_syns`] kept; `None` if none were kept (read once only).
pub fn syn_ttl(conn: std::os::fd::RawFd) -> io::Result<Option<u8>> {
    let mut buf = [0u8; 512];
    let mut len = buf.len() as libc::socklen_t;
    // SAFETY: `buf` is writable for `len` bytes and `len` is a live
    // socklen_t; the kernel writes at most `len` bytes and stores the length.
    let rc = unsafe {
        libc::getsockopt(
            conn,
            libc::IPPROTO_TCP,
            libc::TCP_SAVED_SYN,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(header_ttl(&buf[..(len as usize).min(buf.len())]))
}

/// The TTL of an IPv4 header or the hop limit of an IPv6 one.
fn header_ttl(h: &[u8]) -> Option<u8> {
    match h.first().map(|b| b >> 4) {
        Some(4) => h.get(8).copied(),
        Some(6) => h.get(7).copied(),
        _ => None,
    }
}

/// Whether every page of `file[offset..offset+len]` is in the page cache, so that
/// reading it (sendfile, pread) will not wait for the disk. `None` when the kernel
/// cannot tell us (no `cachestat(2)`, Linux < 6.5).
pub fn is_cached(file: &File, file_len: u64, offset: u64, len: u64) -> Option<bool> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Some(true);
    }
    if !CACHESTAT_AVAILABLE.load(Ordering::Relaxed) {
        return None;
    }
    #[repr(C)]
    struct Range {
        off: u64,
        len: u64,
    }
    #[repr(C)]
    #[derive(Default)]
    struct Stat {
        nr_cache: u64,
        nr_dirty: u64,
        nr_writeback: u64,
        nr_evicted: u64,
        nr_recently_evicted: u64,
    }
    /// The same number on every architecture (allocated after the syscall tables were unified).
    const SYS_CACHESTAT: libc::c_long = 451;
    const PAGE: u64 = 4096;
    let first = offset / PAGE;
    let last = (offset + len - 1) / PAGE;
    let range = Range {
        off: first * PAGE,
        len: (last - first + 1) * PAGE,
    };
    let mut stat = Stat::default();
    // SAFETY: both pointers refer to live, properly sized #[repr(C)] values for the
    // duration of the call, matching `struct cachestat_range` and `struct cachestat`.
    let rc = unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file.as_raw_fd(),
            &range as *const Range,
            &mut stat as *mut Stat,
            0u32,
        )
    };
    if rc != 0 {
        // ENOSYS: an older kernel. EPERM: a seccomp filter (systemd's
        // SystemCallFilter) that does not know the call. Either way it will
        // not start working: stop asking.
        let errno = io::Error::last_os_error().raw_os_error();
        if matches!(errno, Some(libc::ENOSYS | libc::EPERM))
            && CACHESTAT_AVAILABLE.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(
                errno,
                "cachestat(2) unavailable; cold disk reads block a serving thread"
            );
        }
        return None;
    }
    // Pages past the end of the file are never cached; count only those that exist.
    let file_pages = file_len
        .div_ceil(PAGE)
        .saturating_sub(first)
        .min(last - first + 1);
    Some(stat.nr_cache >= file_pages)
}

/// Read `file[offset..offset+len]` into the page cache, blocking until it is
/// there. Meant for a cold-read thread, never a serving thread.
///
/// `sendfile(2)` to /dev/null: the kernel reads the pages into the cache and
/// hands them to /dev/null's splice, which drops them, so no byte is copied
/// to user space (docs/DISK-PATHS.md, *Why not io_uring here*). Falls back
/// to `pread` where /dev/null cannot be opened or does not take sendfile.
pub fn load_into_cache(file: &File, mut offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    static DEV_NULL: std::sync::OnceLock<Option<File>> = std::sync::OnceLock::new();
    let end = offset + len;
    let null = DEV_NULL.get_or_init(|| {
        match std::fs::OpenOptions::new().write(true).open("/dev/null") {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::warn!(error = %e, "cannot open /dev/null; cold windows are read into a buffer");
                None
            }
        }
    });
    if let Some(null) = null {
        while offset < end {
            let want = ((end - offset) as usize).min(1 << 30);
            match rustix::fs::sendfile(null, file, Some(&mut offset), want) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => {}
                Err(e @ (rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS)) => {
                    static SAID: std::sync::Once = std::sync::Once::new();
                    SAID.call_once(|| {
                        tracing::warn!(error = %e, "sendfile to /dev/null refused; cold windows are read into a buffer");
                    });
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if offset >= end {
            return Ok(());
        }
    }
    let mut scratch = vec![0u8; ((end - offset).min(1 << 20)) as usize];
    while offset < end {
        let want = ((end - offset) as usize).min(scratch.len());
        match file.read_at(&mut scratch[..want], offset)? {
            0 => break,
            n => offset += n as u64,
        }
    }
    Ok(())
}

/// Lower this thread's CPU priority to `nice` (per thread on Linux): cold
/// disk reads, and the kernel workers io_uring starts for them (they inherit
/// it), yield the CPU to the serving threads. Failure is harmless.
pub fn lower_thread_priority(nice: i32) {
    let _ = rustix::process::setpriority_process(None, nice);
}

/// Reads in flight on a [`ReadRing`] and the size of each.
pub const READ_DEPTH: usize = 32;
pub const READ_PIECE: usize = 512 * 1024;

/// One read the kernel may still be doing, into its slot's scratch buffer.
struct PieceRead {
    file: std::sync::Arc<File>,
    offset: u64,
    len: usize,
    done: usize,
    tag: u64,
}

/// An io_uring for reading cold file ranges into the page cache: up to
/// [`READ_DEPTH`] reads of up to [`READ_PIECE`] bytes in flight, each into a
/// scratch buffer the ring owns (the bytes are wanted in the page cache, not
/// here). Buffers and files stay owned by the ring until their completions
/// are reaped, and dropping the ring waits for every one.
pub struct ReadRing {
    ring: io_uring::IoUring,
    slots: Vec<Option<PieceRead>>,
    scratch: Vec<Box<[u8]>>,
}

impl ReadRing {
    /// A ring, if the kernel allows this process one with reads (ENOSYS,
    /// EPERM from seccomp or `kernel.io_uring_disabled`: the caller falls
    /// back).
    pub fn new() -> io::Result<ReadRing> {
        let ring = io_uring::IoUring::new(READ_DEPTH as u32)?;
        let mut probe = io_uring::Probe::new();
        ring.submitter().register_probe(&mut probe)?;
        if !probe.is_supported(io_uring::opcode::Read::CODE) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "the kernel's io_uring cannot read",
            ));
        }
        Ok(ReadRing {
            ring,
            slots: (0..READ_DEPTH).map(|_| None).collect(),
            scratch: (0..READ_DEPTH)
                .map(|_| vec![0u8; READ_PIECE].into_boxed_slice())
                .collect(),
        })
    }

    /// Whether another read can be queued now.
    pub fn has_room(&self) -> bool {
        self.slots.iter().any(Option::is_none)
    }

    pub fn in_flight(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }

    /// Queue a read of `len` (at most [`READ_PIECE`]) bytes of `file` at
    /// `offset`, reported under `tag`. Needs `has_room`.
    pub fn queue(
        &mut self,
        file: &std::sync::Arc<File>,
        offset: u64,
        len: usize,
        tag: u64,
    ) -> io::Result<()> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| io::Error::other("no free read slot"))?;
        self.slots[slot] = Some(PieceRead {
            file: file.clone(),
            offset,
            len: len.min(READ_PIECE),
            done: 0,
            tag,
        });
        self.push_read(slot);
        Ok(())
    }

    /// Submit what is queued and, if `wait`, wait for a completion; the reads
    /// finished meanwhile: (tag, bytes read or the error). A short read is
    /// continued; end of file ends a read early.
    pub fn reap(&mut self, wait: bool) -> io::Result<Vec<(u64, io::Result<usize>)>> {
        loop {
            match self.ring.submit_and_wait(usize::from(wait)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => {
                    r?;
                    break;
                }
            }
        }
        let done: Vec<(u64, i32)> = self
            .ring
            .completion()
            .map(|c| (c.user_data(), c.result()))
            .collect();
        let mut out = Vec::new();
        for (slot, res) in done {
            let slot = slot as usize;
            let Some(r) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            match res {
                n if n < 0 => {
                    out.push((r.tag, Err(io::Error::from_raw_os_error(-n))));
                    self.slots[slot] = None;
                }
                0 => {
                    out.push((r.tag, Ok(r.done)));
                    self.slots[slot] = None;
                }
                n => {
                    r.done += n as usize;
                    if r.done < r.len {
                        self.push_read(slot);
                    } else {
                        out.push((r.tag, Ok(r.done)));
                        self.slots[slot] = None;
                    }
                }
            }
        }
        Ok(out)
    }

    fn push_read(&mut self, slot: usize) {
        use std::os::fd::AsRawFd;
        let r = self.slots[slot].as_ref().expect("a queued read");
        let buf = &mut self.scratch[slot][r.done..r.len];
        let e = io_uring::opcode::Read::new(
            io_uring::types::Fd(r.file.as_raw_fd()),
            buf.as_mut_ptr(),
            buf.len() as u32,
        )
        .offset(r.offset + r.done as u64)
        .build()
        .user_data(slot as u64);
        loop {
            // SAFETY: the scratch buffer and the file belong to this ring and
            // outlive the read: a slot is freed only when its completion is
            // reaped, and `Drop` waits for every one.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            // A full submission queue (it holds READ_DEPTH): hand it over.
            let _ = self.ring.submit();
        }
    }
}

impl Drop for ReadRing {
    fn drop(&mut self) {
        while self.in_flight() > 0 {
            if let Err(e) = self.reap(true)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // The ring cannot wait: leak the buffers rather than free
                // memory the kernel may still write.
                for s in std::mem::take(&mut self.scratch) {
                    std::mem::forget(s);
                }
                return;
            }
        }
    }
}

/// A read-only mapping of a whole object file, for encrypting TLS records
/// straight from the page cache (`tls_mapped_bodies`). Read it only through
/// [`read_mapped`], so a page that cannot be read fails one response instead
/// of ending the process.
pub fn map_object(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: objects are immutable once committed: fill-agent writes a
    // temporary file and renames it into place, eviction unlinks, the
    // scrubber renames into quarantine; none changes the bytes of an inode
    // in place, so the mapping's contents do not change under us. A page that
    // cannot be read (a disk error, a file truncated by hand) raises SIGBUS,
    // which `read_mapped` turns into an error.
    unsafe { memmap2::Mmap::map(file) }
}

/// Faults on mapped object pages.
///
/// A read error on a mapped page is not an error return but SIGBUS, which by
/// default ends the process with every viewer on it. [`guard_mapped_reads`]
/// installs a handler that, for a fault inside the mapping the faulting
/// thread is reading through [`read_mapped`], maps a page of zeros over the
/// bad page (so the interrupted copy completes) and flags the read as failed;
/// the caller then throws away whatever it made from those bytes. A fault
/// anywhere else gets the previous disposition back and is raised again, so
/// real crashes (and std's stack-overflow report) are unchanged.
mod mapped_faults {
    use std::cell::Cell;
    use std::io;
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};

    thread_local! {
        /// The mapping this thread is reading through `read_mapped`: [start, end).
        static GUARDED: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
        /// Whether a page of it failed since the read began.
        static FAULTED: Cell<bool> = const { Cell::new(false) };
    }

    static PAGE: AtomicUsize = AtomicUsize::new(0);
    /// The disposition before ours, restored for faults that are not ours.
    static PREVIOUS: OnceLock<Result<libc::sigaction, i32>> = OnceLock::new();

    extern "C" fn on_sigbus(_: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
        let addr = unsafe { (*info).si_addr() } as usize;
        let (start, end) = GUARDED.with(Cell::get);
        let page = PAGE.load(Ordering::Relaxed);
        if page != 0 && addr >= start && addr < end {
            let at = addr & !(page - 1);
            // SAFETY: `at` is a page inside a read-only mapping this thread
            // owns for the length of `read_mapped`; replacing it with an
            // anonymous page changes only what that mapping reads, and mmap is
            // a plain system call, safe to make in a signal handler.
            let p = unsafe {
                libc::mmap(
                    at as *mut libc::c_void,
                    page,
                    libc::PROT_READ,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                    -1,
                    0,
                )
            };
            if p != libc::MAP_FAILED {
                FAULTED.with(|f| f.set(true));
                return;
            }
        }
        // Not ours: put the previous disposition back; returning re-runs the
        // faulting instruction, which raises SIGBUS under it.
        if let Some(Ok(prev)) = PREVIOUS.get() {
            // SAFETY: restores a sigaction the kernel gave us.
            unsafe { libc::sigaction(libc::SIGBUS, prev, std::ptr::null_mut()) };
        }
    }

    pub fn install() -> io::Result<()> {
        let r = PREVIOUS.get_or_init(|| {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page <= 0 {
                return Err(libc::EINVAL);
            }
            PAGE.store(page as usize, Ordering::Relaxed);
            // SAFETY: a zeroed sigaction is a valid value to fill in; the
            // handler has the SA_SIGINFO signature and touches only
            // const-initialised thread-locals, atomics and the result of a
            // completed OnceLock.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_sigbus as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                libc::sigemptyset(&mut act.sa_mask);
                let mut prev: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(libc::SIGBUS, &act, &mut prev) != 0 {
                    return Err(io::Error::last_os_error()
                        .raw_os_error()
                        .unwrap_or(libc::EINVAL));
                }
                Ok(prev)
            }
        });
        r.as_ref()
            .map(|_| ())
            .map_err(|&e| io::Error::from_raw_os_error(e))
    }

    pub fn installed() -> bool {
        matches!(PREVIOUS.get(), Some(Ok(_)))
    }

    /// Clears the guard even if the read panics.
    struct Reading;
    impl Drop for Reading {
        fn drop(&mut self) {
            GUARDED.with(|g| g.set((0, 0)));
        }
    }

    pub fn read<R>(map: &memmap2::Mmap, f: impl FnOnce(&[u8]) -> R) -> Result<R, R> {
        let start = map.as_ptr() as usize;
        FAULTED.with(|x| x.set(false));
        GUARDED.with(|g| g.set((start, start + map.len())));
        let reading = Reading;
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let r = f(&map[..]);
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        drop(reading);
        if FAULTED.with(|x| x.replace(false)) {
            Err(r)
        } else {
            Ok(r)
        }
    }
}

/// Install the SIGBUS handler that [`read_mapped`] needs (once per process;
/// later calls return the first answer).
pub fn guard_mapped_reads() -> io::Result<()> {
    mapped_faults::install()
}

/// Whether [`guard_mapped_reads`] succeeded: without it, reading a mapping is
/// not safe against a page that fails.
pub fn mapped_reads_guarded() -> bool {
    mapped_faults::installed()
}

/// Run `f` over the mapping's bytes on this thread. `Err` (carrying what `f`
/// returned) means a page could not be read: `f` saw zeros there, and its
/// result must be thrown away. Needs [`guard_mapped_reads`].
pub fn read_mapped<R>(map: &memmap2::Mmap, f: impl FnOnce(&[u8]) -> R) -> Result<R, R> {
    mapped_faults::read(map, f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{SocketAddr, TcpListener};
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    fn client(to: SocketAddr, ttl: u32, md5: Option<&[u8]>) -> io::Result<std::net::TcpStream> {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
        s.set_ttl_v4(ttl)?;
        if let Some(key) = md5 {
            set_tcp_md5_key(s.as_raw_fd(), false, to.ip(), key)?;
        }
        // An unsigned SYN to a listener that wants a signature is dropped
        // without an answer: the attempt times out.
        s.connect_timeout(&to.into(), Duration::from_millis(700))?;
        Ok(s.into())
    }

    /// A page that cannot be read (here: the file truncated under the
    /// mapping) fails the read it was in, and the process goes on.
    #[test]
    fn a_mapped_page_that_cannot_be_read_fails_the_read_not_the_process() {
        guard_mapped_reads().unwrap();
        assert!(mapped_reads_guarded());
        let dir = tempfile::tempdir().unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| x as u64).sum::<u64>();
        for name in ["a", "b"] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
            let map = map_object(&File::open(&path).unwrap()).unwrap();
            assert_eq!(read_mapped(&map, sum), Ok(7 * 64 * 1024));
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(4096)
                .unwrap();
            // The first page is still there; the rest read as zeros, flagged
            // (the second file: the handler stays installed).
            assert_eq!(read_mapped(&map, sum), Err(7 * 4096), "{name}");
            assert_eq!(read_mapped(&map, |b| sum(&b[..4096])), Ok(7 * 4096));
        }
    }

    /// Outside `read_mapped` a SIGBUS still ends the process: the guard does
    /// not hide faults that are not its own. Run in a child, this same test.
    #[test]
    fn a_fault_outside_a_guarded_read_still_ends_the_process() {
        use std::os::unix::process::ExitStatusExt;
        if std::env::var_os("OCA_SIGBUS_CHILD").is_some() {
            guard_mapped_reads().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("obj");
            std::fs::write(&path, vec![7u8; 64 * 1024]).unwrap();
            let map = map_object(&File::open(&path).unwrap()).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .unwrap()
                .set_len(0)
                .unwrap();
            let byte = std::hint::black_box(&map[..])[20_000];
            println!("read {byte} past the end and lived");
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "sys::tests::a_fault_outside_a_guarded_read_still_ends_the_process",
                "--nocapture",
            ])
            .env("OCA_SIGBUS_CHILD", "1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGBUS),
            "{:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn a_saved_syn_tells_the_ttl_it_arrived_with() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        save_syns(l.as_raw_fd()).unwrap();
        let _c = client(l.local_addr().unwrap(), 7, None).unwrap();
        let (a, _) = l.accept().unwrap();
        assert_eq!(syn_ttl(a.as_raw_fd()).unwrap(), Some(7));
        // Set on the accepted socket, a minimum TTL takes.
        set_min_ttl(a.as_raw_fd(), false, 255).unwrap();
        assert_eq!(header_ttl(&[0x60, 0, 0, 0, 0, 0, 6, 64]), Some(64));
        assert_eq!(header_ttl(&[0x10]), None);
    }

    #[test]
    fn with_an_md5_key_only_correctly_signed_connections_get_through() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let to = l.local_addr().unwrap();
        set_tcp_md5_key(l.as_raw_fd(), false, "127.0.0.1".parse().unwrap(), b"right").unwrap();
        assert!(client(to, 64, None).is_err(), "unsigned");
        assert!(client(to, 64, Some(b"wrong")).is_err(), "wrongly signed");
        let c = client(to, 64, Some(b"right")).unwrap();
        let (a, _) = l.accept().unwrap();
        drop((a, c));
        let too_long = [b'k'; TCP_MD5_MAX_KEY + 1];
        assert!(set_tcp_md5_key(l.as_raw_fd(), false, to.ip(), &too_long).is_err());
    }
}
