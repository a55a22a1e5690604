//! Common Encryption (ISO/IEC 23001-7), `cenc` scheme (AES-128-CTR), applied
//! to fragmented MP4 that ffmpeg has packaged in the clear.
//!
//! ffmpeg's own CENC (`-encryption_scheme cenc-aes-ctr`) writes the sample
//! entry and `tenc`, but in fragmented output it leaves the fragments without
//! `senc`/`saiz`/`saio` (Debian 12's 5.1, measured): players cannot decrypt
//! them. So packaging stays ffmpeg's and this module rewrites its output:
//!
//! - **init segments**: each `avc1`/`hvc1`/`hev1`/`mp4a` sample entry becomes
//!   `encv`/`enca` with a `sinf` (`frma` with the original format, `schm`
//!   `cenc` 1.0, `schi`/`tenc` with the key ID and 8-byte per-sample IVs), and
//!   the `moov` gets a `pssh` of the W3C Common PSSH system listing the key ID;
//! - **media segments**: every sample of every `moof`/`mdat` is encrypted in
//!   place: video NAL by NAL (*subsample* encryption: the length prefix, the
//!   NAL header and whatever makes the rest a whole number of AES blocks stay
//!   clear; parameter sets and SEI stay clear whole), audio whole; each
//!   `traf` gets `senc` (the IVs and subsample maps), `saiz` and `saio`, and
//!   `trun` data offsets and `sidx` sizes grow by what was added.
//!
//! Pure: bytes, the key and an IV source in, bytes out. [`decrypt_segment`]
//! undoes [`encrypt_segment`] (tests and the packager's self-check use it);
//! ffmpeg's own decryption (`-decryption_key`) is the independent check, in
//! the tests.

use aes::Aes128;
use ctr::cipher::{KeyIvInit, StreamCipher};

type Ctr = ctr::Ctr128BE<Aes128>;

/// The W3C Common PSSH system (https://w3c.github.io/encrypted-media/format-registry/initdata/cenc.html).
pub const COMMON_SYSTEM_ID: [u8; 16] = [
    0x10, 0x77, 0xef, 0xec, 0xc0, 0xb2, 0x4d, 0x02, 0xac, 0xe3, 0x3c, 0x1e, 0x52, 0xe2, 0xfb, 0x4b,
];

/// Per-sample IV size: 8 bytes, the counter block's upper half.
const IV_SIZE: usize = 8;
/// AES block size: protected ranges are kept whole blocks long.
const BLOCK: usize = 16;

/// A content key and its ID.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub kid: [u8; 16],
    pub key: [u8; 16],
}

impl Key {
    /// A fresh key and key ID from the system's random source.
    pub fn random() -> std::io::Result<Key> {
        let mut b = [0u8; 32];
        random_bytes(&mut b)?;
        let (mut kid, mut key) = ([0u8; 16], [0u8; 16]);
        kid.copy_from_slice(&b[..16]);
        key.copy_from_slice(&b[16..]);
        Ok(Key { kid, key })
    }
}

/// Bytes from the kernel's random source.
pub fn random_bytes(out: &mut [u8]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(out)
}

/// Per-sample IVs for one rendition: a random 64-bit start, counting up.
/// Under one key the IV ranges of a title's renditions overlap with odds of
/// about samples × renditions in 2^64, and the block counter lives in the
/// counter block's other half, so no keystream is ever used twice.
pub fn iv_counter() -> std::io::Result<impl FnMut() -> [u8; IV_SIZE]> {
    let mut b = [0u8; 8];
    random_bytes(&mut b)?;
    let mut n = u64::from_be_bytes(b);
    Ok(move || {
        n = n.wrapping_add(1);
        n.to_be_bytes()
    })
}

