//! Running ffmpeg and ffprobe, and what a source is. Every failure becomes a
//! `PackError` naming the step and the tool's own last word on it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde::Deserialize;

/// What went wrong, by step.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: cannot read: {source}")]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a video file ({detail})")]
    NotVideo { path: PathBuf, detail: String },
    #[error("{path}: no video stream")]
    NoVideoStream { path: PathBuf },
    #[error("{tool} could not be run ({source}); install ffmpeg")]
    ToolMissing {
        tool: String,
        source: std::io::Error,
    },
    #[error("{step}: {detail}")]
    ToolFailed { step: String, detail: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no space left on device (while: {step})")]
    DiskFull { path: PathBuf, step: String },
    #[error("{0}")]
    Usage(String),
}

/// Whether the filesystem holding `path` has (next to) no room left: under
/// 1 MiB for an unprivileged writer.
pub fn disk_full(path: &Path) -> bool {
    rustix::fs::statvfs(path).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) < 1 << 20)
}

/// An IO error on `path`, for `map_err`.
pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Run a tool to completion; a non-zero exit is a `ToolFailed` carrying the
/// last line of its stderr (ffmpeg's own reason: "No space left on device",
/// "Invalid data found when processing input", ...).
pub fn run(step: &str, cmd: &mut Command) -> Result<Output, PackError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|source| PackError::ToolMissing { tool, source })?;
    if out.status.success() {
        return Ok(out);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let last = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no message");
    Err(PackError::ToolFailed {
        step: step.to_owned(),
        detail: format!("{last} ({})", out.status),
    })
}

/// An ffmpeg command that only speaks up on errors and never asks questions.
pub fn ffmpeg(bin: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"]);
    c
}

/// What the packager needs to know about a source.
#[derive(Debug, Clone, PartialEq, serde::Serialize, Deserialize)]
pub struct Source {
    pub width: u32,
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// Seconds.
    pub duration: f64,
    pub has_audio: bool,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    streams: Vec<ProbeStream>,
    format: Option<ProbeFormat>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    duration: Option<String>,
}

/// Probe `path` with ffprobe (found beside `ffmpeg`'s name: `ffprobe`).
pub fn probe(ffprobe: &Path, path: &Path) -> Result<Source, PackError> {
    // A clear "cannot read" beats ffprobe's guesswork for missing files,
    // directories and permissions.
    let meta = std::fs::metadata(path).map_err(|source| PackError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_file() {
        return Err(PackError::Unreadable {
            path: path.to_owned(),
            source: std::io::Error::other("not a regular file"),
        });
    }
    std::fs::File::open(path).map_err(|source| PackError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    let mut cmd = Command::new(ffprobe);
    cmd.args(["-v", "error", "-of", "json", "-show_entries"])
        .arg("stream=codec_type,width,height,avg_frame_rate,r_frame_rate,duration:format=duration")
        .arg(path);
    let out = run("probe", &mut cmd).map_err(|e| match e {
        PackError::ToolFailed { detail, .. } => PackError::NotVideo {
            path: path.to_owned(),
            detail,
        },
        e => e,
    })?;
    parse_probe(path, &out.stdout)
}

fn parse_probe(path: &Path, json: &[u8]) -> Result<Source, PackError> {
    let not_video = |detail: &str| PackError::NotVideo {
        path: path.to_owned(),
        detail: detail.to_owned(),
    };
    let p: Probe = serde_json::from_slice(json).map_err(|_| not_video("unreadable probe"))?;
    let has_audio = p
        .streams
        .iter()
        .any(|s| s.codec_type.as_deref() == Some("audio"));
    let Some(v) = p
        .streams
        .iter()
        .find(|s| s.codec_type.as_deref() == Some("video") && s.width.unwrap_or(0) > 0)
    else {
        return Err(if p.streams.is_empty() {
            not_video("no streams")
        } else {
            PackError::NoVideoStream {
                path: path.to_owned(),
            }
        });
    };
    let fps = [&v.avg_frame_rate, &v.r_frame_rate]
        .into_iter()
        .flatten()
        .filter_map(|r| ratio(r))
        .find(|f| *f > 0.0 && *f <= 240.0)
        .ok_or_else(|| not_video("no frame rate"))?;
    let duration = [
        p.format.as_ref().and_then(|f| f.duration.as_deref()),
        v.duration.as_deref(),
    ]
    .into_iter()
    .flatten()
    .filter_map(|d| d.parse::<f64>().ok())
    .find(|d| d.is_finite() && *d > 0.0)
    .ok_or_else(|| not_video("no duration (a still image?)"))?;
    let (width, height) = (v.width.unwrap_or(0), v.height.unwrap_or(0));
    if height < 2 || width < 2 {
        return Err(not_video("picture too small"));
    }
    Ok(Source {
        width,
        height,
        fps,
        duration,
        has_audio,
    })
}

/// "30000/1001" → 29.97.
fn ratio(s: &str) -> Option<f64> {
    let (n, d) = s.split_once('/').unwrap_or((s, "1"));
    let (n, d) = (n.parse::<f64>().ok()?, d.parse::<f64>().ok()?);
    (d > 0.0).then(|| n / d)
}

/// The ffprobe beside an ffmpeg: same directory, or on PATH for a bare name.
pub fn ffprobe_for(ffmpeg: &Path) -> PathBuf {
    match ffmpeg.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join("ffprobe"),
        _ => PathBuf::from("ffprobe"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_probe() {
        let json = br#"{"streams":[{"codec_type":"audio"},{"codec_type":"video","width":1280,"height":720,"avg_frame_rate":"25/1","r_frame_rate":"25/1"}],"format":{"duration":"12.000000"}}"#;
        let s = parse_probe(Path::new("x"), json).unwrap();
        assert_eq!(
            s,
            Source {
                width: 1280,
                height: 720,
                fps: 25.0,
                duration: 12.0,
                has_audio: true
            }
        );
    }

    #[test]
    fn refuses_what_is_not_a_video() {
        let cases: [(&[u8], &str); 5] = [
            (br#"{"streams":[{"codec_type":"audio"}],"format":{"duration":"3"}}"#, "no video stream"),
            (br#"{"streams":[],"format":{}}"#, "no streams"),
            (br#"{"streams":[{"codec_type":"video","width":64,"height":64,"avg_frame_rate":"0/0","r_frame_rate":"0/0"}]}"#, "no frame rate"),
            (br#"{"streams":[{"codec_type":"video","width":64,"height":64,"avg_frame_rate":"25/1"}],"format":{"duration":"N/A"}}"#, "no duration"),
            (b"garbage", "unreadable probe"),
        ];
        for (json, needle) in cases {
            let e = parse_probe(Path::new("x"), json).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        assert_eq!(
            ratio("30000/1001").map(|f| (f * 100.0).round()),
            Some(2997.0)
        );
        assert_eq!(ratio("1/0"), None);
    }
}
