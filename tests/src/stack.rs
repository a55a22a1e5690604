//! The whole control path on loopback, as builders: packaged content made with
//! ffmpeg (once per build directory), steering with accounts, and real oca
//! appliances in several ISPs (127.1/16 = ISP A, 127.2/16 = ISP B, 127.3/16 = a
//! network in the region with no embedded appliance).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Proc, binary, get_url, http, wait_for};

/// Packaged titles, made by scripts/make-content.sh (the packager, oca-pack,
/// with its fast preset): `t1` (12 s, eu-west and us-east), `t2` (the same
/// content, released in the far future), `t3` (us-east only), `long` (40 s,
/// us-east only, for players that must still be fetching when something
/// breaks). Made once per target dir. The ladder is what per-title selection
/// picked for the content: read it with `ladder`, never assume rung names.
pub fn content() -> PathBuf {
    // Cargo's target directory (it holds CACHEDIR.TAG), from a test in
    // target/<profile>/deps or a binary in target/<profile>.
    let exe = std::env::current_exe().expect("executable path");
    // Without a CACHEDIR.TAG (older cargo): two levels up from a binary,
    // three from a test in deps/.
    let up = if exe.parent().is_some_and(|d| d.ends_with("deps")) {
        3
    } else {
        2
    };
    let target = exe
        .ancestors()
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .unwrap_or_else(|| exe.ancestors().nth(up).expect("target directory"))
        .to_path_buf();
    // v6: posters (v5 had none; v5 encrypted, v4 clear, v3 a fixed ffmpeg ladder).
    let dir = target.join("tmp/e2e-content-v6");
    if dir.join("done").exists() {
        return dir;
    }
    // One generator at a time: parallel tests on a fresh checkout would
    // otherwise each run ffmpeg for the same content and starve one another.
    // (scripts/test.sh makes it once, with `e2e-content`, before the suite.)
    std::fs::create_dir_all(target.join("tmp")).expect("create target/tmp");
    let lock = std::fs::File::create(target.join("tmp/e2e-content.lock")).expect("content lock");
    lock.lock().expect("lock content");
    if dir.join("done").exists() {
        return dir;
    }
    let tmp = target.join(format!("tmp/e2e-content-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    for (id, secs) in [("t1", "12"), ("long", "40")] {
        make_content(&tmp, id, secs);
    }
    std::fs::write(
        tmp.join("titles/long/title.toml"),
        "name = \"Long test pattern\"\nregions = [\"us-east\"]\n",
    )
    .unwrap();
    for (id, sidecar) in [
        (
            "t2",
            "name = \"Coming soon\"\nregions = [\"*\"]\nrelease = 4102444800\n",
        ),
        ("t3", "name = \"US only\"\nregions = [\"us-east\"]\n"),
    ] {
        copy_title(&tmp, "t1", id);
        std::fs::write(tmp.join("titles").join(id).join("title.toml"), sidecar).unwrap();
    }
    // What the tests need of any ladder: a rung a 540p plan may play, one
    // it may not, and more than one rung to switch between.
    let t1 = ladder(&tmp, "t1");
    assert!(
        t1.len() >= 2 && t1.iter().any(|r| r.height <= 540) && t1.iter().any(|r| r.height > 540),
        "the packager picked a ladder the tests cannot use: {t1:?}"
    );
    std::fs::write(tmp.join("done"), b"").unwrap();
    // A crashed generator may have left a partial copy behind (no `done`).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&tmp, &dir).expect("move content into place");
    dir
}

/// Copy title `from` of `packaged` to `to`, with its content key if it has
/// one (the same key: a copy of the same encrypted bytes).
pub fn copy_title(packaged: &Path, from: &str, to: &str) {
    copy_tree(
        &packaged.join("titles").join(from),
        &packaged.join("titles").join(to),
    );
    let key = packaged.join("keys").join(format!("{from}.json"));
    if key.exists() {
        let mut k: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
        k["title"] = to.into();
        let out = packaged.join("keys").join(format!("{to}.json"));
        std::fs::write(&out, k.to_string()).unwrap();
        std::fs::set_permissions(&out, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
    }
}

/// scripts/make-content.sh OUT ID SECONDS, with the oca-pack built beside
/// this executable when there is one (the same build as the test's).
pub fn make_content(out: &Path, id: &str, secs: &str) {
    make_content_with(out, id, secs, &[]);
}

/// `make_content` with the script's options first (`--encrypt`).
pub fn make_content_with(out: &Path, id: &str, secs: &str, options: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-content.sh");
    let mut cmd = Command::new(&script);
    cmd.args(options).arg(out).args([id, secs]);
    if let Some(pack) = sibling_binary("oca-pack") {
        cmd.env("OCA_PACK", pack);
    }
    let ok = cmd.status().expect("run make-content.sh").success();
    assert!(ok, "make-content.sh {id} {secs} failed");
}

/// `binary(name)` when it is built, else `None`.
fn sibling_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let here = exe.parent()?;
    [Some(here), here.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(name))
        .find(|p| p.exists())
}

/// One HLS rung of a packaged title, as its multivariant playlist lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rung {
    /// Its directory under `titles/<id>/` (`v360`, `v720-953k`).
    pub dir: String,
    pub width: u32,
    pub height: u32,
    /// `BANDWIDTH`: the peak segment bitrate, bits/s.
    pub bandwidth: u64,
}