impl std::fmt::Debug for Key {
    /// The key itself never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &hex(&self.kid))
            .finish_non_exhaustive()
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CencError {
    #[error("malformed MP4: {0}")]
    Malformed(String),
    #[error("unsupported MP4: {0}")]
    Unsupported(String),
}

fn bad(msg: impl Into<String>) -> CencError {
    CencError::Malformed(msg.into())
}

/// What segments of a track need from its init segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Track {
    /// Video NAL length-prefix size (1, 2 or 4; from `avcC`/`hvcC`); None:
    /// not NAL-structured (audio), encrypted whole.
    pub nal_length: Option<usize>,
    /// NAL header size: 1 for AVC, 2 for HEVC.
    pub nal_header: usize,
    /// AVC or HEVC (NAL types differ).
    pub hevc: bool,
    /// `trex` default sample size, for fragments that name none.
    pub default_sample_size: u32,
}

// ---- boxes -------------------------------------------------------------

/// An MP4 box: its type and either raw payload or a fixed prefix and children.
#[derive(Debug, Clone, PartialEq)]
struct Mp4Box {
    kind: [u8; 4],
    /// Bytes after the header (leaf), or before the children (container).
    data: Vec<u8>,
    children: Option<Vec<Mp4Box>>,
}

/// Bytes before the children of the containers we descend into; None: a leaf.
fn container_prefix(kind: &[u8; 4]) -> Option<usize> {
    Some(match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"stbl" | b"moof" | b"traf" | b"mvex" | b"sinf"
        | b"schi" | b"edts" | b"dinf" => 0,
        // Full box and entry count.
        b"stsd" => 8,
        // VisualSampleEntry.
        b"avc1" | b"avc3" | b"hvc1" | b"hev1" | b"encv" => 78,
        // AudioSampleEntry (version 0).
        b"mp4a" | b"enca" => 28,
        _ => return None,
    })
}

fn parse(mut b: &[u8]) -> Result<Vec<Mp4Box>, CencError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        if b.len() < 8 {
            return Err(bad(format!("{} stray bytes after the last box", b.len())));
        }
        let size32 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let kind = [b[4], b[5], b[6], b[7]];
        let (header, size) = match size32 {
            0 => (8, b.len() as u64),
            1 => {
                if b.len() < 16 {
                    return Err(bad("truncated 64-bit box size"));
                }
                let mut s = [0u8; 8];
                s.copy_from_slice(&b[8..16]);
                (16, u64::from_be_bytes(s))
            }
            s => (8, s),
        };
        if size < header as u64 || size > b.len() as u64 {
            return Err(bad(format!(
                "box {} claims {size} bytes, {} left",
                String::from_utf8_lossy(&kind),
                b.len()
            )));
        }
        let body = &b[header..size as usize];
        let boxed = match container_prefix(&kind) {
            Some(p) if body.len() >= p => Mp4Box {
                kind,
                data: body[..p].to_vec(),
                children: Some(parse(&body[p..])?),
            },
            Some(_) => {
                return Err(bad(format!(
                    "box {} too short",
                    String::from_utf8_lossy(&kind)
                )));
            }
            None => Mp4Box {
                kind,
                data: body.to_vec(),
                children: None,
            },
        };
        out.push(boxed);
        b = &b[size as usize..];
    }
    Ok(out)
}

impl Mp4Box {
    fn leaf(kind: &[u8; 4], data: Vec<u8>) -> Mp4Box {
        Mp4Box {
            kind: *kind,
            data,
            children: None,
        }
    }

    fn container(kind: &[u8; 4], children: Vec<Mp4Box>) -> Mp4Box {
        Mp4Box {
            kind: *kind,
            data: Vec::new(),
            children: Some(children),
        }
    }

    fn body_len(&self) -> u64 {
        self.data.len() as u64
            + self
                .children
                .as_ref()
                .map_or(0, |c| c.iter().map(Mp4Box::len).sum())
    }

