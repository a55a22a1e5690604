#!/usr/bin/env bash
# Every test, on a fresh machine: installs what is missing, then formatting,
# lints, and the whole test suite (unit, property, loopback, real-process, and
# real peers: curl, ffprobe, nginx, BIRD, hls.js in Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v nginx >/dev/null || missing+=(nginx-light)   # the origin in fill tests
command -v bird >/dev/null || missing+=(bird2)          # the ISP router in BGP tests
command -v ip >/dev/null || missing+=(iproute2)         # its network namespace
command -v mount >/dev/null || missing+=(mount)         # small tmpfs disks
command -v chromium >/dev/null || missing+=(chromium)   # the browser player (hls.js)
command -v npm >/dev/null || missing+=(npm)             # playwright-core and hls.js
command -v systemd-analyze >/dev/null || missing+=(systemd)  # unit checks, the boot test
command -v dpkg-deb >/dev/null || missing+=(dpkg)       # the .deb
if ((${#missing[@]})); then
    echo "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -d tests/browser/node_modules/playwright-core ] || [ ! -d tests/browser/node_modules/hls.js ]; then
    (cd tests/browser && npm ci --no-audit --no-fund)
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    cargo install cargo-nextest --locked
fi
rustup component list --installed 2>/dev/null | grep -q rustfmt || rustup component add rustfmt clippy || true

cargo fmt --all --check
# docs/BENCHMARKS.md and RELIABILITY.md's tables are what their data gives (bench/figures/).
python3 -m unittest discover -s bench/figures -t bench
# --all-features also compiles the kernel-TLS path (oca's `ktls`), which this
# machine's kernel cannot run.
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
# Tests run with every feature too: the kernel-TLS build must fall back cleanly here.
cargo nextest run --workspace --all-features --locked --profile ci --no-run
# The packaged test content (ffmpeg) is made once, outside every test's time limit.
"${CARGO_TARGET_DIR:-target}/debug/e2e-content"
cargo nextest run --workspace --all-features --locked --profile ci