/// The HLS rungs of `title` under `packaged`, cheapest first.
pub fn ladder(packaged: &Path, title: &str) -> Vec<Rung> {
    let path = packaged.join("titles").join(title).join("master.m3u8");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rungs = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") else {
            continue;
        };
        let attr = |name: &str| {
            attrs
                .split(',')
                .find_map(|a| a.strip_prefix(name)?.strip_prefix('='))
        };
        let (w, h) = attr("RESOLUTION")
            .and_then(|r| r.split_once('x'))
            .expect("RESOLUTION");
        let uri = lines
            .find(|l| !l.is_empty())
            .expect("a URI after STREAM-INF");
        rungs.push(Rung {
            dir: uri.split('/').next().expect("a directory").to_owned(),
            width: w.parse().expect("width"),
            height: h.parse().expect("height"),
            bandwidth: attr("BANDWIDTH")
                .and_then(|b| b.parse().ok())
                .expect("BANDWIDTH"),
        });
    }
    rungs.sort_by_key(|r| r.bandwidth);
    rungs
}

/// The DASH Representations' directories of `title` (`dash/r0`, ...): the
/// video rungs in ladder order, then the audio.
pub fn dash_dirs(packaged: &Path, title: &str) -> Vec<String> {
    let dash = packaged.join("titles").join(title).join("dash");
    let mut ids: Vec<u32> = std::fs::read_dir(&dash)
        .unwrap_or_else(|e| panic!("{}: {e}", dash.display()))
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_prefix('r')?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids.into_iter().map(|i| format!("dash/r{i}")).collect()
}

/// Renditions steering's import counts for `title`: one per HLS rung and one
/// per DASH Representation.
pub fn rendition_count(packaged: &Path, title: &str) -> u64 {
    (ladder(packaged, title).len() + dash_dirs(packaged, title).len()) as u64
}

/// Copy a directory tree.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), &t).unwrap();
        }
    }
}

/// One appliance of the stack.
#[derive(Clone)]
pub struct ApplianceSpec {
    pub id: &'static str,
    pub region: &'static str,
    pub tier: &'static str,
    pub site: &'static str,
    pub serves: &'static [&'static str],
    pub capacity_mbps: u64,
    /// What its disk starts with.
    pub holds: Holds,
    /// Put its disk on a tmpfs of this many bytes (a small, fillable disk).
    pub disk_bytes: Option<u64>,
    /// More oca config (tables after `[control]`, e.g. `[bgp]`).
    pub oca_extra: &'static str,
    /// More top-level oca settings (before `[control]`).
    pub oca_settings: &'static str,
}

impl Default for ApplianceSpec {
    fn default() -> Self {
        ApplianceSpec {
            id: "oca",
            region: "eu-west",
            tier: "ixp",
            site: "site",
            serves: &[],
            capacity_mbps: 10_000,
            holds: Holds::All,
            disk_bytes: None,
            oca_extra: "",
            oca_settings: "",
        }
    }
}