    fn len(&self) -> u64 {
        let body = self.body_len();
        if body + 8 > u32::MAX as u64 {
            body + 16
        } else {
            body + 8
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        let len = self.len();
        if len > u32::MAX as u64 {
            out.extend_from_slice(&1u32.to_be_bytes());
            out.extend_from_slice(&self.kind);
            out.extend_from_slice(&len.to_be_bytes());
        } else {
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.extend_from_slice(&self.kind);
        }
        out.extend_from_slice(&self.data);
        for c in self.children.iter().flatten() {
            c.write(out);
        }
    }

    fn kids(&self) -> &[Mp4Box] {
        self.children.as_deref().unwrap_or(&[])
    }

    fn kids_mut(&mut self) -> &mut Vec<Mp4Box> {
        self.children.get_or_insert_with(Vec::new)
    }

    fn child(&self, kind: &[u8; 4]) -> Option<&Mp4Box> {
        self.kids().iter().find(|c| &c.kind == kind)
    }

    fn child_mut(&mut self, kind: &[u8; 4]) -> Option<&mut Mp4Box> {
        self.kids_mut().iter_mut().find(|c| &c.kind == kind)
    }
}

fn serialize(boxes: &[Mp4Box]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in boxes {
        b.write(&mut out);
    }
    out
}

fn full_box(version: u8, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.push(version);
    v.extend_from_slice(&flags.to_be_bytes()[1..]);
    v.extend_from_slice(payload);
    v
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, CencError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad("truncated field"))
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, CencError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| bad("truncated field"))
}

fn flags(full: &[u8]) -> Result<u32, CencError> {
    u32_at(full, 0).map(|v| v & 0x00ff_ffff)
}

// ---- init segments -------------------------------------------------------

/// What each track (by track ID) of an init segment's segments needs.
pub type Tracks = Vec<(u32, Track)>;

/// The init segment protected with `key`, and what its segments need to know.
pub fn protect_init(init: &[u8], key: &Key) -> Result<(Vec<u8>, Tracks), CencError> {
    let mut boxes = parse(init)?;
    let moov = boxes
        .iter_mut()
        .find(|b| &b.kind == b"moov")
        .ok_or_else(|| bad("no moov"))?;
    // trex: default sample sizes by track ID.
    let mut defaults = Vec::new();
    if let Some(mvex) = moov.child(b"mvex") {
        for trex in mvex.kids().iter().filter(|b| &b.kind == b"trex") {
            defaults.push((u32_at(&trex.data, 4)?, u32_at(&trex.data, 16)?));
        }
    }
    let mut tracks = Vec::new();
    for trak in moov.kids_mut().iter_mut().filter(|b| &b.kind == b"trak") {
        let tkhd = trak
            .child(b"tkhd")
            .ok_or_else(|| bad("a track without tkhd"))?;
        let id = u32_at(
            &tkhd.data,
            if tkhd.data.first() == Some(&1) {
                20
            } else {
                12
            },
        )?;
        let stsd = trak
            .child_mut(b"mdia")
            .and_then(|b| b.child_mut(b"minf"))
            .and_then(|b| b.child_mut(b"stbl"))
            .and_then(|b| b.child_mut(b"stsd"))
            .ok_or_else(|| bad("a track without stsd"))?;
        let entries = stsd.kids_mut();
        if entries.len() != 1 {
            return Err(CencError::Unsupported(format!(
                "{} sample entries",
                entries.len()
            )));
        }
        let t = protect_entry(&mut entries[0], key)?;
        let default_sample_size = defaults.iter().find(|d| d.0 == id).map_or(0, |d| d.1);
        tracks.push((
            id,
            Track {
                default_sample_size,
                ..t
            },
        ));
    }
    if tracks.is_empty() {
        return Err(bad("no track to protect"));
    }
    // pssh version 1: the key ID in the box, no system data.
    let mut pssh = Vec::new();
    pssh.extend_from_slice(&COMMON_SYSTEM_ID);
    pssh.extend_from_slice(&1u32.to_be_bytes());
    pssh.extend_from_slice(&key.kid);
    pssh.extend_from_slice(&0u32.to_be_bytes());
    moov.kids_mut()
        .push(Mp4Box::leaf(b"pssh", full_box(1, 0, &pssh)));
    Ok((serialize(&boxes), tracks))
}

