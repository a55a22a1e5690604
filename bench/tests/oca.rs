//! End to end against a real oca server in this process: closed and open loop,
//! ranges, catalogues with hashes (right and wrong), and `compare`.

mod support;

use support::{assert_sane, bench, keys_file, oca, pattern, sha256_hex, store};

const SIZE: usize = 64 * 1024;

/// Eight objects of one size, so bytes = requests × size.
fn segments() -> Vec<(String, Vec<u8>)> {
    (1..=8)
        .map(|i| {
            (
                format!("titles/t1/v720/seg-{i:05}.m4s"),
                pattern(SIZE, i as u64),
            )
        })
        .collect()
}

fn root_with(objects: &[(String, Vec<u8>)]) -> tempfile::TempDir {
    let refs: Vec<(&str, Vec<u8>)> = objects
        .iter()
        .map(|(k, b)| (k.as_str(), b.clone()))
        .collect();
    store(&refs)
}

#[test]
fn closed_loop_whole_objects() {
    let root = root_with(&segments());
    let server = oca(root.path());
    let pid = std::process::id().to_string();
    let root_arg = root.path().to_str().unwrap();
    let v = bench(&[
        "segments",
        "--target",
        &server.url,
        "--dir",
        root_arg,
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--connections",
        "4",
        "--threads",
        "2",
        "--server-pid",
        &pid,
        "--json",
        "-q",
    ])
    .json();
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(v["mode"], "closed");
    assert_eq!(v["objects"], 8);
    let requests = v["requests"].as_u64().unwrap();
    assert_eq!(v["bytes"].as_u64().unwrap(), requests * SIZE as u64);
    let rps = v["req_per_s"].as_f64().unwrap();
    assert!(
        (rps - requests as f64).abs() < 1e-6,
        "1 s run: req/s = requests"
    );
    // The server runs in this process, so its CPU is this test's: present and positive.
    let cpu = &v["server_cpu"];
    assert!(cpu["cpu_s"].as_f64().unwrap() > 0.0, "{v}");
    assert!(cpu["cpu_us_per_req"].as_f64().unwrap() > 0.0);
    assert!(v["client_cpu"]["cpu_s"].as_f64().unwrap() >= 0.0);
}

#[test]
fn open_loop_keeps_the_rate() {
    let root = root_with(&segments());
    let server = oca(root.path());
    let v = bench(&[
        "segments",
        "--target",
        &server.url,
        "--dir",
        root.path().to_str().unwrap(),
        "--duration",
        "1s",
        "--rate",
        "50",
        "--connections",
        "4",
        "--json",
        "-q",
    ])
    .json();
    assert_sane(&v);
    assert_eq!(v["mode"], "open");
    assert_eq!(v["errors"]["total"], 0, "{v}");
    // 50 req/s for 1 s over 4 staggered connections is exactly 50 intended sends;
    // at this rate (almost) none should be left unsent, even on a loaded machine.
    assert_eq!(
        v["requests"].as_u64().unwrap() + v["unsent"].as_u64().unwrap(),
        50,
        "{v}"
    );
    assert!(v["unsent"].as_u64().unwrap() <= 5, "{v}");
}

#[test]
fn byte_ranges_from_two_source_addresses() {
    let root = root_with(&segments());
    let server = oca(root.path());
    let v = bench(&[
        "segments",
        "--target",
        &server.url,
        "--dir",
        root.path().to_str().unwrap(),
        "--duration",
        "500ms",
        "--range-size",
        "10000",
        "--connections",
        "4",
        "--bind",
        "127.0.0.2,127.0.0.3",
        "--json",
        "-q",
    ])
    .json();
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(v["range_size"], 10000);
    let requests = v["requests"].as_u64().unwrap();
    assert_eq!(v["bytes"].as_u64().unwrap(), requests * 10_000);
}

#[test]
fn range_larger_than_object_asks_for_all_of_it() {
    let body = pattern(5000, 9);
    let root = store(&[("small.m4s", body.clone())]);
    let server = oca(root.path());
    let keys = keys_file(&format!("small.m4s 5000 {}\n", sha256_hex(&body)));
    let v = bench(&[
        "segments",
        "--target",
        &server.url,
        "--keys",
        keys.path().to_str().unwrap(),
        "--duration",
        "300ms",
        "--range-size",
        "1MiB",
        "--connections",
        "2",
        "--json",
        "-q",
    ])
    .json();
    assert_sane(&v);
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        v["requests"].as_u64().unwrap() * 5000
    );
}