/// What an appliance's disk starts with, from the packaged content.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Holds {
    /// t1 and long, whole.
    All,
    /// t1's HLS rungs, no DASH.
    Hls,
    /// Nothing: it is filled.
    Nothing,
}

impl ApplianceSpec {
    /// Renditions it holds whole once started.
    pub fn complete(&self, packaged: &Path) -> u64 {
        match self.holds {
            Holds::All => rendition_count(packaged, "t1") + rendition_count(packaged, "long"),
            Holds::Hls => ladder(packaged, "t1").len() as u64,
            Holds::Nothing => 0,
        }
    }
}

/// The fleet most tests use: two embedded appliances in ISP A (two sites), one
/// in ISP B, one IXP appliance for the region.
pub fn fleet() -> Vec<ApplianceSpec> {
    vec![
        ApplianceSpec {
            id: "oca-a1",
            tier: "embedded",
            site: "isp-a-ams",
            serves: &["127.1.0.0/16"],
            capacity_mbps: 10_000,
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-a2",
            tier: "embedded",
            site: "isp-a-rtm",
            serves: &["127.1.0.0/16"],
            capacity_mbps: 10_000,
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-b1",
            tier: "embedded",
            site: "isp-b-1",
            serves: &["127.2.0.0/16"],
            capacity_mbps: 10_000,
            ..ApplianceSpec::default()
        },
        ixp(),
    ]
}

/// The fleet's IXP appliance, oca-x1 (serving no ISP's prefixes): the next
/// best for any ISP's clients.
pub fn ixp() -> ApplianceSpec {
    ApplianceSpec {
        id: "oca-x1",
        tier: "ixp",
        site: "ixp-ams",
        capacity_mbps: 40_000,
        ..ApplianceSpec::default()
    }
}

/// How often steering polls each appliance's health in the stack.
pub const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

pub struct Stack {
    pub dir: tempfile::TempDir,
    pub steering: Proc,
    pub addr: SocketAddr,
    pub config: PathBuf,
    pub appliances: BTreeMap<&'static str, (Proc, SocketAddr)>,
    /// The packaged tree steering imported (and an origin may serve).
    pub packaged: PathBuf,
    /// tmpfs disks, unmounted on drop.
    mounts: Vec<PathBuf>,
    /// Other steering instances, after the stack's own in the `control.url`
    /// of fill agents started from now on.
    pub more_instances: Vec<SocketAddr>,
    /// The daemons' log filter (`warn` unless started by `start_logging`).
    log_level: &'static str,
}