fn protect_entry(entry: &mut Mp4Box, key: &Key) -> Result<Track, CencError> {
    let original = entry.kind;
    let (protected, track) = match &original {
        b"avc1" | b"avc3" => (*b"encv", nal_track(entry, b"avcC", 1, false)?),
        b"hvc1" | b"hev1" => (*b"encv", nal_track(entry, b"hvcC", 2, true)?),
        b"mp4a" => (
            *b"enca",
            Track {
                nal_length: None,
                nal_header: 0,
                hevc: false,
                default_sample_size: 0,
            },
        ),
        b"encv" | b"enca" => return Err(CencError::Unsupported("already encrypted".into())),
        other => {
            return Err(CencError::Unsupported(format!(
                "sample entry {}",
                String::from_utf8_lossy(other)
            )));
        }
    };
    let mut tenc = vec![0u8, 0, 1, IV_SIZE as u8];
    tenc.extend_from_slice(&key.kid);
    let mut schm = Vec::new();
    schm.extend_from_slice(b"cenc");
    schm.extend_from_slice(&0x0001_0000u32.to_be_bytes());
    let sinf = Mp4Box::container(
        b"sinf",
        vec![
            Mp4Box::leaf(b"frma", original.to_vec()),
            Mp4Box::leaf(b"schm", full_box(0, 0, &schm)),
            Mp4Box::container(b"schi", vec![Mp4Box::leaf(b"tenc", full_box(0, 0, &tenc))]),
        ],
    );
    entry.kind = protected;
    entry.kids_mut().push(sinf);
    Ok(track)
}

fn nal_track(
    entry: &Mp4Box,
    config: &[u8; 4],
    header: usize,
    hevc: bool,
) -> Result<Track, CencError> {
    let c = entry
        .child(config)
        .ok_or_else(|| bad(format!("no {}", String::from_utf8_lossy(config))))?;
    // avcC: lengthSizeMinusOne in byte 4; hvcC: in byte 21.
    let at = if hevc { 21 } else { 4 };
    let size = c
        .data
        .get(at)
        .ok_or_else(|| bad("short decoder configuration"))?
        & 3;
    Ok(Track {
        nal_length: Some(usize::from(size) + 1),
        nal_header: header,
        hevc,
        default_sample_size: 0,
    })
}

// ---- media segments ------------------------------------------------------

/// One sample's encryption: its IV and (clear, protected) byte ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SampleAux {
    iv: [u8; IV_SIZE],
    subsamples: Vec<(u16, u32)>,
}

/// Whether a NAL unit carries picture data (the rest stays clear whole).
fn is_vcl(track: &Track, nal: &[u8]) -> bool {
    let Some(&first) = nal.first() else {
        return false;
    };
    if track.hevc {
        (first >> 1) & 0x3f < 32
    } else {
        (1..=5).contains(&(first & 0x1f))
    }
}

/// Subsample map of one video sample: per NAL, the prefix, header and the
/// remainder that is not a whole block clear, the blocks protected.
fn subsamples(track: &Track, sample: &[u8], len: usize) -> Result<Vec<(u16, u32)>, CencError> {
    let mut out: Vec<(u16, u32)> = Vec::new();
    let mut clear_run = 0usize;
    let mut at = 0;
    while at < sample.len() {
        if at + len > sample.len() {
            return Err(bad("a NAL length runs past its sample"));
        }
        let n = sample[at..at + len]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        let end = at + len + n;
        if end > sample.len() {
            return Err(bad("a NAL unit runs past its sample"));
        }
        let nal = &sample[at + len..end];
        let mut protected = 0;
        if is_vcl(track, nal) && nal.len() > track.nal_header {
            protected = (nal.len() - track.nal_header) / BLOCK * BLOCK;
        }
        clear_run += len + nal.len() - protected;
        if protected > 0 {
            push_subsample(&mut out, clear_run, protected);
            clear_run = 0;
        }
        at = end;
    }
    if clear_run > 0 {
        push_subsample(&mut out, clear_run, 0);
    }
    Ok(out)
}

