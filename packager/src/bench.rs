//! `bench-ladders`: per content class, the per-title ladder against fixed
//! ladders, measured, and written as JSON (docs/data/packager.json) for the
//! figures in docs/BENCHMARKS.md. Nothing in the output is typed by hand.
//!
//! Per class: a source is generated; `encode` runs for real (analysis, ladder,
//! encode, packaging; timed); every point of the per-title hull and every rung
//! of two fixed ladders is then encoded over the whole clip and measured the
//! same way. BD-rate compares the per-title hull and ladder with each fixed
//! ladder; quality at equal bits asks what a player with a fixed rung's
//! bandwidth gets from the per-title ladder; bytes per hour add up all rungs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::{Value, json};

use crate::bdrate::{self, Rung as RatePoint};
use crate::classes::{self, CLASSES};
use crate::cli::Common;
use crate::encode::{self, Options, Rung};
use crate::jobs::{self, Parallel};
use crate::ladder::Point;
use crate::metric::Metric;
use crate::tool::{PackError, ffprobe_for, io, probe};

#[derive(clap::Args, Clone)]
pub struct BenchArgs {
    /// Where to write the figures (JSON).
    pub out: PathBuf,
    /// Classes to run (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub classes: Vec<String>,
    /// Seconds of content per class.
    #[arg(long, default_value_t = 12.0)]
    pub seconds: f64,
    /// Source (display) size.
    #[arg(long, default_value = "1280x720")]
    pub size: String,
    /// Scratch space (sources are kept there between runs).
    #[arg(long, default_value = "target/bench-packager")]
    pub work: PathBuf,
    /// The class timed again on 1 and 2 cores ("" for none).
    #[arg(long, default_value = "mix")]
    pub scaling_class: String,
}

/// A fixed ladder: name, and rungs as (width, height, bits per second).
type Fixed = (&'static str, &'static [(u32, u32, u64)]);

/// make-content.sh's former ladder, and a typical 6-rung one: Apple's former HLS
/// authoring ladder (TN2224) up to 720p, less its second 432p rung.
pub const FIXED: [Fixed; 2] = [
    (
        "fixed-3",
        &[
            (640, 360, 500_000),
            (960, 540, 1_200_000),
            (1280, 720, 2_500_000),
        ],
    ),
    (
        "fixed-6",
        &[
            (416, 234, 145_000),
            (640, 360, 365_000),
            (768, 432, 730_000),
            (960, 540, 2_000_000),
            (1280, 720, 3_000_000),
            (1280, 720, 4_500_000),
        ],
    ),
];

#[derive(Debug, Clone, Serialize)]
struct Measured {
    width: u32,
    height: u32,
    /// x264 CRF, or none for a fixed (target-bitrate) rung.
    crf: Option<f64>,
    #[serde(rename = "target_bitrate_bps")]
    target_bitrate: Option<u64>,
    #[serde(rename = "bitrate_bps")]
    bitrate: f64,
    quality: f64,
}

impl From<&Rung> for Measured {
    fn from(r: &Rung) -> Self {
        Measured {
            width: r.width,
            height: r.height,
            crf: Some(r.crf),
            target_bitrate: None,
            bitrate: r.bitrate,
            quality: r.quality,
        }
    }
}

fn rate_points(m: &[Measured]) -> Vec<RatePoint> {
    m.iter().map(|m| (m.bitrate, m.quality)).collect()
}

