//! `encode`: analyse (or resume the analysis), pick the ladder, encode each
//! rung (one job each, across the cores), measure it, then package.
//!
//! Everything in progress lives in `OUT/.oca-pack/<title>/`: trial results,
//! the finished rungs, the chosen ladder. A killed run started again with the
//! same source and options picks up from there; with anything different it
//! starts over. The title appears under `OUT/titles/` only when complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::analyze::{self, Analysis, Plan, write_atomic};
use crate::jobs::{self, Parallel};
use crate::ladder::{self, Params, Point};
use crate::metric::{Metric, Reference};
use crate::package;
use crate::tool::{PackError, Source, ffmpeg, ffprobe_for, io, probe, run};

/// What `encode` was asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Options {
    pub title: String,
    pub name: String,
    pub regions: Vec<String>,
    pub release: Option<u64>,
    /// Segment (and GOP) duration, seconds.
    pub segment_secs: f64,
    pub plan: Plan,
    pub params: Params,
    /// Replace a title already packaged under that id.
    pub force: bool,
    /// Encrypt (cenc) with a fresh key (see `package::encrypt`).
    pub encrypt: bool,
}

/// A rung as encoded: the point the analysis chose it for, and what the
/// whole encode measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rung {
    /// The HLS rendition's directory (`v720`), unique within the title.
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub crf: f64,
    /// Cap on the encoder's rate (bits/s; VBV), twice the predicted average.
    #[serde(rename = "maxrate_bps")]
    pub maxrate: u64,
    #[serde(rename = "predicted_bitrate_bps")]
    pub predicted_bitrate: f64,
    pub predicted_quality: f64,
    /// Video bits per second over the whole title.
    #[serde(rename = "bitrate_bps")]
    pub bitrate: f64,
    /// Quality over the whole title, in the analysis's metric.
    pub quality: f64,
    /// Read back from an earlier (killed) run rather than encoded now.
    #[serde(skip)]
    pub kept: bool,
}

/// What a finished encode did (also the sidecar, `ladder.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub title: String,
    pub codec: String,
    pub segment_secs: f64,
    pub params: Params,
    pub analysis: Analysis,
    pub rungs: Vec<Rung>,
    pub audio: bool,
    /// Wall-clock seconds: rung encodes and their measurement, and packaging.
    pub encode_seconds: f64,
    pub package_seconds: f64,
}

/// Where an encode runs.
pub struct Env<'a> {
    pub ffmpeg: &'a Path,
    pub metric: &'a Metric,
    pub cores: usize,
}

/// The directory of work in progress for `title` under `out`.
pub fn work_dir(out: &Path, title: &str) -> PathBuf {
    out.join(".oca-pack").join(title)
}