/// A (clear, protected) entry; clear runs longer than 16 bits are split.
fn push_subsample(out: &mut Vec<(u16, u32)>, mut clear: usize, protected: usize) {
    while clear > usize::from(u16::MAX) {
        out.push((u16::MAX, 0));
        clear -= usize::from(u16::MAX);
    }
    out.push((clear as u16, protected as u32));
}

/// Apply AES-CTR to the protected ranges of `sample` (encrypting and
/// decrypting are the same operation).
fn apply(key: &Key, aux: &SampleAux, sample: &mut [u8]) {
    let mut iv = [0u8; 16];
    iv[..IV_SIZE].copy_from_slice(&aux.iv);
    let mut cipher = Ctr::new(&key.key.into(), &iv.into());
    if aux.subsamples.is_empty() {
        cipher.apply_keystream(sample);
        return;
    }
    let mut at = 0;
    for &(clear, protected) in &aux.subsamples {
        at += usize::from(clear);
        let end = (at + protected as usize).min(sample.len());
        // One keystream across the sample's protected ranges.
        cipher.apply_keystream(&mut sample[at.min(end)..end]);
        at = end;
    }
}

/// Sample sizes of a `traf` and where its data starts, relative to its moof.
fn samples(traf: &Mp4Box, track: &Track) -> Result<(Vec<u32>, usize), CencError> {
    let tfhd = traf
        .child(b"tfhd")
        .ok_or_else(|| bad("traf without tfhd"))?;
    let tf = flags(&tfhd.data)?;
    if tf & 0x1 != 0 {
        return Err(CencError::Unsupported("tfhd base_data_offset".into()));
    }
    let mut at = 8; // version/flags, track_ID
    if tf & 0x2 != 0 {
        at += 4;
    }
    if tf & 0x8 != 0 {
        at += 4;
    }
    let default_size = if tf & 0x10 != 0 {
        u32_at(&tfhd.data, at)?
    } else {
        track.default_sample_size
    };
    let truns: Vec<&Mp4Box> = traf.kids().iter().filter(|b| &b.kind == b"trun").collect();
    // One trun per traf is what ffmpeg writes; several would each need their own offset.
    if truns.len() != 1 {
        return Err(CencError::Unsupported(format!(
            "{} truns in a traf",
            truns.len()
        )));
    }
    let trun = &truns[0].data;
    let f = flags(trun)?;
    let count = u32_at(trun, 4)? as usize;
    let mut at = 8;
    if f & 0x1 == 0 {
        return Err(CencError::Unsupported("trun without a data offset".into()));
    }
    let offset = i32::from_be_bytes(u32_at(trun, at)?.to_be_bytes());
    at += 4;
    if f & 0x4 != 0 {
        at += 4;
    }
    let per = [0x100, 0x200, 0x400, 0x800]
        .iter()
        .filter(|&&bit| f & bit != 0)
        .count()
        * 4;
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let entry = at + i * per;
        let size = if f & 0x200 != 0 {
            let skip = if f & 0x100 != 0 { 4 } else { 0 };
            u32_at(trun, entry + skip)?
        } else {
            default_size
        };
        sizes.push(size);
    }
    if trun.len() < at + count * per {
        return Err(bad("trun shorter than its samples"));
    }
    let offset = usize::try_from(offset).map_err(|_| bad("negative data offset"))?;
    Ok((sizes, offset))
}

