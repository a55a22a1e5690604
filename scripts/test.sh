#!/usr/bin/env bash
# Every test, on a fresh machine: installs what is missing, then formatting,
# lints, and the whole test suite (unit, property, loopback, real-process, and
# real peers: curl, ffprobe, nginx, BIRD, hls.js and dash.js in Chromium).
# Run as root: it installs missing Debian packages (scripts/packages.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/packages.sh
# curl, openssl: TLS and HTTP checks; ffmpeg: test content (oca-pack runs it) and ffprobe;
# nginx-light: the origin; bird2: the ISP router (BGP); iproute2: its network
# namespace, and tc for the slow-path tests (in namespaces of their own, made by
# util-linux's unshare); mount: small tmpfs disks; chromium, npm: the browser players
# (hls.js, dash.js); systemd: unit checks and the boot test; dpkg: the .deb;
# postgresql-15: steering's shared store (tests start their own servers, as
# the postgres user, through runuser); losetup, e2fsprogs: fill-agent's failing-fsync
# test (ext4 on a loop device).
install_missing curl:curl openssl:openssl ffmpeg:ffmpeg nginx:nginx-light bird:bird2 ip:iproute2 \
    mount:mount chromium:chromium npm:npm systemd-analyze:systemd dpkg-deb:dpkg \
    /usr/lib/postgresql/15/bin/initdb:postgresql-15 runuser:util-linux \
    losetup:mount mkfs.ext4:e2fsprogs
# The browser players' npm packages, again whenever package-lock.json changes.
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock; then
    (cd tests/browser && npm ci --no-audit --no-fund --silent && cp package-lock.json node_modules/.installed-lock)
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
# Every binary the end-to-end tests start (steering, oca, fill-agent, oca-bench, oca-lab, …),
# whichever package's tests start it.
cargo build --workspace --all-features --locked --bins
# The packaged test content (scripts/make-content.sh: oca-pack, built above) is made
# once, outside every test's time limit.
"${CARGO_TARGET_DIR:-target}/debug/e2e-content"
cargo nextest run --workspace --all-features --locked --profile ci
