//! Writes the seed corpora under `fuzz/corpus/<target>/` from real traffic
//! shapes: request heads as curl, Chromium (hls.js) and ffmpeg send them,
//! BGP messages encoded with bgpkit-parser (through oca's codec), tokens
//! signed by urlsign, and control-plane bodies serialised from the wire
//! types. The manifest seeds are copied files (see docs/RELIABILITY.md).
//!
//! `cargo run -p cdn-fuzz --example make_seeds` (the workspace builds it, so
//! it keeps compiling as the wire types change)

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use control_client::wire::{
    ApplianceInfo, ErrorBody, FillItem, FillObject, FillPlan, FillSource, FillWindow,
    HealthSummary, Heartbeat, HeartbeatResponse, Inventory, KeySetWire, KeyWire, PrefixReport,
    RegisterRequest, RegisterResponse, RenditionHolding, Tier, inventory_digest,
};
use ipnet::IpNet;
use oca::bgp::Family;
use oca::bgp::codec::{Message, Notification, Open, Update, encode, encode_update};
use urlsign::{Claims, ClientPrefix, Key, sign};

fn dir(target: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../corpus")
        .join(target);
    fs::create_dir_all(&d).expect("mkdir");
    d
}

fn put(target: &str, name: &str, data: &[u8]) {
    fs::write(dir(target).join(name), data).expect("write seed");
}

fn main() {
    let tokens = tokens();
    http(&tokens[0]);
    token(&tokens);
    bgp();
    control();
}

const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/138.0.0.0 Safari/537.36";

