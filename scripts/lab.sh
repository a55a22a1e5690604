#!/usr/bin/env bash
# The whole stack on this machine, one command: installs what the lab uses if
# missing (ffmpeg, nginx, npm packages for the web player; their output goes to
# target/lab-install.log), builds the binaries (release, with cargo's progress),
# then runs `oca-lab` (steering, an nginx origin, an IXP appliance, two ISPs'
# embedded appliances, an off-peak fill, viewers run as `oca-bench players`).
#
#   scripts/lab.sh [--duration 60s] [--viewers 2] [--fill-rate-bps N]
#   scripts/lab.sh --soak --duration 30m [--sample-every 5s] [--samples FILE]
#   scripts/lab.sh --chaos --duration 5m [--pause 2s..8s] [--down 0s..2s] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
log="$PWD/target/lab-install.log"
# Runs "$@" with its output in the log; on failure, says so and shows the end.
quietly() {
    if ! "$@" >>"$log" 2>&1; then
        echo "lab.sh: '$*' failed; the end of $log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
}
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    echo "installing ${missing[*]} (log: target/lab-install.log)"
    quietly apt-get update
    quietly env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi
if [ ! -d tests/browser/node_modules/hls.js ]; then
    echo "installing the web player's npm packages (log: target/lab-install.log)"
    (cd tests/browser && quietly npm ci --no-audit --no-fund)
fi
# Cargo's own progress (stderr): the first build takes minutes.
cargo build --release --locked -p steering -p oca -p fill-agent -p bench -p lab
exec target/release/oca-lab "$@"
