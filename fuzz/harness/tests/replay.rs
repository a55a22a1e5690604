//! Replays every committed corpus and regression input through the fuzz
//! harnesses, on stable Rust and without libFuzzer, so CI keeps checking the
//! properties the fuzzers found and fixed.

use std::path::Path;

#[test]
fn committed_inputs_pass_every_harness_check() {
    // The inputs live beside the libFuzzer crate: fuzz/corpus, fuzz/regressions.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut replayed = 0;
    for target in cdn_fuzz::TARGETS {
        for dir in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
                continue;
            };
            let mut files: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
            files.sort();
            for file in files.iter().filter(|f| f.is_file()) {
                let data = std::fs::read(file).expect("readable input");
                eprintln!("{target}: {}", file.display());
                cdn_fuzz::run(target, &data);
                replayed += 1;
            }
        }
    }
    assert!(replayed > 0, "no corpus found under {}", root.display());
}

/// `CDN_FUZZ_INPUT=<target>:<file> cargo test --test replay one_input`
/// replays a single input, e.g. a crash libFuzzer left in artifacts/.
#[test]
fn one_input() {
    let Ok(spec) = std::env::var("CDN_FUZZ_INPUT") else {
        return;
    };
    let (target, file) = spec
        .split_once(':')
        .expect("CDN_FUZZ_INPUT=<target>:<file>");
    cdn_fuzz::run(target, &std::fs::read(file).expect("readable input"));
}