fn http(token: &str) {
    let seg = format!("/t/{token}/titles/t1/v720/seg-00001.m4s");
    let playlist = format!("/t/{token}/titles/t1/v720/index.m3u8");
    let chrome = |target: &str, extra: &str| {
        format!(
            "GET {target} HTTP/1.1\r\nHost: oca-ams-1.example.net:8443\r\nConnection: keep-alive\r\n\
sec-ch-ua-platform: \"Linux\"\r\nUser-Agent: {CHROME_UA}\r\n\
sec-ch-ua: \"Not)A;Brand\";v=\"8\", \"Chromium\";v=\"138\", \"Google Chrome\";v=\"138\"\r\n\
sec-ch-ua-mobile: ?0\r\nAccept: */*\r\nOrigin: https://player.example.net\r\n\
Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: cors\r\nSec-Fetch-Dest: empty\r\n\
Referer: https://player.example.net/\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9\r\n{extra}\r\n"
        )
    };
    let etag = "\"6553f100-2a3f1\"";
    let lm = "Tue, 14 Nov 2023 22:13:20 GMT";
    let heads: Vec<(&str, String)> = vec![
        (
            "curl-get",
            format!("GET {seg} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"),
        ),
        (
            "curl-range",
            format!("GET {seg} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-1023\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"),
        ),
        (
            "curl-head",
            format!("HEAD {seg} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"),
        ),
        (
            "curl-http10-range-suffix",
            format!("GET {seg} HTTP/1.0\r\nHost: 127.0.0.1:8080\r\nRange: bytes=-500\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"),
        ),
        (
            "curl-multirange",
            format!("GET {seg} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-99,200-299,-50\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\n\r\n"),
        ),
        (
            "curl-absolute-form",
            "GET http://127.0.0.1:8080/titles/t1/v720/seg-00001.m4s?token=x HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/8.14.1\r\nAccept: */*\r\nProxy-Connection: Keep-Alive\r\n\r\n".into(),
        ),
        ("chrome-hlsjs-playlist", chrome(&playlist, "")),
        ("chrome-hlsjs-segment", chrome(&seg, "")),
        (
            "chrome-hlsjs-revalidate",
            chrome(&playlist, &format!("If-None-Match: {etag}\r\nIf-Modified-Since: {lm}\r\n")),
        ),
        (
            "chrome-media-range-open",
            chrome(&seg, "Range: bytes=0-\r\nAccept-Encoding: identity;q=1, *;q=0\r\n"),
        ),
        (
            "chrome-media-if-range-etag",
            chrome(&seg, &format!("Range: bytes=1048576-\r\nIf-Range: {etag}\r\n")),
        ),
        (
            "chrome-if-range-date",
            chrome(&seg, &format!("Range: bytes=100-199\r\nIf-Range: {lm}\r\n")),
        ),
        (
            "chrome-if-match",
            chrome(&seg, &format!("If-Match: \"x\", {etag}\r\nIf-Unmodified-Since: {lm}\r\n")),
        ),
        (
            "chrome-preflight",
            format!(
                "OPTIONS {seg} HTTP/1.1\r\nHost: oca-ams-1.example.net:8443\r\nConnection: keep-alive\r\n\
Accept: */*\r\nAccess-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: range\r\n\
Origin: https://player.example.net\r\nUser-Agent: {CHROME_UA}\r\nSec-Fetch-Mode: cors\r\n\
Sec-Fetch-Site: cross-site\r\nSec-Fetch-Dest: empty\r\nReferer: https://player.example.net/\r\n\r\n"
            ),
        ),
        (
            "ffmpeg-playlist",
            format!("GET {playlist} HTTP/1.1\r\nUser-Agent: Lavf/61.7.100\r\nAccept: */*\r\nRange: bytes=0-\r\nConnection: close\r\nHost: 127.0.0.1:8080\r\nIcy-MetaData: 1\r\n\r\n"),
        ),
        (
            "ffmpeg-segment-keepalive",
            format!("GET {seg} HTTP/1.1\r\nUser-Agent: Lavf/61.7.100\r\nAccept: */*\r\nRange: bytes=0-\r\nConnection: keep-alive\r\nHost: 127.0.0.1:8080\r\nIcy-MetaData: 1\r\n\r\n"),
        ),
        (
            "ffmpeg-seek-range",
            format!("GET {seg} HTTP/1.1\r\nUser-Agent: Lavf/61.7.100\r\nAccept: */*\r\nRange: bytes=176128-\r\nConnection: close\r\nHost: 127.0.0.1:8080\r\nIcy-MetaData: 1\r\n\r\n"),
        ),
        (
            "pipelined-two",
            format!(
                "GET {playlist} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\nGET {seg} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nRange: bytes=0-1\r\n\r\n"
            ),
        ),
        (
            "leading-blank-lines",
            format!("\r\n\r\nGET {seg} HTTP/1.1\r\nHost: x\r\n\r\n"),
        ),
        (
            "post-with-body",
            "POST /admin/fill HTTP/1.1\r\nHost: 127.0.0.1:9090\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}".into(),
        ),
    ];
    for (name, head) in &heads {
        put("http_request", name, head.as_bytes());
        // The same request-targets seed the path sanitiser.
        let target = head
            .trim_start()
            .split(' ')
            .nth(1)
            .expect("request line has a target");
        put("path", name, target.as_bytes());
    }
    for (name, target) in [
        (
            "query-token",
            "/titles/t1/dash/r0/chunk-00001.m4s?token=abc.def&x=1",
        ),
        ("percent-encoded", "/titles/caf%C3%A9/v720/seg%2D00001.m4s"),
        ("traversal-encoded", "/titles/t1/%2e%2e/%2e%2e/etc/passwd"),
        (
            "absolute-https",
            "https://oca-ams-1.example.net:8443/titles/t1/master.m3u8#f",
        ),
        (
            "ipv6-authority",
            "http://[2001:db8::1]:8080/titles/t1/v360/init_0.mp4",
        ),
    ] {
        put("path", name, target.as_bytes());
    }
}

fn keys() -> (Key, Key) {
    (
        Key::new("k1", &[1u8; 32], None, None).expect("key"),
        Key::new("2026-11a", &[0x5a; 48], None, None).expect("key"),
    )
}

