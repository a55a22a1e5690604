//! Content classes made by ffmpeg's own generators, for tests and figures:
//! no real film is to be had here, so each class stands for a kind of title
//! by how hard it is to code.

use std::path::Path;

use crate::tool::{PackError, ffmpeg, io, run};

/// The classes, easiest first.
pub const CLASSES: [(&str, &str); 6] = [
    (
        "flat",
        "flat graphics, little motion (boxes and a grid over a slowly shifting gradient; one box glides)",
    ),
    (
        "testpattern",
        "test pattern (testsrc2: colour bars, moving shapes, counters)",
    ),
    (
        "mandelbrot",
        "fractal zoom (mandelbrot): fine detail, all of the picture changing",
    ),
    (
        "life",
        "cellular automaton (Conway's life, 4x4-pixel cells): sharp edges, busy motion",
    ),
    (
        "noise",
        "noise with motion (moving gradients under temporal noise): grain-like, hardest",
    ),
    (
        "mix",
        "shots of flat, test pattern, fractal zoom and noise, a quarter each",
    ),
];

/// The lavfi graph making `class` at `w`x`h`, `fps`, for `secs` seconds;
/// `None` for an unknown class.
pub fn graph(class: &str, w: u32, h: u32, fps: u32, secs: f64) -> Option<String> {
    let even = |x: u32| (x / 2).max(1) * 2;
    let one = |c: &str, d: f64| -> Option<String> {
        Some(match c {
            "flat" => format!(
                "gradients=s={w}x{h}:r={fps}:d={d}:speed=0.01:c0=0x203a5a:c1=0x6fa3c8:\
                 x0=0:y0=0:x1={w}:y1={h}[bg{c}];\
                 color=c=0xf4a259:s={}x{}:r={fps}:d={d}[fg{c}];\
                 color=c=0xe63946:s={}x{}:r={fps}:d={d}[bar{c}];\
                 [bg{c}][fg{c}]overlay=x='(W-w)*(0.5+0.4*sin(t/2))':y='(H-h)/2':shortest=1[a{c}];\
                 [a{c}][bar{c}]overlay=x={}:y={},drawgrid=w={}:h={}:t=2:c=white@0.3,format=yuv420p",
                even(w / 6),
                even(h / 5),
                even(w * 15 / 64),
                even(h / 12),
                w / 16,
                h * 7 / 9,
                w / 8,
                w / 8
            ),
            "testpattern" => format!("testsrc2=s={w}x{h}:r={fps}:d={d},format=yuv420p"),
            "mandelbrot" => {
                format!("mandelbrot=s={w}x{h}:r={fps},trim=duration={d},format=yuv420p")
            }
            "life" => format!(
                "life=s={}x{}:r={fps}:mold=10:ratio=0.1:death_color=#C83232:life_color=#00ff00,\
                 scale={w}:{h}:flags=neighbor,trim=duration={d},format=yuv420p",
                w / 4,
                h / 4
            ),
            "noise" => format!(
                "gradients=s={w}x{h}:r={fps}:d={d}:speed=0.03,format=yuv420p,noise=alls=20:allf=t+u"
            ),
            _ => return None,
        })
    };
    if class == "mix" {
        let parts = ["flat", "testpattern", "mandelbrot", "noise"];
        let d = secs / parts.len() as f64;
        let mut g = String::new();
        for (i, p) in parts.iter().enumerate() {
            g += &format!("{},setsar=1[s{i}];", one(p, d)?);
        }
        g += &format!("[s0][s1][s2][s3]concat=n={}:v=1:a=0[out0]", parts.len());
        return Some(g);
    }
    one(class, secs).map(|g| format!("{g}[out0]"))
}

/// Write a source of `class` to `out` (Matroska, near-lossless H.264 and a
/// 440 Hz tone as its audio).
pub fn make_source(
    ffmpeg_bin: &Path,
    class: &str,
    (w, h): (u32, u32),
    fps: u32,
    secs: f64,
    out: &Path,
) -> Result<(), PackError> {
    let g = graph(class, w, h, fps, secs).ok_or_else(|| {
        let names: Vec<&str> = CLASSES.iter().map(|c| c.0).collect();
        PackError::Usage(format!(
            "unknown class {class:?}; one of {}",
            names.join(", ")
        ))
    })?;
    if let Some(d) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).map_err(io(d))?;
    }
    let mut part = out.as_os_str().to_owned();
    part.push(".part.mkv");
    let mut cmd = ffmpeg(ffmpeg_bin);
    cmd.args(["-f", "lavfi", "-i", &g, "-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=48000:duration={secs}"
        ))
        .args(["-map", "0:v", "-map", "1:a", "-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-crf", "4"])
        .args(["-c:a", "flac"])
        .arg(&part);
    run(&format!("make {class} source"), &mut cmd)?;
    std::fs::rename(&part, out).map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_class_has_a_graph_with_one_output() {
        for (c, _) in CLASSES {
            let g = graph(c, 320, 180, 25, 4.0).unwrap();
            assert_eq!(g.matches("[out0]").count(), 1, "{c}: {g}");
        }
        assert!(graph("film", 320, 180, 25, 4.0).is_none());
    }
}
