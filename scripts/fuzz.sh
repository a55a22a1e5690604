#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol cores (see docs/RELIABILITY.md).
#
#   scripts/fuzz.sh [TARGET...] [--runs N | --time SECONDS | --smoke] [--results FILE]
#
# No TARGET: every target. --runs N: N executions per target; --time S: S
# seconds per target (both: whichever comes first); --smoke: 10 s per
# target (CI). Default: --time 60. --results FILE: write what ran (per
# target: executions, seconds, exec/s, corpus, crashes, the fuzzer's command;
# the build time; the date, the machine, this command line) as JSON, which
# docs/RELIABILITY.md's fuzzing table is rendered from (bench/run.py --render).
# Targets run one at a time, at low priority. Each starts from the committed
# seeds in fuzz/corpus/<target>/ plus what earlier runs found (kept in
# fuzz/corpus-work/<target>/, not committed). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1.
#
# cargo-fuzz needs nightly compiler flags; stable rustc accepts them with
# RUSTC_BOOTSTRAP=1, which is set here only for the fuzz build.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
all=(http_request path token bgp manifest control_bodies)

invocation="scripts/fuzz.sh${*:+ $*}"
targets=()
limit=()
results=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) limit+=(-runs="$2"); shift 2 ;;
        --time) limit+=(-max_total_time="$2"); shift 2 ;;
        --smoke) limit+=(-max_total_time=10); shift ;;
        --results) results="$(realpath -m "$2")"; shift 2 ;;
        -h|--help) sed -n '2,18p' "${BASH_SOURCE[0]}"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 64 ;;
        *)
            if [[ ! " ${all[*]} " =~ " $1 " ]]; then
                echo "unknown target $1 (targets: ${all[*]})" >&2
                exit 64
            fi
            targets+=("$1"); shift ;;
    esac
done
[[ ${#targets[@]} -gt 0 ]] || targets=("${all[@]}")
[[ ${#limit[@]} -gt 0 ]] || limit=(-max_total_time=60)

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi

cd "$root"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
# -O -a: optimised, with debug assertions and overflow checks. No sanitizer:
# the harnessed code is safe Rust (unsafe_code is denied outside oca's
# sys.rs, which no target reaches), so ASan would only halve the rate.
build=(cargo fuzz build -O -a -s none)
bin="$fuzz/target/x86_64-unknown-linux-gnu/release"
cold_build=true
[[ -d "$bin" ]] && cold_build=false
echo "building: RUSTC_BOOTSTRAP=1 ${build[*]}" >&2
build_start=$(date +%s)
RUSTC_BOOTSTRAP=1 nice -n 15 "${build[@]}" >&2
build_secs=$(( $(date +%s) - build_start ))

rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
failed=0
printf '%-16s %12s %8s %10s %8s %8s\n' target executions seconds exec/s corpus crashes
for t in "${targets[@]}"; do
    work="$fuzz/corpus-work/$t"
    artifacts="$fuzz/artifacts/$t"
    mkdir -p "$work" "$artifacts"
    dict=()
    [[ -f "$fuzz/dict/$t.dict" ]] && dict=(-dict="$fuzz/dict/$t.dict")
    log="$fuzz/artifacts/$t.log"
    found() { find "$artifacts" -type f \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l; }
    before=$(found)
    start=$(date +%s)
    target_started=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    # One process, one job; -timeout catches hangs, -rss_limit_mb runaways.
    cmd=(nice -n 15 "$bin/$t" "$work" "$fuzz/corpus/$t" "${limit[@]}" "${dict[@]}"
        -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
        -artifact_prefix="$artifacts/")
    set +e
    "${cmd[@]}" >"$log" 2>&1
    status=$?
    set -e
    secs=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    corpus=$(find "$work" -type f | wc -l)
    crashes=$(( $(found) - before ))
    printf '%-16s %12s %8s %10s %8s %8s\n' "$t" "${execs:-?}" "$secs" "${rate:-?}" "$corpus" "$crashes"
    # Paths relative to the repository, so the recorded command reads the same anywhere.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "${execs:-}" "$secs" "${rate:-}" "$corpus" \
        "$crashes" "$status" "$target_started" "${cmd[*]//$root\//}" >>"$rows"
    if [[ $status -ne 0 ]]; then
        failed=1
        echo "$t: fuzzer exited $status; see $log and $artifacts/" >&2
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer" "$log" >&2 || true
    fi
done
# The manifest harness keeps a packaged directory per process in /dev/shm.
rm -rf /dev/shm/cdn-fuzz-manifest-* 2>/dev/null || true
if [[ -n "$results" ]]; then
    FUZZ_COMMAND="$invocation" FUZZ_STARTED="$started_at" FUZZ_BUILD="RUSTC_BOOTSTRAP=1 ${build[*]}" \
    FUZZ_BUILD_SECS="$build_secs" FUZZ_COLD_BUILD="$cold_build" FUZZ_LIMITS="${limit[*]}" FUZZ_LOAD="$load_at_start" \
    python3 - "$rows" "$results" "$root" <<'PY'
import os, sys
rows, out, root = sys.argv[1:4]
sys.path.insert(0, os.path.join(root, "bench"))
from figures import data
num = lambda v: int(v) if v else None
targets = []
for line in open(rows):
    t, execs, secs, rate, corpus, crashes, status, started, cmd = line.rstrip("\n").split("\t")
    targets.append({"target": t, "executions": num(execs), "seconds": int(secs), "exec_per_s": num(rate),
                    "corpus": int(corpus), "crashes": int(crashes), "exit_status": int(status),
                    "started": started, "command": cmd})
e = os.environ
host = dict(data.machine(), load_avg_1m_at_start=float(e["FUZZ_LOAD"]))
data.write(out, {"tool": "scripts/fuzz.sh", "command": e["FUZZ_COMMAND"], "date": e["FUZZ_STARTED"],
                 "machine": host, "limits": e["FUZZ_LIMITS"].split(), "nice": 15,
                 "build": {"command": e["FUZZ_BUILD"], "seconds": int(e["FUZZ_BUILD_SECS"]),
                           "cold": e["FUZZ_COLD_BUILD"] == "true"},
                 "targets": targets})
PY
    echo "results: $results" >&2
fi
exit $failed