impl Drop for Stack {
    fn drop(&mut self) {
        for (p, _) in self.appliances.values_mut() {
            p.kill9();
        }
        for m in &self.mounts {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

/// The `[instance]` section of a stack's first steering instance when it
/// runs on a shared store: `steer-a` in eu-west, following the others' changes
/// every 100 ms.
pub const INSTANCE_A: &str =
    "[instance]\nid = \"steer-a\"\nregion = \"eu-west\"\nsync_interval = \"100ms\"\n";

impl Stack {
    /// Another steering instance beside the stack's own (started with
    /// `INSTANCE_A` on a shared store): the same config, as instance `id` in
    /// `region`.
    pub fn start_instance(&self, id: &str, region: &str) -> Proc {
        let config = self.dir.path().join(format!("steering-{id}.toml"));
        let text = std::fs::read_to_string(&self.config).unwrap().replace(
            "id = \"steer-a\"\nregion = \"eu-west\"",
            &format!("id = \"{id}\"\nregion = \"{region}\""),
        );
        assert!(
            text.contains(id),
            "the stack was not started with INSTANCE_A"
        );
        std::fs::write(&config, text).unwrap();
        Proc::start(
            "steering",
            &["--config", config.to_str().unwrap()],
            &[("STEERING_LOG", "warn")],
        )
    }
}

fn credential(id: &str) -> String {
    format!("{id}-credential-0123456789")
}

/// An IXP appliance holding `ixp_holds` and an empty embedded appliance in
/// ISP A (127.1.0.0/16): a fleet to fill.
pub fn fill_fleet(ixp_holds: Holds) -> Vec<ApplianceSpec> {
    vec![
        ApplianceSpec {
            id: "oca-x1",
            tier: "ixp",
            site: "ixp-ams",
            serves: &[],
            capacity_mbps: 40_000,
            holds: ixp_holds,
            ..ApplianceSpec::default()
        },
        ApplianceSpec {
            id: "oca-e1",
            tier: "embedded",
            site: "isp-a-ams",
            serves: &["127.1.0.0/16"],
            capacity_mbps: 10_000,
            holds: Holds::Nothing,
            ..ApplianceSpec::default()
        },
    ]
}

/// Steering's config lines for `origin` as the origin, with the default
/// 02:00-06:00 fill window.
pub fn origin_config(origin: &Nginx) -> String {
    format!(
        "origin_url = \"http://{}\"\n[fill]\nwindow = \"02:00-06:00\"\n",
        origin.addr
    )
}

/// `start_with` plus nginx over `packaged` as the origin (see `origin_config`).
pub fn start_with_origin(fleet: &[ApplianceSpec], packaged: &Path) -> (Stack, Nginx) {
    let origin = nginx(packaged);
    (start_with(fleet, &origin_config(&origin), packaged), origin)
}

/// Start steering (catalog imported, accounts created) and `fleet`, and wait
/// until every appliance is registered, up and holding the whole title.
/// `extra` is appended to steering's config.
pub fn start(fleet: &[ApplianceSpec], extra: &str) -> Stack {
    start_with(fleet, extra, &content())
}

/// Like `start`, importing the titles of `packaged`.
pub fn start_with(fleet: &[ApplianceSpec], extra: &str, packaged: &Path) -> Stack {
    start_on(fleet, extra, packaged, None)
}

/// Like `start_with`, on the store `database` (a postgres:// URL, say)
/// instead of a SQLite file in the stack's directory.
pub fn start_on(
    fleet: &[ApplianceSpec],
    extra: &str,
    packaged: &Path,
    database: Option<&str>,
) -> Stack {
    launch(fleet, extra, packaged, database, "warn")
}

/// Like `start_with`, every daemon (steering, appliances, fill agents)
/// logging at `level` (`debug`, say) for tests that read their logs.
pub fn start_logging(
    fleet: &[ApplianceSpec],
    extra: &str,
    packaged: &Path,
    level: &'static str,
) -> Stack {
    launch(fleet, extra, packaged, None, level)
}

fn launch(
    fleet: &[ApplianceSpec],
    extra: &str,
    packaged: &Path,
    database: Option<&str>,
    log_level: &'static str,
) -> Stack {
    let packaged = packaged.to_path_buf();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let sqlite = d.join("steering.db").display().to_string();
    let database = database.unwrap_or(&sqlite);
    let mut cfg = format!(
        r#"
listen = "127.0.0.1:0"
database = "{db}"
heartbeat_interval = "200ms"
[health]
interval = "{health_ms}ms"
timeout = "1s"
down_after = 3
up_after = 2
[play]
stream_timeout = "60s"
steering_ttl = "1s"
[steer]
snapshot_refresh = "100ms"
[[plan]]
name = "basic"
max_height = 540
max_streams = 1
[[plan]]
name = "standard"
max_height = 1080
max_streams = 2
[[device]]
name = "browser"
codecs = ["avc1", "mp4a"]
max_height = 1080
[[device]]
name = "audio-box"
codecs = ["mp4a"]
max_height = 1080
[[network]]
prefix = "127.1.0.0/16"
asn = 64501
region = "eu-west"
[[network]]
prefix = "127.2.0.0/16"
asn = 64502
region = "eu-west"
[[network]]
prefix = "127.3.0.0/16"
asn = 64503
region = "eu-west"
"#,
        db = database,
        health_ms = HEALTH_INTERVAL.as_millis(),
    );
    for a in fleet {
        let serves: Vec<String> = a.serves.iter().map(|s| format!("{s:?}")).collect();
        cfg += &format!(
            r#"
[[appliance]]
id = "{id}"
credential = "{cred}"
tier = "{tier}"
site = "{site}"
region = "{region}"
admin_url = "http://127.0.0.1:1"
capacity_bps = {cap}
serves = [{serves}]
"#,
            id = a.id,
            region = a.region,
            cred = credential(a.id),
            tier = a.tier,
            site = a.site,
            cap = a.capacity_mbps * 1_000_000,
            serves = serves.join(", "),
        );
    }
    let config = d.join("steering.toml");
    // The test content is encrypted: a key-encryption key for its keys,
    // unless `extra` brings its own [drm].
    let drm = if extra.contains("[drm]") {
        String::new()
    } else {
        let kek = d.join("kek");
        std::fs::write(&kek, format!("{}\n", "6b".repeat(32))).unwrap();
        std::fs::set_permissions(&kek, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        format!("[drm]\nkey_file = \"{}\"\n", kek.display())
    };
    // Lines of `extra` starting `health.` or `steer.` go into the [health]
    // or [steer] table the stack writes (e.g. `health.admin_token_file = "…"`).
    let (tabled, extra): (Vec<&str>, Vec<&str>) = extra
        .lines()
        .partition(|l| l.starts_with("health.") || l.starts_with("steer."));
    let extra = extra.join("\n");
    for line in tabled {
        let (table, key) = line.split_once('.').unwrap();
        cfg = cfg.replace(&format!("[{table}]\n"), &format!("[{table}]\n{key}\n"));
    }
    // `extra` may add sections, so it goes before the array tables.
    let (head, tail) = cfg.split_at(cfg.find("[health]").unwrap());
    std::fs::write(&config, format!("{head}{extra}\n{drm}{tail}")).unwrap();
    let steering_cmd = |args: &[&str]| {
        let out = Command::new(binary("steering"))
            .args(args)
            .args(["--config", config.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "steering {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    steering_cmd(&["catalog", "import", packaged.to_str().unwrap()]);
    for args in [
        &[
            "users",
            "add",
            "alice",
            "--plan",
            "standard",
            "--country",
            "NL",
            "--region",
            "eu-west",
            "--profile",
            "main",
            "--profile",
            "kids:Kids",
        ][..],
        &[
            "users",
            "add",
            "bob",
            "--plan",
            "basic",
            "--country",
            "NL",
            "--region",
            "eu-west",
        ],
        &[
            "users",
            "add",
            "carol",
            "--plan",
            "standard",
            "--country",
            "NL",
            "--region",
            "eu-west",
            "--subscription",
            "suspended",
        ],
        &[
            "users",
            "add",
            "erin",
            "--plan",
            "standard",
            "--country",
            "US",
            "--region",
            "us-east",
        ],
    ] {
        steering_cmd(args);
    }
    let steering = Proc::start(
        "steering",
        &["--config", config.to_str().unwrap()],
        &[("STEERING_LOG", log_level)],
    );
    let addr = steering.addr("http=");
    let mut appliances = BTreeMap::new();
    let mut mounts = Vec::new();
    for a in fleet {
        let root = d.join(a.id);
        if let Some(bytes) = a.disk_bytes {
            let disk = root.join("disk0");
            std::fs::create_dir_all(&disk).unwrap();
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={bytes}")])
                .arg("tmpfs")
                .arg(&disk)
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                ok,
                "mounting a tmpfs needs root (the test machines run as root)"
            );
            mounts.push(disk);
        }
        let t1 = content().join("titles/t1");
        let disk_t1 = root.join("disk0/objects/titles/t1");
        std::fs::create_dir_all(&disk_t1).unwrap();
        match a.holds {
            Holds::All => {
                copy_tree(&t1, &disk_t1);
                let long = content().join("titles/long");
                copy_tree(&long, &root.join("disk0/objects/titles/long"));
            }
            Holds::Hls => {
                for r in ladder(&content(), "t1") {
                    copy_tree(&t1.join(&r.dir), &disk_t1.join(&r.dir));
                }
            }
            Holds::Nothing => {}
        }
        let ocfg = root.join("oca.toml");
        std::fs::write(
            &ocfg,
            format!(
                r#"
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["{store}"]
workers = 1
max_connections = 1000
capacity_mbps = {cap}
fill_status = "{status}"
{settings}
[control]
url = "http://{addr}"
appliance_id = "{id}"
credential = "{cred}"
cache_dir = "{cache}"
tier = "{tier}"
site = "{site}"
region = "{region}"
{declared}
{extra}
"#,
                store = root.join("disk0").display(),
                cap = a.capacity_mbps,
                status = root.join("fill-status.json").display(),
                id = a.id,
                cred = credential(a.id),
                cache = root.join("control-cache").display(),
                tier = a.tier,
                site = a.site,
                region = a.region,
                extra = a.oca_extra,
                settings = a.oca_settings,
                // A tmpfs disk declares a big one, as an operator might by
                // mistake: the fill agent must still stop at the real size.
                declared = a
                    .disk_bytes
                    .map_or(String::new(), |_| "storage_bytes = 1000000000000".into()),
            ),
        )
        .unwrap();
        let p = Proc::start(
            "oca",
            &["--config", ocfg.to_str().unwrap()],
            &[("OCA_LOG", log_level)],
        );
        let http_addr = p.addr("http=");
        appliances.insert(a.id, (p, http_addr));
    }
    let stack = Stack {
        dir,
        steering,
        addr,
        config,
        appliances,
        packaged,
        mounts,
        more_instances: Vec::new(),
        log_level,
    };
    for a in fleet {
        wait_for(&format!("{} up with what it holds", a.id), || {
            let v = stack.appliance(a.id)?;
            (v["eligible"] == true && v["renditions_complete"].as_u64()? >= a.complete(&content()))
                .then_some(())
        });
    }
    stack
}

/// The appliance credential the stack configures for `id`.
pub fn credential_of(id: &str) -> String {
    credential(id)
}

impl Stack {
    /// An appliance's working directory (its disk is `disk0/` in it).
    pub fn root(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    /// A token for `prefix`, signed with the keys steering hands appliances.
    pub fn sign(&self, prefix: &str) -> String {
        let auth = format!("Bearer oca-x1:{}", credential("oca-x1"));
        let r = http(
            self.addr,
            "GET",
            "/v1/keys",
            &[("Authorization", &auth)],
            b"",
        )
        .unwrap();
        let set: control_client::wire::KeySetWire = serde_json::from_slice(&r.body).unwrap();
        let keys = set.to_keyset().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = urlsign::Claims {
            expires: now + 600,
            path_prefix: prefix,
            client: None,
        };
        urlsign::sign(keys.signing_key(now).unwrap(), &claims).unwrap()
    }

    /// kill -9 appliance `id` and start it again on the same config; returns
    /// its new object address.
    pub fn restart_appliance(&mut self, id: &str) -> SocketAddr {
        let cfg = self.root(id).join("oca.toml");
        let (proc, addr) = self
            .appliances
            .iter_mut()
            .find(|(k, _)| **k == id)
            .map(|(_, v)| v)
            .expect("no such appliance");
        proc.kill9();
        *proc = Proc::start(
            "oca",
            &["--config", cfg.to_str().unwrap()],
            &[("OCA_LOG", "error")],
        );
        *addr = proc.addr("http=");
        *addr
    }

    /// kill -9 appliance `id` and start it again on the addresses it had, as
    /// a service manager restarts a daemon with a fixed config: players'
    /// URLs and its fill agent's admin address stay right.
    pub fn restart_appliance_in_place(&mut self, id: &str) {
        let admin = self.admin(id).expect("appliance known to steering");
        let addr = self.appliances.get(id).expect("no such appliance").1;
        let cfg = self.root(id).join("oca.toml");
        let text = std::fs::read_to_string(&cfg)
            .unwrap()
            .replace(
                "listen = [\"127.0.0.1:0\"]",
                &format!("listen = [\"{addr}\"]"),
            )
            .replace(
                "admin_listen = \"127.0.0.1:0\"",
                &format!("admin_listen = \"{admin}\""),
            );
        std::fs::write(&cfg, text).unwrap();
        assert_eq!(self.restart_appliance(id), addr);
    }

    /// A viewer account on `plan` in `country` and `region` (`steering users
    /// add`); panics with steering's message if it is refused.
    pub fn add_user(&self, name: &str, plan: &str, country: &str, region: &str) {
        let out = self.steering_cmd(&[
            "users",
            "add",
            name,
            "--plan",
            plan,
            "--country",
            country,
            "--region",
            region,
        ]);
        assert!(
            out.status.success(),
            "users add {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `steering ARGS --config <the stack's>`, an offline command: its output.
    pub fn steering_cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary("steering"))
            .args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// kill -9 steering and start it again on the same database and address
    /// (appliances know it by address).
    pub fn restart_steering(&mut self) {
        self.steering.kill9();
        let listen = self.addr.to_string();
        self.steering = Proc::start(
            "steering",
            &[
                "--config",
                self.config.to_str().unwrap(),
                "--listen",
                &listen,
            ],
            &[("STEERING_LOG", "error")],
        );
        assert_eq!(self.steering.addr("http="), self.addr);
    }

    /// Start appliance `id`'s fill-agent on its disk, on a clock starting at
    /// unix time `clock`, with `extra` config lines (rate, quota, ...); its
    /// status goes where the appliance's oca shows it.
    pub fn fill_agent(&self, id: &str, clock: u64, extra: &str) -> Proc {
        let root = self.root(id);
        let cfg = root.join("fill-agent.toml");
        std::fs::write(
            &cfg,
            format!(
                r#"stores = ["{disk}"]
oca_admin = "http://{admin}"
status_file = "{status}"
metrics_listen = "127.0.0.1:0"
concurrency = 2
poll_interval = "1s"
source_backoff = "200ms"
min_throughput_bps = 8000
{headroom}
{extra}
[control]
url = [{steering}]
appliance_id = "{id}"
credential = "{cred}"
cache_dir = "{cache}"
"#,
                disk = root.join("disk0").display(),
                admin = self.admin(id).unwrap(),
                status = root.join("fill-status.json").display(),
                steering = std::iter::once(&self.addr)
                    .chain(&self.more_instances)
                    .map(|a| format!("\"http://{a}\""))
                    .collect::<Vec<_>>()
                    .join(", "),
                cred = credential(id),
                cache = root.join("fill-cache").display(),
                // The test machine's disk may be fuller than the default
                // headroom allows; tests about headroom set their own.
                headroom = if extra.contains("headroom_percent") {
                    ""
                } else {
                    "headroom_percent = 0"
                },
            ),
        )
        .unwrap();
        let clock = clock.to_string();
        Proc::start(
            "fill-agent",
            &["--config", cfg.to_str().unwrap(), "--clock-start", &clock],
            &[("FILL_AGENT_LOG", self.log_level)],
        )
    }

    /// An appliance's admin address.
    pub fn admin(&self, id: &str) -> Option<SocketAddr> {
        self.appliance(id)?["info"]["admin_url"]
            .as_str()?
            .strip_prefix("http://")?
            .parse()
            .ok()
    }

    /// `/v1/appliances` entry of `id`.
    pub fn appliance(&self, id: &str) -> Option<serde_json::Value> {
        let r = http(self.addr, "GET", "/v1/appliances", &[], b"")?;
        r.json().as_array()?.iter().find(|a| a["id"] == id).cloned()
    }

    /// A viewer token for `user`, issued by the admin CLI.
    pub fn token(&self, user: &str) -> String {
        let out = Command::new(binary("steering"))
            .args([
                "users",
                "token",
                user,
                "--config",
                self.config.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// `POST /v1/play` from `client`.
    pub fn play(
        &self,
        client: IpAddr,
        token: &str,
        title: &str,
        device: &str,
        profile: &str,
    ) -> crate::Response {
        play_at(self.addr, client, token, title, device, profile)
    }

    /// The packaged bytes of object `key`.
    pub fn object(&self, key: &str) -> Vec<u8> {
        std::fs::read(content().join(key)).unwrap()
    }

    /// Bytes an appliance has sent, from its own metrics.
    pub fn sent_bytes(&self, id: &str) -> Option<u64> {
        let r = http(self.admin(id)?, "GET", "/metrics", &[], b"")?;
        String::from_utf8_lossy(&r.body)
            .lines()
            .find_map(|l| l.strip_prefix("oca_http_sent_bytes_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
    }
}

/// `POST /v1/play` from `client` to the steering instance at `steering`.
pub fn play_at(
    steering: SocketAddr,
    client: IpAddr,
    token: &str,
    title: &str,
    device: &str,
    profile: &str,
) -> crate::Response {
    try_play_at(steering, client, token, title, device, profile).expect("steering answers")
}

/// Like `play_at`, `None` when nothing answers (a dead instance).
pub fn try_play_at(
    steering: SocketAddr,
    client: IpAddr,
    token: &str,
    title: &str,
    device: &str,
    profile: &str,
) -> Option<crate::Response> {
    let body = serde_json::json!({"title": title, "device": device, "profile": profile});
    let auth = format!("Bearer {token}");
    crate::http_from(
        Some(client),
        steering,
        "POST",
        "/v1/play",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    )
}

/// URIs in a playlist to fetch: lines that are not tags, plus `URI="..."`
/// attributes other than `data:` ones.
pub fn playlist_uris(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !line.starts_with('#') {
            out.push(line.to_owned());
        } else if let Some(i) = line.find("URI=\"") {
            let rest = &line[i + 5..];
            // A data: URI (an EXT-X-KEY's key ID) carries its content: nothing to fetch.
            if let Some(end) = rest.find('"')
                && !rest.starts_with("data:")
            {
                out.push(rest[..end].to_owned());
            }
        }
    }
    out
}

/// Resolve a playlist URI against the playlist's URL.
pub fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_owned();
    }
    let dir = &base[..base.rfind('/').map_or(base.len(), |i| i + 1)];
    format!("{dir}{uri}")
}

/// nginx from Debian serving `root` as an origin, with the `/t/<token>/`
/// prefix of signed URLs stripped (it checks no tokens). Killed on drop.
pub struct Nginx {
    child: std::process::Child,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn nginx(root: &Path) -> Nginx {
    if Command::new("nginx").arg("-v").output().is_err() {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "nginx-light"])
            .status();
    }
    // nginx cannot listen on port 0: take a free port and hand it over, retrying
    // in the unlikely case another process grabs it in between.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let d = dir.path();
        std::fs::create_dir_all(d.join("tmp")).unwrap();
        let conf = d.join("nginx.conf");
        std::fs::write(
            &conf,
            format!(
                r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log stderr error;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    client_body_temp_path {d}/tmp;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        # Browser players on other origins fetch from it, as from appliances.
        add_header Access-Control-Allow-Origin * always;
        location /t/ {{ rewrite ^/t/[^/]+/(.*)$ /$1 last; }}
        # An origin serves titles, never the packager's keys.
        location /keys/ {{ return 404; }}
    }}
}}
"#,
                d = d.display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let mut child = Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-p", d.to_str().unwrap()])
            .spawn()
            .expect("start nginx");
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let until = std::time::Instant::now() + crate::DEADLINE;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if std::net::TcpStream::connect(addr).is_ok() {
                return Nginx {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("nginx did not start");
}

/// Fetch every variant of an HLS multivariant playlist on `pathway`, every
/// media playlist, and every object they list; compare bytes with the package.
pub fn fetch_all_hls(s: &Stack, client: IpAddr, master_url: &str, pathway: &str) -> usize {
    let master = get_url(Some(client), master_url).unwrap();
    assert_eq!(master.status, 200);
    let text = String::from_utf8(master.body).unwrap();
    assert!(text.contains("#EXT-X-CONTENT-STEERING"), "{text}");
    let mut fetched = 0;
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if !line.starts_with("#EXT-X-STREAM-INF")
            || !line.contains(&format!("PATHWAY-ID=\"{pathway}\""))
        {
            continue;
        }
        let media_url = lines[i + 1].trim();
        let media = get_url(Some(client), media_url).unwrap();
        assert_eq!(media.status, 200, "{media_url}");
        let media_text = String::from_utf8(media.body).unwrap();
        for uri in playlist_uris(&media_text) {
            let url = resolve(media_url, &uri);
            let r = get_url(Some(client), &url).unwrap();
            assert_eq!(r.status, 200, "{url}");
            let key = url.split_once("/titles/").unwrap().1;
            assert_eq!(r.body, s.object(&format!("titles/{key}")), "{url}");
            fetched += 1;
        }
    }
    fetched
}
