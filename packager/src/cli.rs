//! The command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::analyze::{self, Plan};
use crate::encode::{self, Options};
use crate::ladder::{self, Params};
use crate::metric::{Choice, Metric};
use crate::tool::{PackError, ffprobe_for, probe};

#[derive(Parser)]
#[command(
    name = "oca-pack",
    version,
    about = "Per-title encoding: analyse a title, pick its ladder, encode and package it for steering"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Args, Clone)]
pub struct Common {
    /// The ffmpeg to encode with (ffprobe is taken from beside it).
    #[arg(long, global = true, default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,
    /// Quality metric: VMAF where an ffmpeg with libvmaf is found
    /// (OCA_PACK_VMAF_FFMPEG, the encoding ffmpeg, or pip's imageio-ffmpeg), else SSIM (dB).
    #[arg(long, global = true, value_enum, default_value = "auto")]
    pub metric: Choice,
    /// Cores to use (default: all).
    #[arg(long, global = true)]
    pub jobs: Option<usize>,
    #[command(flatten)]
    pub plan: PlanArgs,
    #[command(flatten)]
    pub ladder: LadderArgs,
}

#[derive(Args, Clone)]
pub struct PlanArgs {
    /// x264 preset, for the trials and the ladder alike.
    #[arg(long, global = true, default_value = "veryfast")]
    pub preset: String,
    /// Trial CRF values (comma-separated).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "18,23,28,33,38"
    )]
    pub crfs: Vec<f64>,
    /// Trial heights (comma-separated; the source's own is always tried).
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "1080,720,540,360,240"
    )]
    pub heights: Vec<u32>,
    /// Chunks sampled for the analysis, and seconds each.
    #[arg(long, global = true, default_value_t = 4)]
    pub chunks: usize,
    #[arg(long, global = true, default_value_t = 2.0)]
    pub chunk_secs: f64,
}

/// Overrides of the metric's default selection knobs.
#[derive(Args, Clone, Default)]
pub struct LadderArgs {
    /// Bits per second (e.g. 150000).
    #[arg(long, global = true)]
    pub min_bitrate: Option<f64>,
    #[arg(long, global = true)]
    pub max_bitrate: Option<f64>,
    /// The top quality worth paying for (metric units).
    #[arg(long, global = true)]
    pub saturation: Option<f64>,
    #[arg(long, global = true)]
    pub quality_step: Option<f64>,
    #[arg(long, global = true)]
    pub min_ratio: Option<f64>,
    #[arg(long, global = true)]
    pub max_ratio: Option<f64>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Trial-encode sampled chunks and print the rate–quality points, the hull and the ladder.
    Analyze {
        /// The source: any file ffmpeg reads with a video stream.
        source: PathBuf,
    },
    /// Analyse, encode the chosen ladder, package HLS and DASH as OUT/titles/<ID>/.
    Encode {
        /// The source: any file ffmpeg reads with a video stream.
        source: PathBuf,
        /// The packaged directory (`steering catalog import OUT` reads it).
        out: PathBuf,
        /// Title id: 1-64 of A-Z a-z 0-9 - _ . (the directory under OUT/titles/).
        #[arg(long)]
        title: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Region where it may be played (repeatable; none: nowhere yet).
        #[arg(long = "region")]
        regions: Vec<String>,
        /// Unix seconds before which it may not be played.
        #[arg(long)]
        release: Option<u64>,
        /// Segment and GOP duration, seconds.
        #[arg(long, default_value_t = 4.0)]
        segment: f64,
        /// Replace a title already packaged under that id.
        #[arg(long)]
        force: bool,
        /// Encrypt with Common Encryption (cenc): a fresh content key per
        /// packaging, its ID in OUT/titles/<ID>/drm.json, the key itself in
        /// OUT/keys/<ID>.json (mode 0600, never under titles/).
        #[arg(long)]
        encrypt: bool,
    },
    /// Write a source of a content class made by ffmpeg's generators.
    Source {
        /// flat, testpattern, mandelbrot, life, noise or mix.
        class: String,
        /// The file to write (Matroska).
        out: PathBuf,
        #[arg(long, default_value_t = 12.0)]
        seconds: f64,
        #[arg(long, default_value = "1280x720", value_parser = parse_size)]
        size: (u32, u32),
        #[arg(long, default_value_t = 25)]
        fps: u32,
    },
    /// Per class: the per-title ladder against fixed ladders, written as JSON.
    BenchLadders(crate::bench::BenchArgs),
}

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or("WIDTHxHEIGHT")?;
    let (w, h) = (
        w.parse().map_err(|_| "width")?,
        h.parse().map_err(|_| "height")?,
    );
    if w < 16 || h < 16 || w % 2 == 1 || h % 2 == 1 {
        return Err("even sizes of at least 16x16".into());
    }
    Ok((w, h))
}

