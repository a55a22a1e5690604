#!/usr/bin/env bash
# Coverage-guided fuzzing of the protocol cores (see docs/RELIABILITY.md).
#
#   scripts/fuzz.sh [TARGET...] [--runs N | --time SECONDS | --smoke]
#
# No TARGET: every target. --runs N: N executions per target; --time S: S
# seconds per target (both: whichever comes first); --smoke: 10 s per
# target (CI). Default: --time 60.
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

targets=()
limit=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --runs) limit+=(-runs="$2"); shift 2 ;;
        --time) limit+=(-max_total_time="$2"); shift 2 ;;
        --smoke) limit+=(-max_total_time=10); shift ;;
        -h|--help) sed -n '2,14p' "${BASH_SOURCE[0]}"; exit 0 ;;
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
# -O -a: optimised, with debug assertions and overflow checks. No sanitizer:
# the harnessed code is safe Rust (unsafe_code is denied outside oca's
# sys.rs, which no target reaches), so ASan would only halve the rate.
build=(cargo fuzz build -O -a -s none)
echo "building: RUSTC_BOOTSTRAP=1 ${build[*]}" >&2
RUSTC_BOOTSTRAP=1 nice -n 15 "${build[@]}" >&2

bin="$fuzz/target/x86_64-unknown-linux-gnu/release"
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
    set +e
    # One process, one job; -timeout catches hangs, -rss_limit_mb runaways.
    nice -n 15 "$bin/$t" "$work" "$fuzz/corpus/$t" "${limit[@]}" "${dict[@]}" \
        -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1
    status=$?
    set -e
    secs=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
    corpus=$(find "$work" -type f | wc -l)
    crashes=$(( $(found) - before ))
    printf '%-16s %12s %8s %10s %8s %8s\n' "$t" "${execs:-?}" "$secs" "${rate:-?}" "$corpus" "$crashes"
    if [[ $status -ne 0 ]]; then
        failed=1
        echo "$t: fuzzer exited $status; see $log and $artifacts/" >&2
        grep -m1 -A3 -E "panicked at|ERROR: libFuzzer" "$log" >&2 || true
    fi
done
# The manifest harness keeps a packaged directory per process in /dev/shm.
rm -rf /dev/shm/cdn-fuzz-manifest-* 2>/dev/null || true
exit $failed
