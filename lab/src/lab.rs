//! `oca-lab`: the whole stack on loopback with one command, narrated.
//!
//! steering with accounts and the catalog; nginx as the origin; an IXP
//! appliance holding the catalogue; two embedded appliances in two ISPs
//! (127.1.0.0/16 and 127.2.0.0/16) starting empty; an off-peak fill of both on a
//! simulated clock (so the night window comes at once); then simulated viewers
//! in each ISP (`oca-bench players`) while a browser may watch too. Every
//! process it starts is stopped when it ends (duration, Ctrl-C, or an error).
//!
//! The viewers are `oca-bench players` processes, one per ISP, whose JSON
//! reports the lab reads: the load generator stays a program of its own,
//! bound to each ISP's source addresses, with no library API to keep.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2e::Proc;
use e2e::stack::{self, ApplianceSpec, Holds, Nginx, Stack};

use crate::fill;

/// 03:00 UTC on the day of 1 January 2027: inside the default 02:00-06:00 window.
const NIGHT: u64 = 1_798_772_400;

#[derive(Debug, Clone)]
pub struct LabArgs {
    /// How long viewers watch.
    pub duration: Duration,
    /// Viewers per ISP.
    pub viewers: u32,
    /// Download cap of each fill agent, bits per second.
    pub fill_rate_bps: u64,
}

/// Narration goes to stderr once a report is to be printed as JSON on stdout.
static NARRATE_TO_STDERR: AtomicBool = AtomicBool::new(false);

pub fn narrate_to_stderr() {
    NARRATE_TO_STDERR.store(true, Ordering::Relaxed);
}

pub fn say(msg: impl AsRef<str>) {
    if NARRATE_TO_STDERR.load(Ordering::Relaxed) {
        eprintln!("lab: {}", msg.as_ref());
    } else {
        println!("lab: {}", msg.as_ref());
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

/// The programs the lab starts, built next to `oca-lab`.
const BINARIES: [&str; 4] = ["steering", "oca", "fill-agent", "oca-bench"];

/// A workspace program next to this one (`target/<profile>/`).
fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(name))
}

/// Every program the lab starts is built: one line now rather than a panic
/// with half the stack running.
pub fn check_binaries() -> anyhow::Result<()> {
    let mut missing = Vec::new();
    for name in BINARIES {
        if !sibling(name)?.exists() {
            missing.push(name);
        }
    }
    anyhow::ensure!(
        missing.is_empty(),
        "not built next to oca-lab: {} (build them with `cargo build -p steering -p oca -p fill-agent -p bench -p lab`, \
         or run scripts/lab.sh)",
        missing.join(", ")
    );
    Ok(())
}

/// The ISPs of the lab: name, client range, embedded appliance.
pub const ISPS: [(&str, &str, &str); 2] = [("A", "127.1", "oca-a1"), ("B", "127.2", "oca-b1")];

/// The lab's processes, running: what `start` hands to the narrated run, the
/// soak and the chaos run. Dropping it stops every one of them.
pub struct Lab {
    // Declared first so the agents stop before the appliances they fill.
    pub agents: BTreeMap<&'static str, Proc>,
    pub s: Stack,
    /// Kept for its lifetime: dropping it stops nginx.
    pub _origin: Nginx,
    /// Viewer accounts' tokens per ISP.
    pub users: BTreeMap<&'static str, Vec<String>>,
    pub player: Option<tempfile::TempDir>,
    pub fill_rate_bps: u64,
    /// The steering URLs viewers are given, in order (`--steering`).
    pub steering: Vec<String>,
    /// `steering recommender`, which the home page's rows come from; kept
    /// for its lifetime.
    pub _recommender: Proc,
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Steering first: stopped after the appliances, it would log each of
        // them going down below the report.
        self.s.steering.kill9();
    }
}

/// The IXP appliance and the two ISPs' embedded ones, plus `more`.
fn fleet(more: &[ApplianceSpec]) -> Vec<ApplianceSpec> {
    let mut fleet = vec![
        ApplianceSpec {
            id: "oca-x1",
            tier: "ixp",
            site: "ixp-ams",
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a",
            serves: &["127.1.0.0/16"],
            holds: Holds::Nothing,
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-b1",
            tier: "embedded",
            site: "isp-b",
            serves: &["127.2.0.0/16"],
            holds: Holds::Nothing,
            ..ApplianceSpec::default()
        },
    ];
    fleet.extend(more.iter().cloned());
    fleet
}