impl Common {
    pub fn cores(&self) -> usize {
        self.jobs.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        })
    }

    pub fn plan(&self) -> Plan {
        Plan {
            heights: self.plan.heights.clone(),
            crfs: self.plan.crfs.clone(),
            chunks: self.plan.chunks,
            chunk_secs: self.plan.chunk_secs,
            preset: self.plan.preset.clone(),
        }
    }

    pub fn params(&self, metric: &Metric) -> Params {
        let d = metric.default_params();
        let l = &self.ladder;
        Params {
            min_bitrate: l.min_bitrate.unwrap_or(d.min_bitrate),
            max_bitrate: l.max_bitrate.unwrap_or(d.max_bitrate),
            saturation: l.saturation.unwrap_or(d.saturation),
            quality_step: l.quality_step.unwrap_or(d.quality_step),
            min_ratio: l.min_ratio.unwrap_or(d.min_ratio),
            max_ratio: l.max_ratio.unwrap_or(d.max_ratio),
            ..d
        }
    }

    pub fn metric(&self) -> Result<Metric, PackError> {
        Metric::find(self.metric, &self.ffmpeg)
    }
}

/// Exit codes: 64 bad usage, 65 not a video, 66 unreadable input, 1 otherwise.
pub fn exit_code(e: &PackError) -> u8 {
    match e {
        PackError::Usage(_) => 64,
        PackError::NotVideo { .. } | PackError::NoVideoStream { .. } => 65,
        PackError::Unreadable { .. } => 66,
        _ => 1,
    }
}

pub fn run(cli: Cli) -> ExitCode {
    match dispatch(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("oca-pack: {e}");
            ExitCode::from(exit_code(&e))
        }
    }
}

fn dispatch(cli: Cli) -> Result<(), PackError> {
    let c = &cli.common;
    match &cli.command {
        Command::Analyze { source } => analyze_cmd(c, source),
        Command::Encode {
            source,
            out,
            title,
            name,
            regions,
            release,
            segment,
            force,
            encrypt,
        } => {
            let metric = c.metric()?;
            let opts = Options {
                title: title.clone(),
                name: name.clone().unwrap_or_else(|| title.clone()),
                regions: regions.clone(),
                release: *release,
                segment_secs: *segment,
                plan: c.plan(),
                params: c.params(&metric),
                force: *force,
                encrypt: *encrypt,
            };
            let env = encode::Env {
                ffmpeg: &c.ffmpeg,
                metric: &metric,
                cores: c.cores(),
            };
            let r = encode::encode(&env, source, out, &opts)?;
            let label = metric.label().name;
            for rung in &r.rungs {
                println!(
                    "{:<14} {:>5}x{:<5} crf {:>4} {:>8.0} kb/s  {label} {:.2}",
                    rung.name,
                    rung.width,
                    rung.height,
                    rung.crf,
                    rung.bitrate / 1e3,
                    rung.quality
                );
            }
            println!(
                "wrote {} ({} rungs; analysis {:.1} s, encode {:.1} s, package {:.1} s)",
                out.join("titles").join(title).display(),
                r.rungs.len(),
                r.analysis.seconds,
                r.encode_seconds,
                r.package_seconds
            );
            Ok(())
        }
        Command::Source {
            class,
            out,
            seconds,
            size,
            fps,
        } => {
            crate::classes::make_source(&c.ffmpeg, class, *size, *fps, *seconds, out)?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::BenchLadders(args) => crate::bench::run(c, args),
    }
}

fn analyze_cmd(c: &Common, source: &Path) -> Result<(), PackError> {
    let src = probe(&ffprobe_for(&c.ffmpeg), source)?;
    let metric = c.metric()?;
    eprintln!("oca-pack: quality metric: {}", metric.label().description);
    let work = tempfile::tempdir().map_err(crate::tool::io(Path::new("temporary directory")))?;
    let a = analyze::analyze(
        &analyze::Env {
            ffmpeg: &c.ffmpeg,
            metric: &metric,
            cores: c.cores(),
            work: work.path(),
        },
        source,
        &src,
        &c.plan(),
    )?;
    let rungs = ladder::select(&a.points, &c.params(&metric));
    let label = metric.label();
    println!("# quality: {}", label.description);
    println!(
        "# source {}x{} {:.3} fps {:.1} s; {} chunks; analysis {:.1} s",
        src.width,
        src.height,
        src.fps,
        src.duration,
        a.chunks.len(),
        a.seconds
    );
    println!("height  crf  kb/s  {}  hull  rung", label.name);
    for p in &a.points {
        println!(
            "{:>6} {:>4} {:>8.0} {:>7.2} {:>5} {:>5}",
            p.height,
            p.crf,
            p.bitrate / 1e3,
            p.quality,
            if a.hull.contains(p) { "*" } else { "" },
            if rungs.contains(p) { "*" } else { "" }
        );
    }
    Ok(())
}