/// Add `delta` to a trun's data offset.
fn shift_trun(trun: &mut [u8], delta: i64) -> Result<(), CencError> {
    let old = i64::from(i32::from_be_bytes(u32_at(trun, 8)?.to_be_bytes()));
    let new = i32::try_from(old + delta).map_err(|_| bad("data offset out of range"))?;
    trun[8..12].copy_from_slice(&new.to_be_bytes());
    Ok(())
}

fn senc_box(aux: &[SampleAux]) -> Mp4Box {
    let sub = aux.iter().any(|a| !a.subsamples.is_empty());
    let mut p = Vec::new();
    p.extend_from_slice(&(aux.len() as u32).to_be_bytes());
    for a in aux {
        p.extend_from_slice(&a.iv);
        if sub {
            p.extend_from_slice(&(a.subsamples.len() as u16).to_be_bytes());
            for &(c, e) in &a.subsamples {
                p.extend_from_slice(&c.to_be_bytes());
                p.extend_from_slice(&e.to_be_bytes());
            }
        }
    }
    Mp4Box::leaf(b"senc", full_box(0, if sub { 2 } else { 0 }, &p))
}

fn saiz_box(aux: &[SampleAux]) -> Mp4Box {
    let sub = aux.iter().any(|a| !a.subsamples.is_empty());
    let sizes: Vec<u8> = aux
        .iter()
        .map(|a| {
            let n = if sub { 2 + 6 * a.subsamples.len() } else { 0 };
            (IV_SIZE + n).min(255) as u8
        })
        .collect();
    let mut p = Vec::new();
    let same = sizes.windows(2).all(|w| w[0] == w[1]);
    p.push(if same {
        sizes.first().copied().unwrap_or(0)
    } else {
        0
    });
    p.extend_from_slice(&(aux.len() as u32).to_be_bytes());
    if !same {
        p.extend_from_slice(&sizes);
    }
    Mp4Box::leaf(b"saiz", full_box(0, 0, &p))
}

/// A traf's track: its `tfhd` track ID looked up in `tracks`.
fn traf_track<'t>(traf: &Mp4Box, tracks: &'t [(u32, Track)]) -> Result<&'t Track, CencError> {
    let tfhd = traf
        .child(b"tfhd")
        .ok_or_else(|| bad("traf without tfhd"))?;
    let id = u32_at(&tfhd.data, 4)?;
    tracks
        .iter()
        .find(|t| t.0 == id)
        .map(|t| &t.1)
        .ok_or_else(|| {
            bad(format!(
                "a fragment of track {id}, which the init segment lacks"
            ))
        })
}

/// Put `senc`, `saiz` and `saio` at the end of each traf of `moof` (one aux
/// list per traf, in order), point each `saio` at its first IV and move
/// every `trun`'s data offset by what the moof grew; the growth.
fn add_aux(moof: &mut Mp4Box, aux: Vec<Vec<SampleAux>>) -> Result<usize, CencError> {
    let before = moof.len() as usize;
    let mut lists = aux.into_iter();
    for traf in moof.kids_mut().iter_mut().filter(|b| &b.kind == b"traf") {
        let a = lists
            .next()
            .ok_or_else(|| bad("more trafs than aux lists"))?;
        traf.kids_mut().push(senc_box(&a));
        traf.kids_mut().push(saiz_box(&a));
        traf.kids_mut()
            .push(Mp4Box::leaf(b"saio", full_box(0, 0, &[0; 8])));
    }
    let delta = moof.len() as usize - before;
    // Each senc's first IV, relative to the moof (default-base-is-moof).
    let mut at = 8;
    for traf in moof.kids_mut().iter_mut() {
        let len = traf.len() as usize;
        if &traf.kind == b"traf" {
            let mut p = at + 8;
            let mut first_iv = 0;
            for t in traf.kids() {
                if &t.kind == b"senc" {
                    first_iv = p + 8 + 4 + 4;
                }
                p += t.len() as usize;
            }
            let offset = u32::try_from(first_iv).map_err(|_| bad("moof too big"))?;
            if let Some(saio) = traf.child_mut(b"saio") {
                saio.data = full_box(
                    0,
                    0,
                    &[&1u32.to_be_bytes()[..], &offset.to_be_bytes()].concat(),
                );
            }
            for trun in traf.kids_mut().iter_mut().filter(|b| &b.kind == b"trun") {
                shift_trun(&mut trun.data, delta as i64)?;
            }
        }
        at += len;
    }
    Ok(delta)
}