/// Start the stack (steering, the origin, the fleet plus `more`), fill every
/// embedded appliance off-peak, check steering sends each ISP to its own box,
/// and create the viewers' accounts. The fill agents keep running.
pub fn start(args: &LabArgs, more: &[ApplianceSpec], stop: &AtomicBool) -> anyhow::Result<Lab> {
    start_on(args, more, stop, None, |_| Ok(()))
}

/// Like `start`, with steering on `database` (a postgres:// URL: steering runs
/// as instance `steer-a` in eu-west) instead of its SQLite file; `before_fill`
/// runs once the stack is up, before the fill (another instance, say).
pub fn start_on(
    args: &LabArgs,
    more: &[ApplianceSpec],
    stop: &AtomicBool,
    database: Option<&str>,
    before_fill: impl FnOnce(&mut Stack) -> anyhow::Result<()>,
) -> anyhow::Result<Lab> {
    say("packaging test content with oca-pack (cached after the first run) ...");
    let content = stack::content();
    let origin = stack::nginx(&content);
    say(format!(
        "origin: nginx serving the packaged titles at http://{}",
        origin.addr
    ));
    let player = player_dir();
    let mut extra = stack::origin_config(&origin);
    if let Some(dir) = &player {
        extra = format!("player_dir = \"{}\"\n{extra}", dir.path().display());
    }
    let fleet = fleet(more);
    say(format!(
        "starting steering and {} appliances ...",
        fleet.len()
    ));
    if database.is_some() {
        extra.push_str(stack::INSTANCE_A);
    }
    let mut s = stack::start_on(&fleet, &extra, &content, database);
    say(format!("steering: http://{}", s.addr));
    for (id, (_, http)) in &s.appliances {
        let what = match *id {
            "oca-x1" => "IXP appliance, region eu-west, holds the catalogue",
            "oca-a1" => "embedded in ISP A (clients 127.1.0.0/16), empty",
            "oca-b1" => "embedded in ISP B (clients 127.2.0.0/16), empty",
            _ => "embedded, no viewers: its content is removed and filled again and again",
        };
        say(format!("  {id}: http://{http} — {what}"));
    }
    let embedded: Vec<&'static str> = fleet
        .iter()
        .filter(|a| a.tier == "embedded")
        .map(|a| a.id)
        .collect();
    let recommender = recommendations(&mut s)?;
    before_fill(&mut s)?;
    let agents = fill(&s, args, &embedded, stop)?;
    let users = viewers(&s, args)?;
    let steering = vec![format!("http://{}", s.addr)];
    Ok(Lab {
        agents,
        s,
        _origin: origin,
        users,
        player,
        fill_rate_bps: args.fill_rate_bps,
        steering,
        _recommender: recommender,
    })
}

/// Start the recommendation service on steering's store, retraining every
/// ten seconds (the lab's history is minutes long), and point steering at it
/// (steering restarts on its address to take the new config).
fn recommendations(s: &mut Stack) -> anyhow::Result<Proc> {
    let mut cfg = std::fs::read_to_string(&s.config)?;
    cfg += "\n[recommender]\nretrain_every = \"10s\"\n";
    std::fs::write(&s.config, &cfg)?;
    let config = s.config.to_str().unwrap_or_default().to_owned();
    let recommender = Proc::start(
        "steering",
        &[
            "recommender",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
        ],
        &[("STEERING_LOG", "warn")],
    );
    let addr = recommender.addr("http=");
    cfg += &format!("[recommendations]\nurl = \"http://{addr}/rows\"\ncache_ttl = \"10s\"\n");
    std::fs::write(&s.config, &cfg)?;
    s.restart_steering();
    say(format!(
        "recommendations: steering recommender at http://{addr}, learning from the lab's plays every 10 s"
    ));
    Ok(recommender)
}

