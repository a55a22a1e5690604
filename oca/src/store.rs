//! The object store: one or more disk roots, and an in-memory index of the
//! committed objects on them.
//!
//! Layout of a disk root (documented in README):
//! - `<root>/objects/<key>`: committed objects, served at `/<key>`.
//! - `<root>/tmp/`: work in progress (the fill agent writes here and renames into
//!   `objects/`, so a partial object is never visible). Never served or indexed.
//!
//! Dot-files under `objects/` (e.g. rsync's `.name.XXXXXX` temporaries) are ignored.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwapOption;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::{mime, sys};

/// Health of one disk root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// Indexed and serving.
    Ok,
    /// Root missing, unreadable, not mounted (with `require_mount`) or failing
    /// its periodic check; its objects are not served or reported until a
    /// check finds it usable again.
    Missing,
    /// I/O errors seen while serving (still tried, but reported).
    Degraded,
}

impl DiskState {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskState::Ok => "ok",
            DiskState::Missing => "missing",
            DiskState::Degraded => "degraded",
        }
    }
    fn from_u8(v: u8) -> DiskState {
        match v {
            0 => DiskState::Ok,
            1 => DiskState::Missing,
            _ => DiskState::Degraded,
        }
    }
}

/// The open `<root>/objects` directory of a usable disk, the anchor for every
/// lookup, with its identity so that a remount or a swapped disk is noticed.
struct Handle {
    dir: File,
    dev: u64,
    ino: u64,
}

/// One disk root.
pub struct Disk {
    pub root: PathBuf,
    objects_path: PathBuf,
    /// None while the disk is missing.
    handle: ArcSwapOption<Handle>,
    state: AtomicU8,
    pub io_errors: AtomicU64,
    /// `io_errors` at the last check, to tell whether a degraded disk still errs.
    errors_at_check: AtomicU64,
    pub objects: AtomicU64,
    pub bytes: AtomicU64,
    /// Objects found damaged (size changed underneath) and moved to
    /// `<root>/quarantine/`.
    pub quarantined: AtomicU64,
    /// Why the disk is missing, for /health.
    problem: Mutex<Option<String>>,
}

impl Disk {
    pub fn state(&self) -> DiskState {
        DiskState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Why the disk is not served, if it is not.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_problem(&self, problem: Option<String>) {
        *self.problem.lock().unwrap_or_else(|p| p.into_inner()) = problem;
    }
}

/// What the index knows about a committed object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IndexEntry {
    disk: u16,
    size: u64,
}

/// An open object ready to serve: the file handle plus its validators, computed
/// once per open rather than per request.
#[derive(Debug)]
pub struct OpenObject {
    pub file: File,
    pub size: u64,
    pub modified: SystemTime,
    /// Strong entity-tag including quotes: `"<mtime hex>-<size hex>"` (as nginx).
    pub etag: Box<str>,
    /// IMF-fixdate of `modified`.
    pub last_modified: Box<str>,
    pub content_type: &'static str,
    pub disk: u16,
    pub opened_at: Instant,
}

/// Why a lookup did not produce an object.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("no such object")]
    NotFound,
    #[error("disk {disk} I/O error: {source}")]
    Io { disk: u16, source: io::Error },
}

/// Summary of a start-up scan, for the log.
#[derive(Debug, Default, Clone, Copy)]
pub struct ScanReport {
    pub objects: u64,
    pub bytes: u64,
    pub skipped: u64,
    pub duplicates: u64,
    pub elapsed: Duration,
}

/// Requests per rendition (directory) and when it was last requested, for the
/// fill agent's eviction order. Fed in batches from the per-worker open-file
/// caches, so the hot path never takes this lock.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub hits: u64,
    /// Unix seconds.
    pub last: u64,
}

/// The index of every disk's committed objects.
pub struct Store {
    pub disks: Vec<Disk>,
    index: RwLock<HashMap<Box<str>, IndexEntry>>,
    access: std::sync::Mutex<HashMap<Box<str>, Access>>,
}

