//! The quality metric, always measured against the source at its own
//! (display) resolution, the encode scaled up to it with bicubic.
//!
//! VMAF (libvmaf's built-in vmaf_v0.6.1 model) where an ffmpeg with the
//! libvmaf filter can be found: Debian 12's has none, but the static ffmpeg
//! that the `imageio-ffmpeg` Python wheel bundles has it (`pip install
//! imageio-ffmpeg`). Otherwise SSIM from ffmpeg's own `ssim` filter, reported
//! in dB (-10·log10(1-SSIM)), and labelled so wherever a quality is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::ladder::Params;
use crate::tool::{PackError, ffmpeg, io, run};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Choice {
    /// VMAF if an ffmpeg with libvmaf can be found, else SSIM.
    Auto,
    Vmaf,
    Ssim,
}

/// The source a quality is measured against: its path, the span of it
/// (start, seconds; `None`: all of it), and its (display) size.
#[derive(Debug, Clone, Copy)]
pub struct Reference<'a> {
    pub path: &'a Path,
    pub span: Option<(f64, f64)>,
    pub size: (u32, u32),
}

/// The selection's defaults for VMAF (see `Metric::default_params`).
pub const VMAF_PARAMS: Params = Params {
    min_bitrate: 150e3,
    max_bitrate: 8e6,
    saturation: 95.0,
    min_gain_per_doubling: 1.0,
    quality_step: 6.0,
    min_ratio: 1.5,
    max_ratio: 2.0,
};

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// VMAF 0–100, measured by this ffmpeg (which has libvmaf).
    Vmaf { ffmpeg: PathBuf },
    /// SSIM in dB, measured by the encoding ffmpeg.
    SsimDb,
}

/// How a metric is named in every output.
#[derive(Debug, Clone, Serialize)]
pub struct Label {
    /// `vmaf` or `ssim-db`.
    pub name: &'static str,
    pub description: String,
}

impl Metric {
    /// Pick the metric: `OCA_PACK_VMAF_FFMPEG`, then `ffmpeg` itself, then
    /// the imageio-ffmpeg wheel's binary, for an ffmpeg with libvmaf.
    pub fn find(choice: Choice, encoder: &Path) -> Result<Metric, PackError> {
        if choice == Choice::Ssim {
            return Ok(Metric::SsimDb);
        }
        let mut candidates: Vec<PathBuf> = Vec::new();
        if let Some(p) = std::env::var_os("OCA_PACK_VMAF_FFMPEG") {
            candidates.push(p.into());
        }
        candidates.push(encoder.to_owned());
        if let Ok(out) = Command::new("python3")
            .args([
                "-c",
                "import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())",
            ])
            .stderr(std::process::Stdio::null())
            .output()
            && out.status.success()
        {
            candidates.push(String::from_utf8_lossy(&out.stdout).trim().into());
        }
        for c in candidates {
            if has_libvmaf(&c) {
                return Ok(Metric::Vmaf { ffmpeg: c });
            }
        }
        match choice {
            Choice::Vmaf => Err(PackError::Usage(
                "no ffmpeg with libvmaf found (set OCA_PACK_VMAF_FFMPEG, or pip install imageio-ffmpeg); --metric ssim measures without it".into(),
            )),
            _ => Ok(Metric::SsimDb),
        }
    }

    pub fn label(&self) -> Label {
        match self {
            Metric::Vmaf { ffmpeg } => Label {
                name: "vmaf",
                description: format!(
                    "VMAF (libvmaf, vmaf_v0.6.1 model) against the source at display resolution, encodes upscaled bicubic; measured with {}",
                    ffmpeg.display()
                ),
            },
            Metric::SsimDb => Label {
                name: "ssim-db",
                description: "SSIM in dB (-10*log10(1-SSIM), ffmpeg's ssim filter, all planes) against the source at display resolution, encodes upscaled bicubic; not VMAF: no ffmpeg with libvmaf was found".into(),
            },
        }
    }

    /// Selection knobs in this metric's units. VMAF: a 6-point step is about
    /// one just-noticeable difference, and 95 is "as good as the source" for
    /// most viewers. SSIM dB: 20 dB is SSIM 0.99; a 1.5 dB step.
    pub fn default_params(&self) -> Params {
        match self {
            Metric::Vmaf { .. } => VMAF_PARAMS,
            Metric::SsimDb => Params {
                min_bitrate: 150e3,
                max_bitrate: 8e6,
                saturation: 20.0,
                min_gain_per_doubling: 0.3,
                quality_step: 1.5,
                min_ratio: 1.5,
                max_ratio: 2.0,
            },
        }
    }

