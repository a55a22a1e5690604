//! The hour-by-hour split as a picture: one panel per planner, the traffic of
//! each hour stacked by where it came from (inside the ISP at the bottom,
//! then IXPs, other ISPs, the origin on top), in Gbit/s.

use std::fmt::Write as _;

use super::Report;

const WIDTH: f64 = 960.0;
const PANEL: f64 = 180.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 75.0;
const GAP: f64 = 50.0;

const LAYERS: [(&str, &str); 4] = [
    ("inside the ISP", "#2a9d8f"),
    ("IXP", "#e9c46a"),
    ("other ISPs", "#f4a261"),
    ("origin", "#e76f51"),
];

/// The SVG document for `report`'s first disk size.
pub fn hourly(report: &Report) -> String {
    let panels: Vec<(&String, &super::sim::Outcome)> = report.planners.iter().collect();
    let height = TOP + panels.len() as f64 * (PANEL + GAP) + 20.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(
        out,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{LEFT}" y="20" font-size="14">Where viewers' bytes came from, hour by hour (Gbit/s)</text>"#
    );
    // Legend, under the title.
    for (i, (name, colour)) in LAYERS.iter().enumerate() {
        let x = LEFT + 130.0 * i as f64;
        let _ = write!(
            out,
            r#"<rect x="{x}" y="30" width="12" height="12" fill="{colour}"/><text x="{}" y="41">{name}</text>"#,
            x + 16.0
        );
    }
    for (p, (name, o)) in panels.iter().enumerate() {
        let h = &o.hourly;
        let layers = [&h.inside_isp, &h.ixp, &h.other_isp, &h.origin];
        let n = h.inside_isp.len();
        let gbps = |bytes: f64| bytes * 8.0 / 3600.0 / 1e9;
        let max = (0..n)
            .map(|i| gbps(layers.iter().map(|l| l[i]).sum()))
            .fold(0.0, f64::max)
            .max(1e-9);
        let top = TOP + p as f64 * (PANEL + GAP);
        let x = |i: usize| LEFT + (WIDTH - LEFT - RIGHT) * i as f64 / (n.max(2) - 1) as f64;
        let y = |v: f64| top + PANEL - PANEL * v / max;
        let mut below = vec![0.0; n];
        for (layer, (_, colour)) in layers.iter().zip(LAYERS) {
            let above: Vec<f64> = (0..n).map(|i| below[i] + gbps(layer[i])).collect();
            let mut points = String::new();
            for (i, v) in above.iter().enumerate() {
                let _ = write!(points, "{:.1},{:.1} ", x(i), y(*v));
            }
            for (i, v) in below.iter().enumerate().rev() {
                let _ = write!(points, "{:.1},{:.1} ", x(i), y(*v));
            }
            let _ = write!(out, r#"<polygon points="{points}" fill="{colour}"/>"#);
            below = above;
        }
        let _ = write!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="13">{name}: peak hours {:.1}% inside the ISP, all hours {:.1}%</text>"#,
            top - 6.0,
            o.peak_inside_isp_share * 100.0,
            o.inside_isp_share * 100.0
        );
        // Axes: Gbit/s at the top and bottom, days along the bottom.
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" y1="{0}" x2="{1}" y2="{0}" stroke="#333"/><text x="{2}" y="{3}" text-anchor="end">{max:.0}</text><text x="{2}" y="{0}" text-anchor="end">0</text>"##,
            top + PANEL,
            WIDTH - RIGHT,
            LEFT - 6.0,
            top + 10.0
        );
        for day in (0..n / 24).step_by(5) {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">day {}</text>"#,
                x(day * 24),
                top + PANEL + 16.0,
                day + 1
            );
        }
    }
    out.push_str("</svg>\n");
    out
}