/// Same id rule as steering's catalog: 1–64 of A-Z a-z 0-9 - _ .
pub fn valid_title(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Encode and package `source` as `OUT/titles/<title>`.
pub fn encode(env: &Env, source: &Path, out: &Path, opts: &Options) -> Result<Report, PackError> {
    encode_inner(env, source, out, opts).map_err(|e| match e {
        // ffmpeg rarely says why a write failed (or says it in a line
        // before its last): a full output disk is named as such.
        PackError::ToolFailed { step, .. } if crate::tool::disk_full(out) => PackError::DiskFull {
            path: out.to_owned(),
            step,
        },
        e => e,
    })
}

fn encode_inner(env: &Env, source: &Path, out: &Path, opts: &Options) -> Result<Report, PackError> {
    if !valid_title(&opts.title) {
        return Err(PackError::Usage(format!(
            "title id {:?}: use 1-64 of A-Z a-z 0-9 - _ .",
            opts.title
        )));
    }
    if !(opts.segment_secs >= 1.0 && opts.segment_secs <= 20.0) {
        return Err(PackError::Usage("--segment must be 1 to 20 seconds".into()));
    }
    std::fs::create_dir_all(out).map_err(io(out))?;
    // Absolute: packaging runs ffmpeg inside the staging directory.
    let out = &std::fs::canonicalize(out).map_err(io(out))?;
    let dest = out.join("titles").join(&opts.title);
    if dest.exists() && !opts.force {
        return Err(PackError::Usage(format!(
            "{} is already packaged (--force replaces it)",
            dest.display()
        )));
    }
    let src = probe(&ffprobe_for(env.ffmpeg), source)?;
    eprintln!(
        "oca-pack: quality metric: {}",
        env.metric.label().description
    );
    let work = work_dir(out, &opts.title);
    resume_or_start(&work, source, &src, opts, env.metric)?;

    let analysis = analyze::analyze(
        &analyze::Env {
            ffmpeg: env.ffmpeg,
            metric: env.metric,
            cores: env.cores,
            work: &work.join("trials"),
        },
        source,
        &src,
        &opts.plan,
    )?;
    let chosen = ladder::select(&analysis.points, &opts.params);
    if chosen.is_empty() {
        return Err(PackError::ToolFailed {
            step: "select ladder".into(),
            detail: "no usable trial encode".into(),
        });
    }
    let rungs = planned_rungs(&chosen);

    let started = Instant::now();
    let rung_dir = work.join("rungs");
    std::fs::create_dir_all(&rung_dir).map_err(io(&rung_dir))?;
    let mut tasks: Vec<Task> = rungs.iter().cloned().map(Task::Video).collect();
    if src.has_audio {
        tasks.push(Task::Audio);
    }
    let par = Parallel::for_tasks(env.cores, tasks.len());
    let label = env.metric.label().name;
    let done = jobs::run(
        "encode",
        par.jobs,
        &tasks,
        |t| run_task(env, source, &src, opts, &rung_dir, t, par.threads),
        |t, r| match (t, r) {
            (Task::Video(_), Some(r)) => format!(
                "{} {}x{} {:.0} kb/s {label} {:.2}{}",
                r.name,
                r.width,
                r.height,
                r.bitrate / 1e3,
                r.quality,
                if r.kept {
                    " (kept from an earlier run)"
                } else {
                    ""
                }
            ),
            _ => "audio".into(),
        },
    )?;
    let rungs: Vec<Rung> = done.into_iter().flatten().collect();
    let encode_seconds = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut report = Report {
        tool: format!("oca-pack {}", env!("CARGO_PKG_VERSION")),
        title: opts.title.clone(),
        codec: "h264".into(),
        segment_secs: opts.segment_secs,
        params: opts.params,
        analysis,
        rungs,
        audio: src.has_audio,
        encode_seconds,
        package_seconds: 0.0,
    };
    let stage = work.join("stage");
    package::package(env.ffmpeg, &rung_dir, &report, &stage)?;
    if opts.encrypt {
        // A new key every packaging: re-packaging a title rotates it. The key
        // is written before the title appears, so an import never finds a
        // protected title without its key.
        let key = crate::cenc::Key::random().map_err(io(Path::new("/dev/urandom")))?;
        package::encrypt(&stage, &key)?;
        let root = dest
            .parent()
            .and_then(Path::parent)
            .ok_or_else(|| PackError::Usage("the output needs a titles/ parent".into()))?;
        package::write_key(&root.join("keys"), &opts.title, &key)?;
    }
    report.package_seconds = started.elapsed().as_secs_f64();
    package::finish(&stage, &report, opts, &dest, &work)?;
    Ok(report)
}

/// The chosen points as rungs to encode, each with a unique directory name:
/// `v<height>`, or `v<height>-<kbps>k` when two share a height.
pub fn planned_rungs(chosen: &[Point]) -> Vec<Rung> {
    chosen
        .iter()
        .map(|p| {
            let shared = chosen.iter().filter(|q| q.height == p.height).count() > 1;
            let name = if shared {
                format!("v{}-{}k", p.height, (p.bitrate / 1e3).round())
            } else {
                format!("v{}", p.height)
            };
            Rung {
                name,
                width: p.width,
                height: p.height,
                crf: p.crf,
                maxrate: (p.bitrate * 2.0).round() as u64,
                predicted_bitrate: p.bitrate,
                predicted_quality: p.quality,
                bitrate: 0.0,
                quality: 0.0,
                kept: false,
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Task {
    Video(Rung),
    Audio,
}

/// The job's identity: a run with anything different starts over.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Job {
    source: PathBuf,
    size: u64,
    modified: Option<std::time::SystemTime>,
    probed: Source,
    options: Options,
    metric: String,
}

fn resume_or_start(
    work: &Path,
    source: &Path,
    src: &Source,
    opts: &Options,
    metric: &Metric,
) -> Result<(), PackError> {
    let meta = std::fs::metadata(source).map_err(io(source))?;
    let job = Job {
        source: std::fs::canonicalize(source).map_err(io(source))?,
        size: meta.len(),
        modified: meta.modified().ok(),
        probed: src.clone(),
        // Where the title goes and under what name do not change the work.
        options: Options {
            name: String::new(),
            regions: Vec::new(),
            release: None,
            force: false,
            encrypt: false,
            ..opts.clone()
        },
        metric: metric.label().description,
    };
    let path = work.join("job.json");
    let same = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Job>(&b).ok())
        .is_some_and(|old| old == job);
    if !same && work.exists() {
        std::fs::remove_dir_all(work).map_err(io(work))?;
    }
    std::fs::create_dir_all(work).map_err(io(work))?;
    if !same {
        write_atomic(
            &path,
            &serde_json::to_vec_pretty(&job).expect("serialisable"),
        )?;
    }
    Ok(())
}

/// Encode one rung (or the audio) unless a finished one is there, then
/// measure it over the whole title (cached beside it).
fn run_task(
    env: &Env,
    source: &Path,
    src: &Source,
    opts: &Options,
    dir: &Path,
    task: &Task,
    threads: usize,
) -> Result<Option<Rung>, PackError> {
    let rung = match task {
        Task::Audio => {
            let out = dir.join("audio.m4a");
            if !out.exists() {
                let part = dir.join("audio.m4a.part");
                let mut cmd = ffmpeg(env.ffmpeg);
                cmd.arg("-i")
                    .arg(source)
                    .args([
                        "-map", "0:a:0", "-vn", "-c:a", "aac", "-b:a", "96k", "-ac", "2",
                    ])
                    .args(["-f", "mp4"])
                    .arg(&part);
                run("encode audio", &mut cmd)?;
                // ffmpeg can exit 0 having written a truncated MP4 to a full
                // disk: read it back before it counts as done.
                let mut check = std::process::Command::new(ffprobe_for(env.ffmpeg));
                check
                    .args(["-v", "error", "-show_entries", "format=duration"])
                    .arg(&part);
                run("check audio", &mut check)?;
                std::fs::rename(&part, &out).map_err(io(&out))?;
            }
            return Ok(None);
        }
        Task::Video(r) => r,
    };
    encode_measured(env, source, src, opts, dir, rung, None, threads).map(Some)
}

/// Encode `rung` into `dir` (capped CRF, or `target` bits per second on
/// average as a fixed ladder would), then measure it over the whole title;
/// what is already finished in `dir` is kept.
#[allow(clippy::too_many_arguments)]
pub fn encode_measured(
    env: &Env,
    source: &Path,
    src: &Source,
    opts: &Options,
    dir: &Path,
    rung: &Rung,
    target: Option<u64>,
    threads: usize,
) -> Result<Rung, PackError> {
    let out = dir.join(format!("{}.mp4", rung.name));
    let measured = dir.join(format!("{}.json", rung.name));
    if let Some(r) = std::fs::read(&measured)
        .ok()
        .and_then(|b| serde_json::from_slice::<Rung>(&b).ok())
        .filter(|_| out.exists())
    {
        return Ok(Rung { kept: true, ..r });
    }
    if !out.exists() {
        let part = dir.join(format!("{}.mp4.part", rung.name));
        let mut cmd = ffmpeg(env.ffmpeg);
        cmd.arg("-i").arg(source);
        cmd.args(video_args(rung, target, src.fps, opts, threads));
        cmd.args(["-f", "mp4"]).arg(&part);
        run(&format!("encode {}", rung.name), &mut cmd)?;
        // Read back before it counts as done (see the audio above).
        video_bits(env.ffmpeg, &part)?;
        std::fs::rename(&part, &out).map_err(io(&out))?;
    }
    let reference = Reference {
        path: source,
        span: None,
        size: (src.width, src.height),
    };
    let raw = env
        .metric
        .measure(env.ffmpeg, &reference, &out, None, threads)?;
    let bits = video_bits(env.ffmpeg, &out)?;
    let done = Rung {
        bitrate: bits / src.duration,
        quality: env.metric.scale(raw),
        ..rung.clone()
    };
    write_atomic(&measured, &serde_json::to_vec(&done).expect("serialisable"))?;
    Ok(done)
}

/// x264 for one rung: capped CRF (or an average bitrate `target`), closed
/// GOPs exactly one segment long and keyframes at the same instants in every
/// rung (forced by time, so rungs align whatever the frame rate), no
/// scene-cut keyframes in between.
pub fn video_args(
    rung: &Rung,
    target: Option<u64>,
    fps: f64,
    opts: &Options,
    threads: usize,
) -> Vec<String> {
    let gop = (fps * opts.segment_secs).round().max(1.0) as u64;
    let seg = opts.segment_secs;
    let rate: Vec<String> = match target {
        Some(b) => vec!["-b:v".into(), b.to_string()],
        None => vec![
            "-crf".into(),
            rung.crf.to_string(),
            "-maxrate".into(),
            rung.maxrate.to_string(),
            "-bufsize".into(),
            (rung.maxrate * 2).to_string(),
        ],
    };
    let mut args: Vec<String> = [
        "-map",
        "0:v:0",
        "-an",
        "-sn",
        "-vf",
        &format!(
            "scale={}:{}:flags=bicubic,format=yuv420p",
            rung.width, rung.height
        ),
        "-c:v",
        "libx264",
        "-preset",
        &opts.plan.preset,
        "-profile:v",
        "high",
        "-g",
        &gop.to_string(),
        "-keyint_min",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-flags",
        "+cgop",
        "-force_key_frames",
        &format!("expr:gte(t,n_forced*{seg})"),
        "-threads",
        &threads.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(rate);
    args
}

/// The video stream's bits, as the MP4's sample sizes add up.
fn video_bits(ffmpeg_bin: &Path, mp4: &Path) -> Result<f64, PackError> {
    let mut cmd = std::process::Command::new(ffprobe_for(ffmpeg_bin));
    cmd.args(["-v", "error", "-select_streams", "v:0", "-show_entries"])
        .args(["packet=size", "-of", "csv=p=0"])
        .arg(mp4);
    let out = run("measure bitrate", &mut cmd)?;
    let bytes: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse::<u64>().ok())
        .sum();
    Ok(bytes as f64 * 8.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(height: u32, bitrate: f64) -> Point {
        Point {
            width: height * 16 / 9,
            height,
            crf: 23.0,
            bitrate,
            quality: 90.0,
        }
    }

    #[test]
    fn rung_names_are_unique() {
        let r = planned_rungs(&[pt(360, 400e3), pt(720, 1500e3), pt(720, 3000e3)]);
        let names: Vec<&str> = r.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["v360", "v720-1500k", "v720-3000k"]);
        assert_eq!(r[0].maxrate, 800_000);
    }

    #[test]
    fn title_ids_follow_the_catalog() {
        for ok in ["t1", "My_title-2.v3"] {
            assert!(valid_title(ok), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_title(bad), "{bad}");
        }
    }

    #[test]
    fn keyframes_land_on_segment_boundaries() {
        let opts = Options {
            title: "t".into(),
            name: "t".into(),
            regions: vec![],
            release: None,
            segment_secs: 4.0,
            plan: Plan::default(),
            params: Metric::SsimDb.default_params(),
            force: false,
            encrypt: false,
        };
        let r = &planned_rungs(&[pt(360, 400e3)])[0];
        let a = video_args(r, None, 29.97, &opts, 1).join(" ");
        let abr = video_args(r, Some(500_000), 25.0, &opts, 1).join(" ");
        assert!(
            abr.contains("-b:v 500000") && !abr.contains("-crf"),
            "{abr}"
        );
        assert!(a.contains("-g 120 -keyint_min 120 -sc_threshold 0"), "{a}");
        assert!(
            a.contains("-force_key_frames expr:gte(t,n_forced*4)"),
            "{a}"
        );
        assert!(a.contains("-maxrate 800000 -bufsize 1600000"), "{a}");
    }
}
