//! Complexity analysis by trial encodes: sampled chunks of the source, each
//! encoded at every candidate resolution and quality setting, each measured
//! against the source at display resolution. Every trial is its own job and
//! its result its own file, so a killed analysis resumes where it stopped.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::jobs::{self, Parallel};
use crate::ladder::{self, Point};
use crate::metric::{Label, Metric, Reference};
use crate::tool::{PackError, Source, ffmpeg, io, run};

/// What to try.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Candidate picture heights (those above the source's are skipped; the
    /// source's own is always tried).
    pub heights: Vec<u32>,
    /// x264 CRF values.
    pub crfs: Vec<f64>,
    /// How many chunks to sample, and how long each is (seconds).
    pub chunks: usize,
    pub chunk_secs: f64,
    /// x264 preset, the same the ladder is then encoded with.
    pub preset: String,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            heights: vec![1080, 720, 540, 360, 240],
            crfs: vec![18.0, 23.0, 28.0, 33.0, 38.0],
            chunks: 4,
            chunk_secs: 2.0,
            preset: "veryfast".into(),
        }
    }
}

/// A title's measured rate–quality curves.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Analysis {
    pub metric: String,
    pub metric_description: String,
    pub source: Source,
    pub plan: Plan,
    /// The sampled chunks: (start, seconds).
    pub chunks: Vec<(f64, f64)>,
    /// Every (resolution, CRF) trial, over all chunks.
    pub points: Vec<Point>,
    /// Those on the convex hull.
    pub hull: Vec<Point>,
    /// Wall-clock seconds the trials took in this run (0 when all were cached).
    pub seconds: f64,
}

/// The resolutions to try for a `sw`x`sh` source: each height up to the
/// source's, the width keeping the aspect ratio, both even.
pub fn resolutions(sw: u32, sh: u32, heights: &[u32]) -> Vec<(u32, u32)> {
    let mut hs: Vec<u32> = heights.iter().copied().filter(|h| *h < sh).collect();
    hs.push(sh);
    hs.sort_unstable();
    hs.dedup();
    hs.into_iter()
        .map(|h| {
            let even = |x: f64| ((x / 2.0).round() as u32).max(1) * 2;
            let w = even(f64::from(sw) * f64::from(h) / f64::from(sh));
            (w, even(f64::from(h)))
        })
        .collect()
}

