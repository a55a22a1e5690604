#!/usr/bin/env bash
# The whole stack on this machine, one command: builds the binaries (release),
# installs what the lab uses if missing (ffmpeg, nginx, npm packages for the web
# player), then runs `oca-bench lab` (steering, an nginx origin, an IXP
# appliance, two ISPs' embedded appliances, an off-peak fill, viewers).
#
#   scripts/lab.sh [--duration 60s] [--viewers 2] [--fill-rate-bps N]
#   scripts/lab.sh --soak --duration 30m [--sample-every 5s] [--samples FILE]
#   scripts/lab.sh --chaos --duration 5m [--pause 2s..8s] [--down 0s..2s] [--seed N]
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v nginx >/dev/null || missing+=(nginx-light)
command -v npm >/dev/null || missing+=(npm)
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -d tests/browser/node_modules/hls.js ]; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi
cargo build --release --locked -q -p steering -p oca -p fill-agent -p bench
exec target/release/oca-bench lab "$@"