/// Encrypt a media segment of `tracks` (any boxes; every `moof` is followed
/// by its `mdat`). `iv` gives each sample a fresh IV.
pub fn encrypt_segment(
    segment: &[u8],
    tracks: &[(u32, Track)],
    key: &Key,
    mut iv: impl FnMut() -> [u8; IV_SIZE],
) -> Result<Vec<u8>, CencError> {
    let mut boxes = parse(segment)?;
    let mut growth: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < boxes.len() {
        if &boxes[i].kind != b"moof" {
            i += 1;
            continue;
        }
        if boxes.get(i + 1).map(|b| &b.kind) != Some(b"mdat") {
            return Err(CencError::Unsupported(
                "a moof not followed by its mdat".into(),
            ));
        }
        let moof_len = boxes[i].len() as usize;
        let mut aux_lists = Vec::new();
        let (moof, rest) = boxes[i..].split_first_mut().ok_or_else(|| bad("no moof"))?;
        let mdat = &mut rest[0].data;
        for traf in moof.kids().iter().filter(|b| &b.kind == b"traf") {
            if traf.child(b"senc").is_some() {
                return Err(CencError::Unsupported("already encrypted".into()));
            }
            let track = traf_track(traf, tracks)?;
            let (sizes, offset) = samples(traf, track)?;
            // mdat's payload starts after the moof and mdat's 8-byte header.
            let mut at = offset
                .checked_sub(moof_len + 8)
                .ok_or_else(|| bad("data offset before the mdat"))?;
            let mut aux = Vec::with_capacity(sizes.len());
            for &size in &sizes {
                let end = at + size as usize;
                let sample = mdat
                    .get_mut(at..end)
                    .ok_or_else(|| bad("a sample past its mdat"))?;
                let subsamples = match track.nal_length {
                    Some(len) => subsamples(track, sample, len)?,
                    None => Vec::new(),
                };
                let a = SampleAux {
                    iv: iv(),
                    subsamples,
                };
                apply(key, &a, sample);
                aux.push(a);
                at = end;
            }
            aux_lists.push(aux);
        }
        if aux_lists.is_empty() {
            return Err(bad("moof without traf"));
        }
        growth.push(add_aux(moof, aux_lists)?);
        i += 2;
    }
    // sidx: each reference is one moof and mdat; it grew with its moof.
    if let Some(sidx) = boxes.iter_mut().find(|b| &b.kind == b"sidx") {
        resize_sidx(&mut sidx.data, &growth, 1)?;
    }
    Ok(serialize(&boxes))
}

/// Add (`sign` 1) or take (`sign` -1) each fragment's change from its sidx
/// reference.
fn resize_sidx(d: &mut [u8], change: &[usize], sign: i64) -> Result<(), CencError> {
    let version = *d.first().ok_or_else(|| bad("empty sidx"))?;
    // version/flags, reference_ID, timescale, earliest/first offset, reserved, count
    let at = 4 + 4 + 4 + if version == 0 { 8 } else { 16 } + 2;
    let count = usize::from(u16_at(d, at)?);
    if count != change.len() {
        return Err(CencError::Unsupported(format!(
            "sidx with {count} references for {} fragments",
            change.len()
        )));
    }
    for (k, g) in change.iter().enumerate() {
        let r = at + 2 + k * 12;
        let word = u32_at(d, r)?;
        let (kind, size) = (word & 0x8000_0000, i64::from(word & 0x7fff_ffff));
        let size = size + sign * *g as i64;
        if !(0..=0x7fff_ffff).contains(&size) {
            return Err(bad("sidx size out of range"));
        }
        d[r..r + 4].copy_from_slice(&(kind | size as u32).to_be_bytes());
    }
    Ok(())
}