/// One rendition as `/store/renditions` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RenditionStats {
    pub rendition: String,
    pub objects: u64,
    pub bytes: u64,
    pub hits: u64,
    pub last_access: u64,
}

impl Store {
    /// Open every disk root and index what is committed there. A root that is
    /// missing or unreadable is logged and skipped; the rest keep serving.
    pub fn open(roots: &[PathBuf]) -> (Store, ScanReport) {
        Store::open_with(roots, false)
    }

    /// As `open`; with `require_mount`, a root that is not a mount point (an
    /// unmounted disk's empty mount point) is treated as missing rather than
    /// filled on the wrong filesystem.
    pub fn open_with(roots: &[PathBuf], require_mount: bool) -> (Store, ScanReport) {
        let started = Instant::now();
        let mut disks: Vec<Disk> = roots
            .iter()
            .map(|r| prepare_disk(r, require_mount))
            .collect();
        // Scan disks in parallel: start-up time is bound by the slowest disk, not the sum.
        let scans: Vec<DiskScan> = std::thread::scope(|s| {
            let handles: Vec<_> = disks
                .iter()
                .map(|d| {
                    s.spawn(move || match d.handle.load_full() {
                        Some(h) => scan_disk(&h.dir, &d.objects_path),
                        None => DiskScan::default(),
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let mut index = HashMap::with_capacity(scans.iter().map(|s| s.objects.len()).sum());
        let mut report = ScanReport::default();
        for (disk_no, DiskScan { objects, skipped }) in scans.into_iter().enumerate() {
            report.skipped += skipped;
            let disk = &mut disks[disk_no];
            for (key, size) in objects {
                if index.contains_key(&key) {
                    report.duplicates += 1;
                    tracing::warn!(key = %key, disk = %disk.root.display(), "object present on two disks; serving the first");
                    continue;
                }
                index.insert(
                    key,
                    IndexEntry {
                        disk: disk_no as u16,
                        size,
                    },
                );
                *disk.objects.get_mut() += 1;
                *disk.bytes.get_mut() += size;
                report.objects += 1;
                report.bytes += size;
            }
        }
        report.elapsed = started.elapsed();
        (
            Store {
                disks,
                index: RwLock::new(index),
                access: std::sync::Mutex::new(HashMap::new()),
            },
            report,
        )
    }

    /// Objects and bytes currently indexed, across all disks.
    pub fn totals(&self) -> (u64, u64) {
        self.disks.iter().fold((0, 0), |(o, b), d| {
            (
                o + d.objects.load(Ordering::Relaxed),
                b + d.bytes.load(Ordering::Relaxed),
            )
        })
    }

    /// What this appliance holds, per rendition: objects grouped by their parent
    /// directory (`titles/t1/v720/seg-1.m4s` belongs to `titles/t1/v720`), with
    /// counts and bytes, so the control plane can tell complete renditions from
    /// partial ones against its catalog.
    pub fn renditions(&self) -> Vec<control_client::wire::RenditionHolding> {
        let mut by: std::collections::BTreeMap<&str, (u64, u64)> =
            std::collections::BTreeMap::new();
        let index = self.read_index();
        for (key, e) in index.iter() {
            let Some((dir, _)) = key.rsplit_once('/') else {
                continue;
            };
            let slot = by.entry(dir).or_default();
            slot.0 += 1;
            slot.1 += e.size;
        }
        by.into_iter()
            .map(
                |(r, (objects, bytes))| control_client::wire::RenditionHolding {
                    rendition: r.to_owned(),
                    objects,
                    bytes,
                },
            )
            .collect()
    }

    /// Count `hits` requests for `key` at `now` (unix seconds).
    pub fn note_access(&self, key: &str, hits: u64, now: u64) {
        let Some((dir, _)) = key.rsplit_once('/') else {
            return;
        };
        let mut access = self.access.lock().unwrap_or_else(|p| p.into_inner());
        match access.get_mut(dir) {
            Some(a) => {
                a.hits += hits;
                a.last = a.last.max(now);
            }
            None => {
                access.insert(dir.into(), Access { hits, last: now });
            }
        }
    }

    /// Per-rendition holdings with their access statistics.
    pub fn rendition_stats(&self) -> Vec<RenditionStats> {
        let access = self
            .access
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.renditions()
            .into_iter()
            .map(|r| {
                let a = access
                    .get(r.rendition.as_str())
                    .copied()
                    .unwrap_or_default();
                RenditionStats {
                    rendition: r.rendition,
                    objects: r.objects,
                    bytes: r.bytes,
                    hits: a.hits,
                    last_access: a.last,
                }
            })
            .collect()
    }

    /// Look `key` up on disk again: index it if it is there (a fill agent just
    /// committed it), drop it if not (evicted). Returns the size if present.
    pub fn refresh(&self, key: &str) -> Result<Option<u64>, LookupError> {
        self.forget(key);
        for disk_no in 0..self.disks.len() as u16 {
            match self.open_on(disk_no, key) {
                Ok(obj) => {
                    self.remember(key, disk_no, obj.size);
                    return Ok(Some(obj.size));
                }
                Err(LookupError::NotFound) => continue,
                Err(err) => return Err(err),
            }
        }
        Ok(None)
    }

    /// Total size of the filesystems holding the usable disk roots, each
    /// filesystem counted once.
    pub fn storage_bytes(&self) -> u64 {
        let mut seen = Vec::new();
        let mut total = 0u64;
        for d in self
            .disks
            .iter()
            .filter(|d| d.state() != DiskState::Missing)
        {
            let (Ok(st), Ok(vfs)) = (rustix::fs::stat(&d.root), rustix::fs::statvfs(&d.root))
            else {
                continue;
            };
            if !seen.contains(&st.st_dev) {
                seen.push(st.st_dev);
                total = total.saturating_add(vfs.f_blocks.saturating_mul(vfs.f_frsize));
            }
        }
        total
    }

    /// Whether the index holds `key` (no I/O).
    pub fn contains(&self, key: &str) -> bool {
        self.read_index().contains_key(key)
    }

    /// Open a committed object by key.
    ///
    /// Unknown keys are looked for on disk too, so objects an operator copies in
    /// after start are served (and indexed) without a restart; an indexed object
    /// that has disappeared is dropped from the index.
    pub fn open_object(&self, key: &str) -> Result<OpenObject, LookupError> {
        let entry = self.read_index().get(key).copied();
        match entry {
            Some(e) => match self.open_on(e.disk, key) {
                // Objects are immutable: a size other than the indexed one means
                // the file was truncated or overwritten underneath us. Never
                // serve it; the fill agent fetches it again.
                Ok(obj) if obj.size != e.size => {
                    let why = format!("size {} where {} was indexed", obj.size, e.size);
                    drop(obj);
                    self.quarantine(e.disk, key, &why);
                    Err(LookupError::NotFound)
                }
                Ok(obj) => Ok(obj),
                Err(LookupError::NotFound) => {
                    self.forget(key);
                    Err(LookupError::NotFound)
                }
                Err(err) => Err(err),
            },
            None => {
                for disk_no in 0..self.disks.len() as u16 {
                    match self.open_on(disk_no, key) {
                        Ok(obj) => {
                            self.remember(key, disk_no, obj.size);
                            return Ok(obj);
                        }
                        Err(LookupError::NotFound) => continue,
                        Err(err) => return Err(err),
                    }
                }
                Err(LookupError::NotFound)
            }
        }
    }

    /// Record an I/O error against a disk (e.g. sendfile failing with EIO).
    pub fn record_io_error(&self, disk: u16) {
        if let Some(d) = self.disks.get(disk as usize) {
            d.io_errors.fetch_add(1, Ordering::Relaxed);
            let _ = d.state.compare_exchange(
                DiskState::Ok as u8,
                DiskState::Degraded as u8,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
    }

    /// Move a damaged object out of `objects/` (into `<root>/quarantine/`, for
    /// inspection) and out of the index, so it is neither served nor reported.
    pub fn quarantine(&self, disk_no: u16, key: &str, why: &str) {
        let Some(disk) = self.disks.get(disk_no as usize) else {
            return;
        };
        // (Per-worker open-file caches drop it themselves: on the failed open,
        // or in the connection that saw it shrink.)
        self.forget(key);
        disk.quarantined.fetch_add(1, Ordering::Relaxed);
        let dir = disk.root.join("quarantine");
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let to = dir.join(format!("{stamp}-{}", key.replace('/', "%2F")));
        let from = disk.objects_path.join(key);
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::rename(&from, &to)) {
            Ok(()) => tracing::error!(
                key, disk = %disk.root.display(), why, to = %to.display(),
                "damaged object quarantined"
            ),
            // Left in place it would be indexed again as it is now: remove it.
            Err(e) => {
                let removed = std::fs::remove_file(&from);
                tracing::error!(
                    key, disk = %disk.root.display(), why, error = %e,
                    removed = removed.is_ok(),
                    "damaged object could not be quarantined"
                );
            }
        }
    }

    /// Check every disk (run periodically, off the serving threads): a usable
    /// disk that fails (vanished, unreadable, unmounted, I/O errors on its
    /// directory) is taken out: its objects leave the index, so they are
    /// neither served nor reported, and the control plane steers and fills
    /// around them. A missing disk that is usable again (remounted, replaced,
    /// permissions fixed) is indexed again and served. A degraded disk with no
    /// new I/O errors since the last check is ok again.
    pub fn check_disks(&self, require_mount: bool) {
        for no in 0..self.disks.len() {
            let disk = &self.disks[no];
            let current = disk.handle.load_full();
            match open_layout(&disk.root, &disk.objects_path, require_mount) {
                Err(reason) => {
                    if current.is_some() {
                        self.take_out(no, reason);
                    } else {
                        disk.set_problem(Some(reason));
                    }
                }
                Ok(found) => match current {
                    Some(c) if c.dev == found.dev && c.ino == found.ino => {
                        let errors = disk.io_errors.load(Ordering::Relaxed);
                        let before = disk.errors_at_check.swap(errors, Ordering::Relaxed);
                        if errors == before
                            && disk
                                .state
                                .compare_exchange(
                                    DiskState::Degraded as u8,
                                    DiskState::Ok as u8,
                                    Ordering::Relaxed,
                                    Ordering::Relaxed,
                                )
                                .is_ok()
                        {
                            tracing::info!(disk = %disk.root.display(), "no new I/O errors; disk ok again");
                        }
                    }
                    Some(_) => {
                        self.take_out(no, "another filesystem is mounted there now".into());
                        self.bring_back(no, found);
                    }
                    None => self.bring_back(no, found),
                },
            }
        }
    }

    fn take_out(&self, no: usize, reason: String) {
        let disk = &self.disks[no];
        disk.handle.store(None);
        // The problem before the state: /health never shows a missing disk
        // without its reason.
        disk.set_problem(Some(reason.clone()));
        disk.state
            .store(DiskState::Missing as u8, Ordering::Relaxed);
        let dropped = {
            let mut index = self.write_index();
            let before = index.len();
            index.retain(|_, e| e.disk as usize != no);
            before - index.len()
        };
        disk.objects.store(0, Ordering::Relaxed);
        disk.bytes.store(0, Ordering::Relaxed);
        tracing::error!(
            disk = %disk.root.display(), problem = %reason, objects = dropped,
            "disk taken out of service"
        );
    }

    fn bring_back(&self, no: usize, handle: Handle) {
        let disk = &self.disks[no];
        let scan = scan_disk(&handle.dir, &disk.objects_path);
        let (mut objects, mut bytes, mut duplicates) = (0u64, 0u64, 0u64);
        {
            let mut index = self.write_index();
            for (key, size) in scan.objects {
                if index.contains_key(&key) {
                    duplicates += 1;
                    continue;
                }
                index.insert(
                    key,
                    IndexEntry {
                        disk: no as u16,
                        size,
                    },
                );
                objects += 1;
                bytes += size;
            }
        }
        disk.objects.store(objects, Ordering::Relaxed);
        disk.bytes.store(bytes, Ordering::Relaxed);
        disk.errors_at_check
            .store(disk.io_errors.load(Ordering::Relaxed), Ordering::Relaxed);
        disk.handle.store(Some(Arc::new(handle)));
        disk.set_problem(None);
        disk.state.store(DiskState::Ok as u8, Ordering::Relaxed);
        tracing::warn!(
            disk = %disk.root.display(), objects, bytes, duplicates, skipped = scan.skipped,
            "disk back in service"
        );
    }

    fn open_on(&self, disk_no: u16, key: &str) -> Result<OpenObject, LookupError> {
        let disk = &self.disks[disk_no as usize];
        let handle = disk.handle.load();
        let Some(handle) = handle.as_ref() else {
            return Err(LookupError::NotFound);
        };
        let file = match sys::open_beneath(&handle.dir, &disk.objects_path, key) {
            Ok(f) => f,
            Err(e) if sys::is_absent(&e) => return Err(LookupError::NotFound),
            Err(source) => {
                self.record_io_error(disk_no);
                return Err(LookupError::Io {
                    disk: disk_no,
                    source,
                });
            }
        };
        let meta = file.metadata().map_err(|source| {
            self.record_io_error(disk_no);
            LookupError::Io {
                disk: disk_no,
                source,
            }
        })?;
        if !meta.is_file() {
            return Err(LookupError::NotFound);
        }
        sys::advise_sequential(&file);
        let mtime_secs = validator_secs(meta.mtime());
        let modified = UNIX_EPOCH + Duration::from_secs(mtime_secs);
        Ok(OpenObject {
            etag: format!("\"{:x}-{:x}\"", mtime_secs, meta.len()).into_boxed_str(),
            last_modified: httpdate::fmt_http_date(modified).into_boxed_str(),
            content_type: mime::for_key(key),
            size: meta.len(),
            modified,
            file,
            disk: disk_no,
            opened_at: Instant::now(),
        })
    }

    fn remember(&self, key: &str, disk: u16, size: u64) {
        let mut index = self.write_index();
        if index
            .insert(key.into(), IndexEntry { disk, size })
            .is_none()
        {
            let d = &self.disks[disk as usize];
            d.objects.fetch_add(1, Ordering::Relaxed);
            d.bytes.fetch_add(size, Ordering::Relaxed);
        }
    }

    fn forget(&self, key: &str) {
        if let Some(e) = self.write_index().remove(key) {
            let d = &self.disks[e.disk as usize];
            d.objects.fetch_sub(1, Ordering::Relaxed);
            d.bytes.fetch_sub(e.size, Ordering::Relaxed);
        }
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Box<str>, IndexEntry>> {
        // A panic while holding the lock cannot leave the map half-updated (every
        // write is a single insert/remove), so a poisoned lock is still usable.
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Box<str>, IndexEntry>> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// A file's mtime as the seconds its validators (Last-Modified, ETag) use:
/// 1970 to 9999-12-31 23:59:59, since an HTTP date cannot say earlier or later
/// (and the formatter panics past 9999), whatever timestamp a file carries.
fn validator_secs(mtime: i64) -> u64 {
    (mtime.max(0) as u64).min(253_402_300_799)
}

fn prepare_disk(root: &Path, require_mount: bool) -> Disk {
    let objects_path = root.join("objects");
    let (handle, problem) = match open_layout(root, &objects_path, require_mount) {
        Ok(h) => (Some(Arc::new(h)), None),
        Err(p) => {
            tracing::error!(root = %root.display(), problem = %p, "disk root skipped");
            (None, Some(p))
        }
    };
    Disk {
        root: root.to_owned(),
        objects_path,
        state: AtomicU8::new(if handle.is_some() {
            DiskState::Ok as u8
        } else {
            DiskState::Missing as u8
        }),
        handle: ArcSwapOption::new(handle),
        io_errors: AtomicU64::new(0),
        errors_at_check: AtomicU64::new(0),
        objects: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        quarantined: AtomicU64::new(0),
        problem: Mutex::new(problem),
    }
}

/// Open a disk root's `objects/` (making the layout on a fresh disk), or say
/// why the disk cannot be used.
fn open_layout(root: &Path, objects_path: &Path, require_mount: bool) -> Result<Handle, String> {
    let meta =
        std::fs::metadata(root).map_err(|e| format!("cannot access {}: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    if require_mount && !is_mount_point(root, &meta) {
        return Err(format!(
            "{} is not a mount point (disk not mounted?)",
            root.display()
        ));
    }
    // Create the layout on a fresh disk; an existing one is left alone.
    for sub in ["objects", "tmp"] {
        let p = root.join(sub);
        if !p.exists()
            && let Err(e) = std::fs::create_dir(&p)
        {
            tracing::warn!(path = %p.display(), error = %e, "cannot create store directory");
        }
    }
    let dir = File::open(objects_path)
        .map_err(|e| format!("cannot open {}: {e}", objects_path.display()))?;
    // Reading the directory proves the disk answers (permissions, I/O).
    std::fs::read_dir(objects_path)
        .and_then(|mut entries| entries.next().transpose())
        .map_err(|e| format!("cannot read {}: {e}", objects_path.display()))?;
    let meta = dir
        .metadata()
        .map_err(|e| format!("cannot stat {}: {e}", objects_path.display()))?;
    Ok(Handle {
        dir,
        dev: meta.dev(),
        ino: meta.ino(),
    })
}

/// Whether `root` is the top of a filesystem (its parent is on another
/// device, or it is `/`).
fn is_mount_point(root: &Path, meta: &std::fs::Metadata) -> bool {
    match std::fs::metadata(root.join("..")) {
        Ok(parent) => parent.dev() != meta.dev() || parent.ino() == meta.ino(),
        Err(_) => false,
    }
}

/// What one disk's start-up walk found.
#[derive(Default)]
struct DiskScan {
    /// (key, size) of every committed object.
    objects: Vec<(Box<str>, u64)>,
    skipped: u64,
}

/// Walk `<root>/objects`, returning (key, size) for every regular file and the
/// number of entries skipped (dot-files, names that are not valid keys, symlinks
/// leading out of the root, unreadable entries).
fn scan_disk(dir: &File, objects_path: &Path) -> DiskScan {
    let mut found = Vec::new();
    let mut skipped = 0;
    let mut stack = vec![String::new()];
    while let Some(prefix) = stack.pop() {
        let path = objects_path.join(&prefix);
        let entries = match std::fs::read_dir(&path) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "unreadable directory skipped");
                skipped += 1;
                continue;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else {
                skipped += 1;
                continue;
            };
            if name.starts_with('.') || !crate::path::is_valid_segment(name) {
                skipped += 1;
                continue;
            }
            let key = if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}/{name}")
            };
            let Ok(ft) = entry.file_type() else {
                skipped += 1;
                continue;
            };
            if ft.is_dir() {
                stack.push(key);
            } else if ft.is_file() {
                match entry.metadata() {
                    Ok(m) => found.push((key.into_boxed_str(), m.len())),
                    Err(_) => skipped += 1,
                }
            } else if ft.is_symlink() {
                // Only symlinks that resolve inside the root count; serving goes through
                // the same beneath-the-root open, so this keeps index and serving in step.
                match sys::open_beneath(dir, objects_path, &key).and_then(|f| f.metadata()) {
                    Ok(m) if m.is_file() => found.push((key.into_boxed_str(), m.len())),
                    _ => skipped += 1,
                }
            } else {
                skipped += 1;
            }
        }
    }
    DiskScan {
        objects: found,
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validator_dates_stay_within_what_http_can_say() {
        assert_eq!(validator_secs(-5), 0);
        assert_eq!(validator_secs(1_700_000_000), 1_700_000_000);
        let latest = validator_secs(i64::MAX);
        assert_eq!(latest, 253_402_300_799);
        // The formatter takes the clamped value (it panics past 9999).
        let date = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(latest));
        assert_eq!(date, "Fri, 31 Dec 9999 23:59:59 GMT");
    }
}