/// `n` chunks of `len` seconds spread evenly over `duration` (each in the
/// middle of its share); the whole source when it is shorter than that.
pub fn chunks(duration: f64, n: usize, len: f64) -> Vec<(f64, f64)> {
    if duration <= len * n as f64 || n == 0 {
        return vec![(0.0, duration)];
    }
    let share = duration / n as f64;
    (0..n)
        .map(|i| {
            let start = share * i as f64 + (share - len) / 2.0;
            ((start * 1000.0).round() / 1000.0, len)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
struct Trial {
    width: u32,
    height: u32,
    crf: f64,
    chunk: usize,
    start: f64,
    secs: f64,
}

impl Trial {
    fn name(&self) -> String {
        format!("{}p-crf{}-c{}", self.height, self.crf, self.chunk)
    }
}

/// A finished trial: bits in the chunk's video stream and the raw quality mean.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Measured {
    bits: f64,
    secs: f64,
    raw_quality: f64,
    /// Read back from an earlier (killed) run rather than measured now.
    #[serde(skip)]
    kept: bool,
}

/// Where an analysis runs.
pub struct Env<'a> {
    pub ffmpeg: &'a Path,
    pub metric: &'a Metric,
    pub cores: usize,
    /// Trial results live here (kept, for resuming).
    pub work: &'a Path,
}

/// Run (or resume) the trials for `source`.
pub fn analyze(
    env: &Env,
    path: &Path,
    source: &Source,
    plan: &Plan,
) -> Result<Analysis, PackError> {
    let started = Instant::now();
    std::fs::create_dir_all(env.work).map_err(io(env.work))?;
    let spans = chunks(source.duration, plan.chunks, plan.chunk_secs);
    let mut trials = Vec::new();
    for (width, height) in resolutions(source.width, source.height, &plan.heights) {
        for &crf in &plan.crfs {
            for (chunk, &(start, secs)) in spans.iter().enumerate() {
                trials.push(Trial {
                    width,
                    height,
                    crf,
                    chunk,
                    start,
                    secs,
                });
            }
        }
    }
    let par = Parallel::for_tasks(env.cores, trials.len());
    let Label { name, description } = env.metric.label();
    let results = jobs::run(
        "analyse",
        par.jobs,
        &trials,
        |t| trial(env, path, source, plan, t, par.threads),
        |t, m| {
            format!(
                "{} {:.0} kb/s {name} {:.2}{}",
                t.name(),
                m.bits / m.secs / 1e3,
                env.metric.scale(m.raw_quality),
                if m.kept {
                    " (kept from an earlier run)"
                } else {
                    ""
                }
            )
        },
    )?;
    let mut points: Vec<Point> = Vec::new();
    for t in &trials {
        if !points
            .iter()
            .any(|p| p.height == t.height && p.crf == t.crf)
        {
            points.push(Point {
                width: t.width,
                height: t.height,
                crf: t.crf,
                bitrate: 0.0,
                quality: 0.0,
            });
        }
    }
    // Per (resolution, CRF): bits over seconds, and quality weighted by time.
    for p in &mut points {
        let (mut bits, mut secs, mut q) = (0.0, 0.0, 0.0);
        for (t, m) in trials.iter().zip(&results) {
            if t.height == p.height && t.crf == p.crf {
                bits += m.bits;
                secs += m.secs;
                q += m.raw_quality * m.secs;
            }
        }
        p.bitrate = bits / secs;
        p.quality = env.metric.scale(q / secs);
    }
    let hull = ladder::hull(&points);
    Ok(Analysis {
        metric: name.to_owned(),
        metric_description: description,
        source: source.clone(),
        plan: plan.clone(),
        chunks: spans,
        points,
        hull,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// One trial: encode the chunk (raw H.264, so its size is the video's
/// bits alone), measure it, keep the result, drop the encode.
fn trial(
    env: &Env,
    path: &Path,
    source: &Source,
    plan: &Plan,
    t: &Trial,
    threads: usize,
) -> Result<Measured, PackError> {
    let done = env.work.join(format!("{}.json", t.name()));
    if let Some(m) = std::fs::read(&done)
        .ok()
        .and_then(|b| serde_json::from_slice::<Measured>(&b).ok())
    {
        return Ok(Measured { kept: true, ..m });
    }
    let encoded = env.work.join(format!("{}.h264", t.name()));
    let mut cmd = ffmpeg(env.ffmpeg);
    cmd.args(["-ss", &t.start.to_string(), "-t", &t.secs.to_string()])
        .arg("-i")
        .arg(path)
        .args(["-map", "0:v:0", "-an", "-vf"])
        .arg(format!(
            "scale={}:{}:flags=bicubic,format=yuv420p",
            t.width, t.height
        ))
        .args(["-c:v", "libx264", "-preset", &plan.preset, "-crf"])
        .arg(t.crf.to_string())
        .arg("-threads")
        .arg(threads.to_string())
        .args(["-f", "h264"])
        .arg(&encoded);
    run(&format!("trial encode {}", t.name()), &mut cmd)?;
    let bits = std::fs::metadata(&encoded).map_err(io(&encoded))?.len() as f64 * 8.0;
    let reference = Reference {
        path,
        span: Some((t.start, t.secs)),
        size: (source.width, source.height),
    };
    let raw_quality =
        env.metric
            .measure(env.ffmpeg, &reference, &encoded, Some(source.fps), threads)?;
    let _ = std::fs::remove_file(&encoded);
    let m = Measured {
        bits,
        secs: t.secs,
        raw_quality,
        kept: false,
    };
    write_atomic(&done, &serde_json::to_vec(&m).expect("serialisable"))?;
    Ok(m)
}

/// Write `bytes` to `path` through a temporary file and a rename, so a kill
/// leaves the old file or the new one, never half of one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PackError> {
    let tmp: PathBuf = {
        let mut s = path.as_os_str().to_owned();
        s.push(".part");
        s.into()
    };
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolutions_keep_the_aspect_and_never_upscale() {
        assert_eq!(
            resolutions(1280, 720, &[1080, 720, 540, 360, 240]),
            [(426, 240), (640, 360), (960, 540), (1280, 720)]
        );
        // An odd source size: its own height is tried, every size is even.
        assert_eq!(resolutions(725, 405, &[360]), [(644, 360), (726, 406)]);
    }

    #[test]
    fn chunks_spread_over_the_source() {
        assert_eq!(
            chunks(40.0, 4, 2.0),
            [(4.0, 2.0), (14.0, 2.0), (24.0, 2.0), (34.0, 2.0)]
        );
        assert_eq!(chunks(6.0, 4, 2.0), [(0.0, 6.0)]);
        assert_eq!(chunks(6.0, 0, 2.0), [(0.0, 6.0)]);
    }
}