/// The clear segment back from one [`encrypt_segment`] made (its IVs and
/// subsample maps from `senc`, the boxes it added removed).
pub fn decrypt_segment(segment: &[u8], key: &Key) -> Result<Vec<u8>, CencError> {
    let mut boxes = parse(segment)?;
    let mut shrink: Vec<usize> = Vec::new();
    let any = Track {
        nal_length: None,
        nal_header: 0,
        hevc: false,
        default_sample_size: 0,
    };
    let mut i = 0;
    while i < boxes.len() {
        if &boxes[i].kind != b"moof" {
            i += 1;
            continue;
        }
        let moof_len = boxes[i].len() as usize;
        let (moof, rest) = boxes[i..].split_first_mut().ok_or_else(|| bad("no moof"))?;
        let mdat = &mut rest
            .first_mut()
            .filter(|b| &b.kind == b"mdat")
            .ok_or_else(|| bad("moof without mdat"))?
            .data;
        for traf in moof.kids().iter().filter(|b| &b.kind == b"traf") {
            let senc = traf.child(b"senc").ok_or_else(|| bad("no senc"))?;
            let aux = read_senc(&senc.data)?;
            let (sizes, offset) = samples(traf, &any)?;
            if sizes.len() != aux.len() {
                return Err(bad("senc and trun disagree on the sample count"));
            }
            let mut at = offset
                .checked_sub(moof_len + 8)
                .ok_or_else(|| bad("data offset before the mdat"))?;
            for (size, a) in sizes.iter().zip(&aux) {
                let end = at + *size as usize;
                apply(
                    key,
                    a,
                    mdat.get_mut(at..end)
                        .ok_or_else(|| bad("a sample past its mdat"))?,
                );
                at = end;
            }
        }
        for traf in moof.kids_mut().iter_mut().filter(|b| &b.kind == b"traf") {
            traf.kids_mut()
                .retain(|b| !matches!(&b.kind, b"senc" | b"saiz" | b"saio"));
        }
        let delta = moof_len - moof.len() as usize;
        for traf in moof.kids_mut().iter_mut().filter(|b| &b.kind == b"traf") {
            for trun in traf.kids_mut().iter_mut().filter(|b| &b.kind == b"trun") {
                shift_trun(&mut trun.data, -(delta as i64))?;
            }
        }
        shrink.push(delta);
        i += 2;
    }
    if let Some(sidx) = boxes.iter_mut().find(|b| &b.kind == b"sidx") {
        resize_sidx(&mut sidx.data, &shrink, -1)?;
    }
    Ok(serialize(&boxes))
}

fn read_senc(d: &[u8]) -> Result<Vec<SampleAux>, CencError> {
    let sub = flags(d)? & 2 != 0;
    let count = u32_at(d, 4)? as usize;
    let mut at = 8;
    let mut out = Vec::with_capacity(count.min(1 << 16));
    for _ in 0..count {
        let iv: [u8; IV_SIZE] = d
            .get(at..at + IV_SIZE)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad("truncated senc"))?;
        at += IV_SIZE;
        let mut subsamples = Vec::new();
        if sub {
            let n = usize::from(u16_at(d, at)?);
            at += 2;
            for _ in 0..n {
                subsamples.push((u16_at(d, at)?, u32_at(d, at + 2)?));
                at += 6;
            }
        }
        out.push(SampleAux { iv, subsamples });
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