    /// Mean quality of `distorted` (any size; raw H.264 at that frame rate
    /// when `raw_h264_fps` says so) against `reference` (both inputs are
    /// timed from zero). Returns the raw mean: VMAF, or linear SSIM (see
    /// `scale`).
    pub fn measure(
        &self,
        encoder: &Path,
        reference: &Reference,
        distorted: &Path,
        raw_h264_fps: Option<f64>,
        threads: usize,
    ) -> Result<f64, PackError> {
        // The score log goes to the system's temporary directory, not the
        // output: ffmpeg's filters write it without checking, so a full
        // output disk would otherwise read as a missing score.
        let log_file = tempfile::Builder::new()
            .prefix("oca-pack-score-")
            .tempfile()
            .map_err(io(&std::env::temp_dir()))?;
        let log = log_file.path();
        let bin = match self {
            Metric::Vmaf { ffmpeg } => ffmpeg.as_path(),
            Metric::SsimDb => encoder,
        };
        let mut cmd = ffmpeg(bin);
        if let Some(fps) = raw_h264_fps {
            cmd.args(["-f", "h264", "-framerate"]).arg(fps.to_string());
        }
        cmd.arg("-i").arg(distorted);
        let (w, h) = reference.size;
        if let Some((start, secs)) = reference.span {
            cmd.args(["-ss", &start.to_string(), "-t", &secs.to_string()]);
        }
        cmd.arg("-i").arg(reference.path);
        let compare = match self {
            Metric::Vmaf { .. } => format!(
                "libvmaf=n_threads={threads}:log_fmt=json:log_path={}",
                escape(log)
            ),
            Metric::SsimDb => format!("ssim=stats_file={}", escape(log)),
        };
        let graph = format!(
            "[0:v]scale={w}:{h}:flags=bicubic,format=yuv420p,setpts=PTS-STARTPTS[d];\
             [1:v]format=yuv420p,setpts=PTS-STARTPTS[r];[d][r]{compare}"
        );
        cmd.args(["-filter_complex_threads", "1", "-threads"])
            .arg(threads.to_string())
            .args(["-lavfi", &graph, "-f", "null", "-"]);
        run("measure quality", &mut cmd)?;
        let text = std::fs::read_to_string(log).map_err(io(log))?;
        match self {
            Metric::Vmaf { .. } => vmaf_mean(&text),
            Metric::SsimDb => ssim_mean(&text),
        }
        .ok_or_else(|| PackError::ToolFailed {
            step: "measure quality".into(),
            detail: format!("no score in {}", log.display()),
        })
    }

    /// A raw mean (VMAF, or linear SSIM) on the reported scale.
    pub fn scale(&self, raw: f64) -> f64 {
        match self {
            Metric::Vmaf { .. } => raw,
            Metric::SsimDb => -10.0 * (1.0 - raw).max(1e-10).log10(),
        }
    }
}

fn has_libvmaf(ffmpeg: &Path) -> bool {
    Command::new(ffmpeg)
        .args(["-hide_banner", "-filters"])
        .stderr(std::process::Stdio::null())
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .any(|w| w == "libvmaf")
        })
}

/// A path inside a filter graph option: `:` `\` `'` and `,` are special.
fn escape(p: &Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | '\\' | '\'' | ',' | ';' | '[' | ']') {
            out.push('\\');
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn vmaf_mean(json: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["pooled_metrics"]["vmaf"]["mean"].as_f64()
}

/// The mean of the per-frame `All:` values in an ssim stats file.
fn ssim_mean(stats: &str) -> Option<f64> {
    let vals: Vec<f64> = stats
        .lines()
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("All:"))
                .and_then(|v| v.parse().ok())
        })
        .collect();
    (!vals.is_empty()).then(|| vals.iter().sum::<f64>() / vals.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_scores() {
        let stats = "n:1 Y:0.990000 U:0.99 V:0.99 All:0.990000 (20.000000)\n\
                     n:2 Y:0.980000 U:0.98 V:0.98 All:0.980000 (16.989700)\n";
        let m = ssim_mean(stats).unwrap();
        assert!((m - 0.985).abs() < 1e-9);
        assert!((Metric::SsimDb.scale(0.99) - 20.0).abs() < 1e-9);
        assert_eq!(ssim_mean("nothing"), None);
        let json = r#"{"pooled_metrics":{"vmaf":{"min":80.0,"mean":91.5}}}"#;
        assert_eq!(vmaf_mean(json), Some(91.5));
        assert_eq!(vmaf_mean("{}"), None);
    }

    #[test]
    fn escapes_filter_paths() {
        assert_eq!(escape(Path::new("/tmp/a:b,c")), r"/tmp/a\\:b\\,c");
    }
}