fn tokens() -> Vec<String> {
    let (k1, k2) = keys();
    let claims = [
        (&k1, 1_800_000_000, "/titles/t1/", None),
        (&k2, 1_800_003_600, "/titles/t1", Some("203.0.113.0/24")),
        (
            &k1,
            1_799_999_000,
            "/titles/t2/v720/",
            Some("2001:db8:1::/48"),
        ),
        (&k2, u64::MAX, "/", Some("198.51.100.7/32")),
    ];
    claims
        .iter()
        .map(|(k, expires, prefix, client)| {
            let claims = Claims {
                expires: *expires,
                path_prefix: prefix,
                client: client.map(|c| c.parse::<ClientPrefix>().expect("prefix")),
            };
            sign(k, &claims).expect("signs")
        })
        .collect()
}

fn token(tokens: &[String]) {
    let paths = [
        "/titles/t1/v720/seg-00001.m4s",
        "/titles/t1/master.m3u8",
        "/titles/t2/v720/index.m3u8",
        "/titles/t10/v720/seg-00001.m4s",
    ];
    for (i, t) in tokens.iter().enumerate() {
        // Mode 0: a token line, then the request (path as arbitrary &str:
        // length-prefixed at the end by `arbitrary`, so a plain tail works).
        let mut seed = vec![0u8];
        seed.extend_from_slice(t.as_bytes());
        seed.push(b'\n');
        seed.extend_from_slice(paths[i % paths.len()].as_bytes());
        put("token", &format!("verify-{i}"), &seed);
    }
    put("token", "verify-garbage", b"\0not.a-token\n/a");
    put("token", "verify-empty", b"\0");
    // Round-trip mode: arbitrary bytes read as claims; a few shapes.
    put(
        "token",
        "roundtrip-plain",
        b"\x01\x01\x00\x00\x00\x6b\x49\xd2\x00/titles/t1/\x00\x0b",
    );
    put(
        "token",
        "roundtrip-client-v4",
        b"\x01\x00\x80\x00\x00\x6b\x49\xd2\x00/titles/t1\x01\x00\xcb\x00\x71\x07\x18\x0a",
    );
    put(
        "token",
        "roundtrip-client-mapped",
        b"\x01\x00\x80\x00\x00\x6b\x49\xd2\x00/titles/t1\x01\x02\xcb\x00\x71\x07\x78\x0a",
    );
}

/// Operation "bytes from the peer" of the bgp harness (tag 0, u16 length).
fn peer_bytes(seed: &mut Vec<u8>, msg: &[u8]) {
    seed.push(0);
    seed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    seed.extend_from_slice(msg);
}

/// Operation "time passes" (tag 1, u16 seconds).
fn tick(seed: &mut Vec<u8>, secs: u16) {
    seed.push(1);
    seed.extend_from_slice(&secs.to_be_bytes());
}

fn nets(s: &[&str]) -> Vec<IpNet> {
    s.iter().map(|p| p.parse().expect("prefix")).collect()
}