pub fn run(c: &Common, args: &BenchArgs) -> Result<(), PackError> {
    let (w, h) = args
        .size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .ok_or_else(|| PackError::Usage("--size WIDTHxHEIGHT".into()))?;
    let metric = c.metric()?;
    eprintln!("oca-pack: quality metric: {}", metric.label().description);
    let classes: Vec<String> = if args.classes.is_empty() {
        CLASSES.iter().map(|c| c.0.to_owned()).collect()
    } else {
        args.classes.clone()
    };
    let cores = c.cores();
    let load_at_start = load_1m();
    let mut rows = Vec::new();
    for class in &classes {
        rows.push(one_class(c, args, &metric, class, (w, h), cores)?);
    }
    let scaling = if args.scaling_class.is_empty() {
        Value::Null
    } else {
        scaling(c, args, &metric, (w, h))?
    };
    let summary = summarise(&rows);
    let doc = json!({
        "what": "per-title ladders (oca-pack) against fixed ladders, per content class",
        "date": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "machine": machine(load_at_start, cores),
        "tool": format!("oca-pack {}", env!("CARGO_PKG_VERSION")),
        "encoder": tool_version(&c.ffmpeg),
        "metric": metric.label(),
        "settings": {
            "size": format!("{w}x{h}"),
            "fps": 25,
            "seconds_per_class": args.seconds,
            "plan": c.plan(),
            "params": c.params(&metric),
            "segment_seconds": 4.0,
            "fixed_ladders": FIXED.iter().map(|(n, r)| json!({"name": n, "rungs": r})).collect::<Vec<_>>(),
            "fixed_encoding": "x264 same preset, average bitrate (-b:v), same GOPs, as scripts/make-content.sh had it",
            // What the selection did, so figures from before a change to it say so.
            "selection": crate::ladder::SELECTION,
            "bd_rate": "piecewise-linear log-rate over quality, averaged over the overlapping quality range; negative = fewer bits",
        },
        "classes": rows,
        "summary": summary,
        "scaling": scaling,
    });
    if let Some(d) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let text = serde_json::to_string_pretty(&doc).expect("serialisable") + "\n";
    std::fs::write(&args.out, text).map_err(io(&args.out))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn source(
    c: &Common,
    args: &BenchArgs,
    class: &str,
    size: (u32, u32),
) -> Result<PathBuf, PackError> {
    let path = args.work.join(format!(
        "sources/{class}-{}x{}-{}s.mkv",
        size.0, size.1, args.seconds
    ));
    if !path.exists() {
        eprintln!("oca-pack: making the {class} source");
        classes::make_source(&c.ffmpeg, class, size, 25, args.seconds, &path)?;
    }
    Ok(path)
}

fn options(c: &Common, metric: &Metric, class: &str) -> Options {
    Options {
        title: class.to_owned(),
        name: class.to_owned(),
        regions: Vec::new(),
        release: None,
        segment_secs: 4.0,
        plan: c.plan(),
        params: c.params(metric),
        force: true,
        encrypt: false,
    }
}

fn one_class(
    c: &Common,
    args: &BenchArgs,
    metric: &Metric,
    class: &str,
    size: (u32, u32),
    cores: usize,
) -> Result<Value, PackError> {
    let src_path = source(c, args, class, size)?;
    let src = probe(&ffprobe_for(&c.ffmpeg), &src_path)?;
    let opts = options(c, metric, class);
    let env = encode::Env {
        ffmpeg: &c.ffmpeg,
        metric,
        cores,
    };
    eprintln!("oca-pack: {class}: per-title encode");
    let out = args.work.join("out");
    // From scratch, so that the times are whole (an interrupted bench would
    // otherwise resume, and time only what was left).
    let stale = encode::work_dir(&out, class);
    if stale.exists() {
        std::fs::remove_dir_all(&stale).map_err(io(&stale))?;
    }
    let report = encode::encode(&env, &src_path, &out, &opts)?;
    let ladder: Vec<Measured> = report.rungs.iter().map(Measured::from).collect();

    // The hull's points and the fixed rungs, each over the whole clip.
    let hull_rungs = encode::planned_rungs(&report.analysis.hull);
    let mut tasks: Vec<(String, Rung, Option<u64>)> = hull_rungs
        .into_iter()
        .map(|r| ("hull".to_owned(), r, None))
        .collect();
    for (name, rungs) in FIXED {
        for (i, &(w, h, rate)) in rungs.iter().enumerate() {
            let p = Point {
                width: w,
                height: h,
                crf: 0.0,
                bitrate: rate as f64,
                quality: 0.0,
            };
            let mut r = encode::planned_rungs(&[p]).remove(0);
            r.name = format!("{name}-{i}");
            tasks.push((name.to_owned(), r, Some(rate)));
        }
    }
    let scratch = args.work.join(format!("measure/{class}"));
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;
    let par = Parallel::for_tasks(cores, tasks.len());
    let label = metric.label().name;
    let measured = jobs::run(
        &format!("{class}: hull and fixed ladders"),
        par.jobs,
        &tasks,
        |(_, r, target)| {
            encode::encode_measured(
                &env,
                &src_path,
                &src,
                &opts,
                &scratch,
                r,
                *target,
                par.threads,
            )
        },
        |(set, _, _), m| {
            format!(
                "{set} {}x{} {:.0} kb/s {label} {:.2}",
                m.width,
                m.height,
                m.bitrate / 1e3,
                m.quality
            )
        },
    )?;
    let _ = std::fs::remove_dir_all(&scratch);
    let pick = |set: &str| -> Vec<Measured> {
        tasks
            .iter()
            .zip(&measured)
            .filter(|((s, _, _), _)| s == set)
            .map(|((_, _, target), r)| Measured {
                crf: target.is_none().then_some(r.crf),
                target_bitrate: *target,
                ..Measured::from(r)
            })
            .collect()
    };
    let hull = pick("hull");
    let minutes = src.duration / 60.0;
    let mut versus = serde_json::Map::new();
    for (name, _) in FIXED {
        let fixed = pick(name);
        let bd = |test: &[Measured]| {
            bdrate::bd_rate(&rate_points(&fixed), &rate_points(test))
                .map(|(bd, (lo, hi))| json!({"bd_rate": bd, "quality_range": [lo, hi]}))
                .unwrap_or(Value::Null)
        };
        let at_equal_bits: Vec<Value> = fixed
            .iter()
            .map(|f| {
                json!({
                    "bandwidth_bps": f.bitrate,
                    "fixed_quality": f.quality,
                    "per_title_quality": bdrate::quality_at(&rate_points(&ladder), f.bitrate),
                })
            })
            .collect();
        versus.insert(
            name.to_owned(),
            json!({
                "rungs": fixed,
                "bytes_per_hour": bytes_per_hour(&fixed),
                "top_quality": fixed.iter().map(|m| m.quality).fold(f64::MIN, f64::max),
                "hull_vs_fixed": bd(&hull),
                "ladder_vs_fixed": bd(&ladder),
                "quality_at_equal_bits": at_equal_bits,
            }),
        );
    }
    Ok(json!({
        "class": class,
        "description": CLASSES.iter().find(|c| c.0 == class).map(|c| c.1),
        "graph": classes::graph(class, size.0, size.1, 25, args.seconds),
        "seconds": src.duration,
        "per_title": {
            "rungs": ladder,
            "bytes_per_hour": bytes_per_hour(&ladder),
            "top_quality": ladder.iter().map(|m| m.quality).fold(f64::MIN, f64::max),
            "analysis_points": report.analysis.points,
            "hull": hull,
        },
        "fixed": versus,
        "times": times(&report, minutes, cores),
    }))
}

fn times(report: &encode::Report, minutes: f64, cores: usize) -> Value {
    json!({
        "cores": cores,
        "analysis_seconds": report.analysis.seconds,
        "encode_seconds": report.encode_seconds,
        "package_seconds": report.package_seconds,
        "analysis_seconds_per_minute": report.analysis.seconds / minutes,
        "encode_seconds_per_minute": (report.encode_seconds + report.package_seconds) / minutes,
    })
}

/// Storage for a ladder, all rungs, video only.
fn bytes_per_hour(rungs: &[Measured]) -> f64 {
    rungs.iter().map(|m| m.bitrate).sum::<f64>() / 8.0 * 3600.0
}

/// The same class again, from scratch, on 1 core and on 2.
fn scaling(
    c: &Common,
    args: &BenchArgs,
    metric: &Metric,
    size: (u32, u32),
) -> Result<Value, PackError> {
    let class = &args.scaling_class;
    let src_path = source(c, args, class, size)?;
    let src = probe(&ffprobe_for(&c.ffmpeg), &src_path)?;
    let mut runs = Vec::new();
    for cores in [1, 2] {
        eprintln!("oca-pack: {class}: timing on {cores} core(s)");
        let env = encode::Env {
            ffmpeg: &c.ffmpeg,
            metric,
            cores,
        };
        let out = args.work.join(format!("scaling-{cores}"));
        let report = encode::encode(&env, &src_path, &out, &options(c, metric, class))?;
        runs.push(times(&report, src.duration / 60.0, cores));
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(json!({ "class": class, "runs": runs }))
}

fn summarise(rows: &[Value]) -> Value {
    let mut out = serde_json::Map::new();
    for (name, _) in FIXED {
        let mut s = serde_json::Map::new();
        for which in ["hull_vs_fixed", "ladder_vs_fixed"] {
            let vals: Vec<f64> = rows
                .iter()
                .filter_map(|r| r["fixed"][name][which]["bd_rate"].as_f64())
                .collect();
            let mean = (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64);
            s.insert(
                which.to_owned(),
                json!({"mean_bd_rate": mean, "classes_with_overlap": vals.len()}),
            );
        }
        let saved: Vec<f64> = rows
            .iter()
            .filter_map(|r| {
                Some(
                    1.0 - r["per_title"]["bytes_per_hour"].as_f64()?
                        / r["fixed"][name]["bytes_per_hour"].as_f64()?,
                )
            })
            .collect();
        s.insert(
            "mean_bytes_saved".into(),
            json!((!saved.is_empty()).then(|| saved.iter().sum::<f64>() / saved.len() as f64)),
        );
        out.insert(name.to_owned(), Value::Object(s));
    }
    Value::Object(out)
}

/// What the figures ran on: the machine as `oca-bench --results` describes
/// it (the fields bench/figures reads), plus the cores used and the load at
/// both ends.
fn machine(load_at_start: f64, cores: usize) -> Value {
    let mut m = serde_json::to_value(bench::results::Machine::here()).unwrap_or_default();
    m["load_avg_1m_at_start"] = json!(load_at_start);
    m["cores_used"] = json!(cores);
    m["load_avg_1m_at_end"] = json!(load_1m());
    m
}

/// The 1-minute load average: the machine is shared, and busy neighbours
/// stretch the times.
fn load_1m() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn tool_version(bin: &Path) -> String {
    std::process::Command::new(bin)
        .arg("-version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}
