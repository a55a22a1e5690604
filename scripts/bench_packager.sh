#!/usr/bin/env bash
# Per-title encoding figures (docs/BENCHMARKS.md, "Per-title encoding"): for
# each content class ffmpeg's generators make, oca-pack's per-title ladder
# against make-content.sh's fixed 3-rung ladder and a typical 6-rung one
# (BD-rate, quality at equal bits, bytes per hour), and analysis and encode
# time per minute of content on 1 and 2 cores. Writes docs/data/packager.json
# (machine, date, exact command, raw numbers per class); nothing is typed by hand.
#
#   scripts/bench_packager.sh [bench-ladders options, e.g. --classes flat,noise --seconds 12]
#
# Quality is VMAF where an ffmpeg with libvmaf can be found: Debian 12's has
# none, so the imageio-ffmpeg wheel (a static ffmpeg with libvmaf) is
# installed with pip; without it oca-pack measures SSIM (dB) and says so.
# Encodes run at nice 10, on every core.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/packages.sh
install_missing ffmpeg:ffmpeg
if ! python3 -c 'import imageio_ffmpeg' 2>/dev/null; then
    python3 -m pip install --quiet imageio-ffmpeg || echo "no imageio-ffmpeg: measuring SSIM, not VMAF" >&2
fi
# The debug build: ffmpeg does all the work, oca-pack only plans and waits.
cargo build --quiet -p packager
exec nice -n 10 target/debug/oca-pack --chunks 3 bench-ladders docs/data/packager.json "$@"