fn bgp() {
    let open = |hold, four| {
        encode(&Message::Open(Open {
            version: 4,
            asn: 64512,
            hold_time: hold,
            router_id: Ipv4Addr::new(198, 51, 100, 1),
            four_octet_as: four,
            families: vec![Family::Ipv4, Family::Ipv6],
        }))
        .expect("OPEN")
    };
    let keepalive = encode(&Message::Keepalive).expect("KEEPALIVE");
    let update = |a: &[&str], w: &[&str]| {
        let u = Update {
            announced: nets(a),
            withdrawn: nets(w),
            ..Update::default()
        };
        encode_update(&u, 64512, true).expect("UPDATE")
    };
    let eor = |f| {
        let u = Update {
            end_of_rib: Some(f),
            ..Update::default()
        };
        encode_update(&u, 64512, true).expect("EoR")
    };
    let cease = encode(&Message::Notification(Notification::with_data(
        6,
        2,
        vec![],
    )))
    .expect("NOTIFICATION");
    let hold_expired =
        encode(&Message::Notification(Notification::new(4, 0))).expect("NOTIFICATION");

    let mut s = Vec::new();
    peer_bytes(&mut s, &open(90, true));
    put("bgp", "open-only", &s);
    peer_bytes(&mut s, &keepalive);
    put("bgp", "open-keepalive", &s);
    let established = s.clone();
    peer_bytes(&mut s, &update(&["203.0.113.0/24", "198.51.100.0/24"], &[]));
    peer_bytes(&mut s, &update(&["2001:db8:100::/40"], &[]));
    peer_bytes(&mut s, &eor(Family::Ipv4));
    peer_bytes(&mut s, &eor(Family::Ipv6));
    tick(&mut s, 30);
    peer_bytes(&mut s, &keepalive);
    peer_bytes(
        &mut s,
        &update(&["10.0.0.0/8"], &["198.51.100.0/24", "2001:db8:100::/40"]),
    );
    put("bgp", "full-feed", &s);
    let mut lost = s.clone();
    peer_bytes(&mut s, &cease);
    peer_bytes(&mut s, &update(&["172.16.0.0/12"], &[]));
    put("bgp", "feed-then-cease", &s);
    lost.push(2); // connection lost
    tick(&mut lost, 60);
    lost.push(4); // a new connection
    peer_bytes(&mut lost, &open(90, true));
    peer_bytes(&mut lost, &keepalive);
    peer_bytes(&mut lost, &update(&["203.0.113.0/24"], &[]));
    peer_bytes(&mut lost, &eor(Family::Ipv4));
    tick(&mut lost, 200);
    put("bgp", "restart-within-grace", &lost);
    let mut t = established.clone();
    tick(&mut t, 89);
    tick(&mut t, 2);
    put("bgp", "hold-timer-expiry", &t);
    let mut n = established.clone();
    peer_bytes(&mut n, &hold_expired);
    put("bgp", "peer-notification", &n);
    let mut two_byte = Vec::new();
    peer_bytes(&mut two_byte, &open(0, false));
    peer_bytes(&mut two_byte, &keepalive);
    let u = Update {
        announced: nets(&["203.0.113.128/25"]),
        ..Update::default()
    };
    peer_bytes(
        &mut two_byte,
        &encode_update(&u, 64512, false).expect("UPDATE"),
    );
    put("bgp", "two-byte-as-no-hold", &two_byte);
    // Raw UPDATE from oca/tests/bgp_codec.rs: ORIGIN IGP, AS_PATH [64512]
    // (4-byte), NEXT_HOP 198.51.100.1, NLRI 203.0.113.0/24 and a default route.
    let attrs: &[u8] = &[
        0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfc, 0, 0x40, 3, 4, 198, 51, 100, 1,
    ];
    let mut body = vec![0, 0];
    body.extend((attrs.len() as u16).to_be_bytes());
    body.extend(attrs);
    body.extend([24, 203, 0, 113, 0]);
    let mut raw = vec![0xff; 16];
    raw.extend(((19 + body.len()) as u16).to_be_bytes());
    raw.push(2);
    raw.extend(body);
    let mut r = established.clone();
    peer_bytes(&mut r, &raw);
    put("bgp", "raw-update-default-route", &r);
    let mut split = established;
    split.push(7); // the same bytes, in small reads
    split.extend_from_slice(&(raw.len() as u16).to_be_bytes());
    split.extend_from_slice(&raw);
    put("bgp", "raw-update-small-reads", &split);
}

fn info() -> ApplianceInfo {
    ApplianceInfo {
        tier: Tier::Embedded,
        site: "ams".into(),
        region: "eu-west".into(),
        asn: 64512,
        http_url: Some("http://127.0.0.1:8080".into()),
        https_url: Some("https://oca-ams-1.example.net:8443".into()),
        admin_url: "http://127.0.0.1:9090".into(),
        capacity_bps: 10_000_000_000,
        storage_bytes: 4_000_000_000_000,
        version: "0.1.0".into(),
    }
}

fn json<T: serde::Serialize>(name: &str, v: &T) {
    put(
        "control_bodies",
        name,
        serde_json::to_string_pretty(v).expect("JSON").as_bytes(),
    );
}