/// Run the narrated lab; `stop` ends the viewing phase early (Ctrl-C).
pub fn run(args: &LabArgs, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let started = Instant::now();
    let lab = start(args, &[], &stop)?;
    let s = &lab.s;
    if lab.player.is_some() {
        let alice = s.token("alice");
        say(format!(
            "while the viewers run, a browser can play from the lab: http://{}/player/player.html?token={alice}&title=t1",
            s.addr,
        ));
        say(format!(
            "and see alice's home rows (recommendations, search): http://{}/player/home.html?token={alice}",
            s.addr,
        ));
    }
    if stop.load(Ordering::Relaxed) {
        say("stopped");
        return Ok(());
    }
    say(viewers_line(
        args.viewers,
        args.duration,
        title_length(&s.packaged, "t1"),
    ));
    let running = spawn_players(&lab, args.duration, None)?;
    let reports = collect_players(running, &stop)?;
    for (isp, report) in &reports {
        match report {
            None => say(format!("  ISP {isp}: stopped before the viewers finished")),
            Some(r) => describe(isp, r),
        }
    }
    say(inside_isp_line(&reports));
    let listed = e2e::http(s.addr, "GET", "/v1/appliances", &[], b"").map(|r| r.json());
    for line in measured_lines(listed.as_ref()) {
        say(line);
    }
    served(s);
    say(format!(
        "done in {:.0} s; stopping every process",
        started.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// What the viewing phase will do, in a line. The title is short, so a viewer
/// plays it several times: the plays counted later outnumber the viewers.
pub fn viewers_line(viewers: u32, duration: Duration, title: Option<Duration>) -> String {
    let watch = duration.as_secs_f64();
    let again = match title {
        Some(t) if !t.is_zero() => {
            let each = (watch / t.as_secs_f64()).ceil().max(1.0);
            format!(
                "t1 is {:.0} s long and a viewer presses play again when it ends, \
                 so each plays it about {each:.0} times",
                t.as_secs_f64()
            )
        }
        _ => "a viewer presses play again when the title ends".to_owned(),
    };
    format!("viewers: {viewers} in each ISP, watching t1 for {watch:.0} s; {again} ...")
}

/// A packaged title's length: the sum of its first variant's segment durations.
pub fn title_length(packaged: &Path, title: &str) -> Option<Duration> {
    let dir = packaged.join("titles").join(title);
    let master = std::fs::read_to_string(dir.join("master.m3u8")).ok()?;
    let variant = master
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    let media = std::fs::read_to_string(dir.join(variant)).ok()?;
    let seconds: f64 = media
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.split(',').next()?.trim().parse::<f64>().ok())
        .sum();
    Duration::try_from_secs_f64(seconds).ok()
}

/// The web player (hls.js) when its npm packages are installed.
fn player_dir() -> Option<tempfile::TempDir> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser");
    let hls = src.join("node_modules/hls.js/dist/hls.min.js");
    if !hls.exists() {
        say("(web player unavailable: run `npm ci` in tests/browser for hls.js)");
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    std::fs::copy(src.join("player.html"), dir.path().join("player.html")).ok()?;
    std::fs::copy(src.join("home.html"), dir.path().join("home.html")).ok()?;
    std::fs::copy(hls, dir.path().join("hls.min.js")).ok()?;
    Some(dir)
}

/// The off-peak fill of the embedded appliances, on a clock set to 03:00;
/// returns their agents, still running.
fn fill(
    s: &Stack,
    args: &LabArgs,
    embedded: &[&'static str],
    stop: &AtomicBool,
) -> anyhow::Result<BTreeMap<&'static str, Proc>> {
    say(format!(
        "off-peak fill: fill-agents on a clock starting at 03:00 UTC (window 02:00-06:00), {} Mbit/s each",
        args.fill_rate_bps / 1_000_000
    ));
    let started = Instant::now();
    let agents: BTreeMap<&'static str, Proc> = embedded
        .iter()
        .map(|id| (*id, start_agent(s, id, args.fill_rate_bps)))
        .collect();
    for id in embedded {
        let status = until(stop, &format!("{id}'s fill"), || {
            let text = std::fs::read(s.root(id).join("fill-status.json")).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&text).ok()?;
            (v["state"] == "complete" && v["bytes_done"].as_u64()? > 0).then_some(v)
        })?;
        // The agent counts an object's bytes before it marks the fill
        // complete, so its counters are final once the status says so.
        let metrics = agents[id].addr("metrics=");
        let by = e2e::http(metrics, "GET", "/metrics", &[], b"")
            .filter(|r| r.status == 200)
            .map(|r| fill::parse(&String::from_utf8_lossy(&r.body)));
        let received = by.as_ref().map_or("?".to_owned(), |b| mb(fill::total(b)));
        say(format!(
            "  {id}: {} objects, {} filled in {:.1} s; its fill-agent received {received}:",
            status["objects_done"],
            mb(status["bytes_done"].as_u64().unwrap_or(0)),
            started.elapsed().as_secs_f64()
        ));
        match by {
            Some(by) => {
                for line in fill::lines(id, &by, mb) {
                    say(format!("    {line}"));
                }
            }
            None => say(format!("    {id}: its fill-agent's metrics did not answer")),
        }
    }
    // t1's renditions, whatever ladder the packager picked for it.
    let t1 = stack::rendition_count(&s.packaged, "t1");
    for id in embedded {
        until(stop, &format!("{id}'s inventory at steering"), || {
            (s.appliance(id)?["renditions_complete"].as_u64()? >= t1).then_some(())
        })?;
    }
    say("  inventory reported to steering");
    // Steering answers from a fleet snapshot rebuilt every few hundred
    // milliseconds: ask it, as a client inside each ISP would, until the
    // answer is that ISP's own appliance (the probe play is ended at once).
    let token = s.token("alice");
    for (id, client) in [("oca-a1", "127.1.0.9"), ("oca-b1", "127.2.0.9")] {
        let ip: std::net::IpAddr = client.parse()?;
        let (primary, reason) = until(stop, &format!("steering to choose {id}"), || {
            let r = s.play(ip, &token, "t1", "browser", "main");
            let v = r.json();
            if let Some(play) = v["play_id"].as_str() {
                let auth = format!("Bearer {token}");
                let path = format!("/v1/plays/{play}");
                let _ = e2e::http(s.addr, "DELETE", &path, &[("Authorization", &auth)], b"");
            }
            let first = &v["appliances"][0];
            let primary = first["id"].as_str()?.to_owned();
            (primary == id).then(|| (primary, first["reason"].as_str().unwrap_or("").to_owned()))
        })?;
        say(format!(
            "  steering sends a client at {client} to {primary} ({reason})"
        ));
    }
    Ok(agents)
}

/// Appliance `id`'s fill agent, on the night clock, capped at `rate_bps`.
pub fn start_agent(s: &Stack, id: &str, rate_bps: u64) -> Proc {
    s.fill_agent(id, NIGHT, &format!("rate_bps = {rate_bps}"))
}

/// Poll `f` until it answers, the lab is stopped, or a minute passes.
pub fn until<T>(
    stop: &AtomicBool,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        anyhow::ensure!(
            !stop.load(Ordering::Relaxed),
            "stopped while waiting for {what}"
        );
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One account per viewer (each plan allows a few streams at most).
fn viewers(s: &Stack, args: &LabArgs) -> anyhow::Result<BTreeMap<&'static str, Vec<String>>> {
    let mut out = BTreeMap::new();
    for (isp, _, _) in ISPS {
        let mut tokens = Vec::new();
        for i in 0..args.viewers {
            let user = format!("lab-{}-{i}", isp.to_lowercase());
            let ok = Command::new(e2e::binary("steering"))
                .args([
                    "users",
                    "add",
                    &user,
                    "--plan",
                    "standard",
                    "--country",
                    "NL",
                ])
                .args(["--region", "eu-west", "--config"])
                .arg(&s.config)
                .stdout(Stdio::null())
                .status()?
                .success();
            anyhow::ensure!(ok, "cannot create viewer account {user}");
            tokens.push(s.token(&user));
        }
        out.insert(isp, tokens);
    }
    Ok(out)
}

/// Viewers in both ISPs at once, each ISP's through an `oca-bench players`
/// process watching t1 for `duration`; `verify`: check every segment against
/// the packaged files under it.
pub fn spawn_players(
    lab: &Lab,
    duration: Duration,
    verify: Option<&Path>,
) -> anyhow::Result<Vec<(&'static str, Child)>> {
    let exe = sibling("oca-bench")?;
    let mut running = Vec::new();
    for (isp, prefix, _) in ISPS {
        let mut cmd = Command::new(&exe);
        cmd.args(["players", "--steering", &lab.steering.join(",")])
            .args(["--title", "t1", "--device", "browser", "--profile", "main"])
            .args(["--viewers", &lab.users[isp].len().to_string()])
            .args(["--duration", &format!("{}s", duration.as_secs().max(1))])
            .arg("--json");
        if let Some(dir) = verify {
            cmd.arg("--verify").arg(dir);
        }
        for (i, t) in lab.users[isp].iter().enumerate() {
            cmd.args(["--token", t])
                .args(["--source-ip", &format!("{prefix}.0.{}", 10 + i)]);
        }
        cmd.arg("-q");
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        running.push((isp, child));
    }
    Ok(running)
}

/// Wait for the players and read their reports; `None` for an ISP whose
/// players were stopped early (they report only at the end).
pub fn collect_players(
    running: Vec<(&'static str, Child)>,
    stop: &AtomicBool,
) -> anyhow::Result<Vec<(&'static str, Option<serde_json::Value>)>> {
    let mut out = Vec::new();
    for (isp, mut child) in running {
        while child.try_wait()?.is_none() {
            if stop.load(Ordering::Relaxed) {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let output = child.wait_with_output()?;
        if stop.load(Ordering::Relaxed) {
            out.push((isp, None));
            continue;
        }
        let report: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        out.push((isp, Some(report)));
    }
    Ok(out)
}

/// How much of the viewers' bytes came from their own ISP's appliance: the
/// figure the whole design is about.
pub fn inside_isp_line(reports: &[(&str, Option<serde_json::Value>)]) -> String {
    let (mut inside, mut total) = (0u64, 0u64);
    for (isp, report) in reports {
        let Some(r) = report else { continue };
        let own = ISPS.iter().find(|i| i.0 == *isp).map(|i| i.2);
        if let Some(by) = r["bytes_by_pathway"].as_object() {
            for (pathway, bytes) in by {
                let bytes = bytes.as_u64().unwrap_or(0);
                total += bytes;
                if Some(pathway.as_str()) == own {
                    inside += bytes;
                }
            }
        }
    }
    if total == 0 {
        return "viewers' bytes from inside their own ISP: none measured".to_owned();
    }
    format!(
        "viewers' bytes from inside their own ISP: {:.1}% ({} of {}; the rest from the IXP or the origin)",
        inside as f64 * 100.0 / total as f64,
        mb(inside),
        mb(total)
    )
}

/// One ISP's viewers, in a line or two.
pub fn describe(isp: &str, r: &serde_json::Value) {
    if r.is_null() {
        say(format!("  ISP {isp}: the players reported nothing"));
        return;
    }
    say(format!("  ISP {isp}: {}", summary(r)));
}

/// The report's key figures.
pub fn summary(r: &serde_json::Value) -> String {
    let ms = |v: &serde_json::Value| {
        v.as_u64()
            .map_or("?".into(), |us| format!("{} ms", us / 1000))
    };
    let list = |key: &str, show: &dyn Fn(&serde_json::Value) -> String| -> Vec<String> {
        r[key]
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} {}", show(v))).collect())
            .unwrap_or_default()
    };
    let by = list("bytes_by_pathway", &|v| mb(v.as_u64().unwrap_or(0)));
    let count = |v: &serde_json::Value| format!("×{}", v.as_u64().unwrap_or(0));
    let primary = list("plays_by_primary", &count);
    let why = list("plays_by_reason", &count);
    format!(
        "{} plays by {} ({} to the end, {} cut by the end of the run, {} refused); \
         startup p50 {} p99 {}; rebuffer ratio {:.3} ({} stalls); \
         failovers {}; licences {}/{}; average bitrate {:.2} Mbit/s; steered to {} because {}; served by {}",
        r["plays"]["started"],
        match r["viewers"].as_u64() {
            Some(1) => "1 viewer".to_owned(),
            n => format!("{} viewers", n.unwrap_or(0)),
        },
        r["plays"]["completed"],
        r["plays"]["cut"],
        r["plays"]["failed"],
        ms(&r["startup_us"]["p50"]),
        ms(&r["startup_us"]["p99"]),
        r["rebuffer_ratio"].as_f64().unwrap_or(0.0),
        r["rebuffers"],
        r["failovers"],
        r["licences"]["ok"].as_u64().unwrap_or(0),
        r["licences"]["ok"].as_u64().unwrap_or(0) + r["licences"]["failed"].as_u64().unwrap_or(0),
        r["avg_bitrate_bps"].as_f64().unwrap_or(0.0) / 1e6,
        primary.join(", "),
        why.join(", "),
        if by.is_empty() {
            "nothing".to_owned()
        } else {
            by.join(", ")
        },
    )
}

/// Bytes served per appliance and per tier, from the appliances' own metrics.
/// What the viewers' heartbeats taught steering, per ISP: each appliance's
/// measured throughput and time to first byte from the ISP's network (from
/// `GET /v1/appliances`).
pub fn measured_lines(appliances: Option<&serde_json::Value>) -> Vec<String> {
    let mut out = vec!["measured by the players' heartbeats (network: appliance throughput, first byte, confidence):".to_owned()];
    let list = appliances
        .and_then(|v| v.as_array())
        .map_or(&[][..], Vec::as_slice);
    for (isp, range, _) in ISPS {
        let network = format!("{range}.0.0/16");
        let mut paths: Vec<String> = list
            .iter()
            .filter_map(|a| {
                let m = a["measured"]
                    .as_array()?
                    .iter()
                    .find(|m| m["network"] == network.as_str())?;
                Some(format!(
                    "{} {:.0} Mbit/s, {:.1} ms, {:.2}",
                    a["id"].as_str()?,
                    m["throughput_mbps"].as_f64()?,
                    m["ttfb_ms"].as_f64()?,
                    m["confidence"].as_f64()?
                ))
            })
            .collect();
        if paths.is_empty() {
            paths.push("nothing measured yet".into());
        }
        out.push(format!("  ISP {isp} ({network}): {}", paths.join("; ")));
    }
    out
}

fn served(s: &Stack) {
    let mut tiers: BTreeMap<&str, u64> = BTreeMap::new();
    for id in s.appliances.keys() {
        let bytes = s.sent_bytes(id).unwrap_or(0);
        let tier = if *id == "oca-x1" { "ixp" } else { "embedded" };
        *tiers.entry(tier).or_default() += bytes;
        say(format!("  {id} sent {}", mb(bytes)));
    }
    say(format!(
        "bytes sent per tier (fills included): embedded {}, ixp {}",
        mb(tiers.get("embedded").copied().unwrap_or(0)),
        mb(tiers.get("ixp").copied().unwrap_or(0))
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_paths_are_listed_per_isp() {
        let listed = serde_json::json!([
            {"id": "oca-a1", "measured": [
                {"network": "127.1.0.0/16", "throughput_mbps": 812.4, "ttfb_ms": 1.26, "confidence": 1.0}]},
            {"id": "oca-x1", "measured": [
                {"network": "127.1.0.0/16", "throughput_mbps": 95.0, "ttfb_ms": 3.0, "confidence": 0.25},
                {"network": "10.9.9.0/24", "throughput_mbps": 1.0, "ttfb_ms": 3.0, "confidence": 1.0}]},
            {"id": "oca-b1"}
        ]);
        let lines = measured_lines(Some(&listed));
        assert_eq!(
            lines[1],
            "  ISP A (127.1.0.0/16): oca-a1 812 Mbit/s, 1.3 ms, 1.00; oca-x1 95 Mbit/s, 3.0 ms, 0.25"
        );
        assert_eq!(lines[2], "  ISP B (127.2.0.0/16): nothing measured yet");
        assert_eq!(
            measured_lines(None).len(),
            3,
            "steering unreachable: nothing measured"
        );
    }

    #[test]
    fn the_viewers_line_says_why_plays_outnumber_viewers() {
        let line = viewers_line(2, Duration::from_secs(60), Some(Duration::from_secs(12)));
        assert_eq!(
            line,
            "viewers: 2 in each ISP, watching t1 for 60 s; t1 is 12 s long and a viewer presses \
             play again when it ends, so each plays it about 5 times ..."
        );
        let unknown = viewers_line(1, Duration::from_secs(8), None);
        assert!(unknown.contains("presses play again"), "{unknown}");
    }

    #[test]
    fn the_inside_isp_share_counts_each_isps_own_appliance() {
        let a = serde_json::json!({"bytes_by_pathway": {"oca-a1": 300, "oca-x1": 100}});
        let b =
            serde_json::json!({"bytes_by_pathway": {"oca-b1": 500, "origin": 100, "oca-a1": 0}});
        let line = inside_isp_line(&[("A", Some(a)), ("B", Some(b)), ("C", None)]);
        assert!(
            line.starts_with("viewers' bytes from inside their own ISP: 80.0% ("),
            "{line}"
        );
        assert!(inside_isp_line(&[("A", None)]).ends_with("none measured"));
    }

    #[test]
    fn title_length_sums_the_first_variant() {
        let dir = tempfile::tempdir().unwrap();
        let t1 = dir.path().join("titles/t1/v360");
        std::fs::create_dir_all(&t1).unwrap();
        std::fs::write(
            dir.path().join("titles/t1/master.m3u8"),
            "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nv360/index.m3u8\n",
        )
        .unwrap();
        std::fs::write(
            t1.join("index.m3u8"),
            "#EXTM3U\n#EXTINF:4.000000,\na.m4s\n#EXTINF:4.5,\nb.m4s\n#EXT-X-ENDLIST\n",
        )
        .unwrap();
        assert_eq!(
            title_length(dir.path(), "t1"),
            Some(Duration::from_secs_f64(8.5))
        );
        assert_eq!(title_length(dir.path(), "t9"), None);
    }
}