#[test]
fn catalogues_with_correct_hashes_verify() {
    let objects = segments();
    let root = root_with(&objects);
    let server = oca(root.path());
    let keys: String = objects
        .iter()
        .map(|(k, b)| format!("{k} {} {}\n", b.len(), sha256_hex(b)))
        .collect();
    let keys = keys_file(&keys);
    let json: Vec<String> = objects
        .iter()
        .map(|(k, b)| {
            format!(
                r#"{{"key":"{k}","size":{},"sha256":"{}"}}"#,
                b.len(),
                sha256_hex(b)
            )
        })
        .collect();
    let catalogue = keys_file(&format!(r#"{{"objects":[{}]}}"#, json.join(",")));
    for (flag, file) in [("--keys", &keys), ("--catalogue", &catalogue)] {
        let v = bench(&[
            "segments",
            "--target",
            &server.url,
            flag,
            file.path().to_str().unwrap(),
            "--duration",
            "500ms",
            "--connections",
            "2",
            "--zipf",
            "0",
            "--json",
            "-q",
        ])
        .json();
        assert_sane(&v);
        assert_eq!(v["errors"]["total"], 0, "{flag}: {v}");
    }
}

#[test]
fn wrong_hashes_are_counted() {
    let body = pattern(SIZE, 1);
    let root = store(&[("seg.m4s", body.clone())]);
    let server = oca(root.path());
    let wrong = sha256_hex(b"something else");
    let keys = keys_file(&format!("seg.m4s {SIZE} {wrong}\n"));
    let args = [
        "segments",
        "--target",
        &server.url,
        "--keys",
        keys.path().to_str().unwrap(),
        "--duration",
        "300ms",
        "--connections",
        "2",
        "--json",
        "-q",
    ];
    let v = bench(&args).json();
    let e = &v["errors"];
    assert!(e["hash"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(e["total"], e["hash"], "only hash errors: {v}");
    assert_eq!(v["requests"], 0);
    // The body was still received in full.
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        e["hash"].as_u64().unwrap() * SIZE as u64
    );

    // --no-hash turns the check off.
    let mut no_hash = args.to_vec();
    no_hash.push("--no-hash");
    let v = bench(&no_hash).json();
    assert_eq!(v["errors"]["total"], 0, "{v}");
    assert!(v["requests"].as_u64().unwrap() > 0);
}

#[test]
fn missing_objects_are_status_errors() {
    let root = root_with(&segments());
    let server = oca(root.path());
    let keys = keys_file("not/there.m4s 100\n");
    let v = bench(&[
        "segments",
        "--target",
        &server.url,
        "--keys",
        keys.path().to_str().unwrap(),
        "--duration",
        "200ms",
        "--connections",
        "1",
        "--json",
        "-q",
    ])
    .json();
    let e = &v["errors"];
    assert!(e["status"].as_u64().unwrap() > 0, "{v}");
    assert_eq!(e["status_codes"]["404"], e["status"]);
    // A 404 has a delimited body: the connection is kept, not reopened.
    assert_eq!(v["reconnects"], 0, "{v}");
}

#[test]
fn compare_a_server_with_itself() {
    let root = root_with(&segments());
    let server = oca(root.path());
    let pid = std::process::id().to_string();
    let out = bench(&[
        "compare",
        "--a",
        &server.url,
        "--b",
        &server.url,
        "--a-name",
        "left",
        "--b-name",
        "right",
        "--a-pid",
        &pid,
        "--rounds",
        "2",
        "--duration",
        "1s",
        "--dir",
        root.path().to_str().unwrap(),
        "--connections",
        "2",
        "--json",
        "-q",
    ]);
    let v = out.json();
    assert_eq!(v["rounds"], 2);
    assert_eq!(v["a_name"], "left");
    assert_eq!(v["a_runs"].as_array().unwrap().len(), 2);
    assert_eq!(v["b_runs"].as_array().unwrap().len(), 2);
    let rps = &v["figures"]["req_per_s"];
    let ratio = rps["ratio"].as_f64().unwrap();
    assert!((0.3..=3.0).contains(&ratio), "{rps}");
    assert!(rps["ratio_min"].as_f64().unwrap() <= ratio);
    assert!(rps["ratio_max"].as_f64().unwrap() >= ratio);
    for f in [
        "gbit_per_s",
        "latency_p50_us",
        "latency_p99_us",
        "latency_p999_us",
        "ttfb_p99_us",
        "server_cpu_s_per_gib",
        "server_cpu_us_per_req",
        "errors",
    ] {
        assert!(v["figures"].get(f).is_some(), "missing {f}");
    }
    // Only A had a pid: A's server CPU is measured, B's is not, so no ratio.
    assert!(v["figures"]["server_cpu_us_per_req"]["a"].is_number());
    assert!(v["figures"]["server_cpu_us_per_req"]["ratio"].is_null());
    assert_eq!(v["figures"]["errors"]["a"], 0.0);
}
