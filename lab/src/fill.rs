//! Where an embedded appliance's fill came from, as its fill-agent measured
//! it: the agent counts the bytes it received from each source of its plan in
//! `fill_bytes_total{source,kind}` (kind `peer`, `parent` or `origin`).

use std::collections::BTreeMap;

/// Bytes received, by source kind, then by source id.
pub type BySource = BTreeMap<String, BTreeMap<String, u64>>;

/// The kinds a fill plan names, in the order the agent prefers them.
const KINDS: [(&str, &str); 3] = [
    ("peer", "peers (other embedded appliances in the region)"),
    ("parent", "the IXP parent"),
    ("origin", "the origin"),
];

/// `fill_bytes_total` from a Prometheus text exposition, by kind and source.
pub fn parse(text: &str) -> BySource {
    let mut out = BySource::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("fill_bytes_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once("} ") else {
            continue;
        };
        let Ok(bytes) = value.trim().parse::<f64>() else {
            continue;
        };
        let (source, kind) = (label(labels, "source"), label(labels, "kind"));
        if let (Some(source), Some(kind)) = (source, kind) {
            *out.entry(kind.to_owned())
                .or_default()
                .entry(source.to_owned())
                .or_default() += bytes as u64;
        }
    }
    out
}

/// The value of label `name` in `a="x",b="y"` (the agent's source ids and
/// kinds hold no quotes or commas).
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    labels.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

/// One narration line per kind of source (every kind, so an unused one reads
/// `none`), then any kind the lab does not know: `{id} from {what}: {bytes}`.
pub fn lines(id: &str, by: &BySource, mb: impl Fn(u64) -> String) -> Vec<String> {
    let describe = |sources: Option<&BTreeMap<String, u64>>| {
        let used: Vec<String> = sources
            .into_iter()
            .flatten()
            .filter(|(_, b)| **b > 0)
            .map(|(s, b)| match s.as_str() {
                // The origin's id is its kind: its bytes say it all.
                "origin" => mb(*b),
                _ => format!("{s} {}", mb(*b)),
            })
            .collect();
        if used.is_empty() {
            "none".to_owned()
        } else {
            used.join(", ")
        }
    };
    let mut out: Vec<String> = KINDS
        .iter()
        .map(|(kind, what)| format!("{id} from {what}: {}", describe(by.get(*kind))))
        .collect();
    for (kind, sources) in by {
        if !KINDS.iter().any(|(k, _)| k == kind) {
            out.push(format!("{id} from {kind}: {}", describe(Some(sources))));
        }
    }
    out
}

/// Every byte counted, whatever its source.
pub fn total(by: &BySource) -> u64 {
    by.values().flat_map(|s| s.values()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = "# HELP fill_bytes Bytes downloaded, by source.\n\
        # TYPE fill_bytes counter\n\
        fill_bytes_total{source=\"oca-x1\",kind=\"parent\"} 9000000\n\
        fill_bytes_total{source=\"origin\",kind=\"origin\"} 4100000\n\
        fill_bytes_total{source=\"oca-b1\",kind=\"peer\"} 0\n\
        fill_bytes_total{kind=\"mirror\",source=\"m1\"} 7\n\
        fill_objects_total{outcome=\"ok\"} 32\n\
        fill_bytes_total{source=\"broken\"} 5\n";

    fn mb(b: u64) -> String {
        format!("{:.1} MB", b as f64 / 1e6)
    }

    #[test]
    fn bytes_by_kind_and_source() {
        let by = parse(EXPOSITION);
        assert_eq!(by["parent"]["oca-x1"], 9_000_000);
        assert_eq!(by["origin"]["origin"], 4_100_000);
        assert_eq!(by["peer"]["oca-b1"], 0);
        assert_eq!(by["mirror"]["m1"], 7, "labels in any order");
        assert_eq!(total(&by), 13_100_007);
        assert!(parse("").is_empty());
    }

    #[test]
    fn one_line_per_kind_unused_ones_say_none() {
        let lines = lines("oca-a1", &parse(EXPOSITION), mb);
        assert_eq!(
            lines,
            [
                "oca-a1 from peers (other embedded appliances in the region): none",
                "oca-a1 from the IXP parent: oca-x1 9.0 MB",
                "oca-a1 from the origin: 4.1 MB",
                "oca-a1 from mirror: m1 0.0 MB",
            ]
        );
        let nothing = super::lines("oca-b1", &BySource::new(), mb);
        assert!(nothing.iter().all(|l| l.ends_with(": none")), "{nothing:?}");
        assert_eq!(nothing.len(), 3);
    }
}