fn control() {
    let health = HealthSummary {
        status: "ok".into(),
        egress_bps: 1_250_000_000,
        capacity_bps: 10_000_000_000,
        connections: 1234,
    };
    let holding = vec![
        RenditionHolding {
            rendition: "titles/t1/v360".into(),
            objects: 4,
            bytes: 4_000_000,
        },
        RenditionHolding {
            rendition: "titles/t1/dash/r0".into(),
            objects: 4,
            bytes: 3_900_000,
        },
    ];
    json("register", &RegisterRequest { info: info() });
    json(
        "heartbeat-full",
        &Heartbeat {
            health: health.clone(),
            inventory: Some(Inventory::Full {
                version: 1,
                digest: inventory_digest(&holding),
                renditions: holding.clone(),
            }),
            prefixes: Some(PrefixReport::Full {
                version: 1,
                prefixes: vec!["203.0.113.0/24".into(), "2001:db8:100::/40".into()],
                attrs: Default::default(),
            }),
        },
    );
    let after = [holding[1].clone()];
    json(
        "heartbeat-delta",
        &Heartbeat {
            health: health.clone(),
            inventory: Some(Inventory::Delta {
                base_version: 7,
                version: 8,
                digest: inventory_digest(&after),
                upserted: vec![],
                removed: vec!["titles/t1/v720".into(), "titles/t1/v360".into()],
            }),
            prefixes: Some(PrefixReport::Delta {
                base_version: 0,
                version: 2,
                announced: vec!["198.51.100.0/24".into()],
                withdrawn: vec!["203.0.113.0/24".into()],
                attrs: [(
                    "198.51.100.0/24".to_owned(),
                    control_client::wire::RouteAttrs {
                        communities: vec!["64500:100".into(), "64500:1:2".into()],
                        med: Some(20),
                    },
                )]
                .into(),
            }),
        },
    );
    json(
        "heartbeat-idle",
        &Heartbeat {
            health,
            inventory: None,
            prefixes: None,
        },
    );
    json(
        "inventory-full",
        &Inventory::Full {
            version: 3,
            digest: inventory_digest(&holding),
            renditions: holding.clone(),
        },
    );
    json(
        "prefixes-full",
        &PrefixReport::Full {
            version: 4,
            prefixes: vec!["10.0.0.0/8".into(), "10.2.3.4/16".into()],
            attrs: Default::default(),
        },
    );
    json(
        "register-response",
        &RegisterResponse {
            heartbeat_interval_ms: 10_000,
            inventory_version: 7,
            inventory_digest: inventory_digest(&holding),
            keys_version: 2,
        },
    );
    json(
        "heartbeat-response",
        &HeartbeatResponse {
            resync: false,
            inventory_version: 8,
            keys_version: 2,
            prefixes_version: 2,
            prefixes_resync: false,
            register: false,
        },
    );
    json(
        "keys",
        &KeySetWire {
            version: 2,
            keys: vec![KeyWire {
                id: "2026-11a".into(),
                secret: "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo".into(),
                not_before: Some(1_800_000_000),
                not_after: None,
            }],
        },
    );
    json(
        "fill-plan",
        &FillPlan {
            appliance: "oca-ams-1".into(),
            version: 5,
            generated_at: 1_800_000_000,
            expires: 1_800_086_400,
            window: FillWindow {
                start: "02:00".into(),
                end: "06:00".into(),
                utc_offset_minutes: 60,
            },
            budget_bytes: 900,
            items: vec![FillItem {
                rendition: "titles/t1/v720".into(),
                title: "t1".into(),
                score: 1.5,
                urgent: true,
                not_before: None,
                bytes: 3,
                objects: vec![FillObject {
                    key: "titles/t1/v720/seg-00001.m4s".into(),
                    size: 3,
                    sha256: "ab".repeat(32),
                }],
                sources: vec![FillSource {
                    id: "origin".into(),
                    kind: "origin".into(),
                    base_url: "http://127.0.0.1:8081/t/tok/".into(),
                }],
            }],
        },
    );
    json(
        "error",
        &ErrorBody {
            code: "unknown_rendition".into(),
            message: "1 rendition(s) not in the catalog; see details".into(),
            details: vec!["titles/zz/v1".into()],
        },
    );
}
