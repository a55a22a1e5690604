#!/usr/bin/env bash
# Make packaged test content with the packager (oca-pack): a test-pattern
# source of SECONDS seconds at 1280x720 (`oca-pack source testpattern`), then
# `oca-pack encode` with a fast preset, so the ladder is the one per-title
# selection picks for that content (two to four H.264/AAC rungs, 4-second
# segments), packaged as fMP4 HLS and DASH with title.toml and ladder.json,
# the layout `steering catalog import OUT` takes:
#
#   scripts/make-content.sh [--clear] OUT [TITLE_ID] [SECONDS]
#
# The title is encrypted (Common Encryption, cenc) with a fresh content key,
# so whatever plays it exercises the licence flow: the key ID in
# OUT/titles/TITLE_ID/drm.json, the key in OUT/keys/TITLE_ID.json (0600),
# which `steering catalog import` stores sealed under drm.key_file (which it
# then needs). --clear packages it in the clear.
#
# Writes OUT/titles/TITLE_ID/{title.toml, ladder.json, master.m3u8, v<height>/..., dash/}.
# Rendition names depend on the ladder: read them from master.m3u8 or
# ladder.json, never assume them.
#
# The fast preset (ultrafast x264, SSIM instead of VMAF so no wheel is needed,
# two 2-second analysis chunks, three CRFs at 360p, 540p and 720p) takes about
# a second per second of content on two cores; the tests and the lab make their
# content with it once per build directory.
#
# oca-pack: $OCA_PACK if set, else the workspace's debug or release build if
# there is one (scripts/test.sh builds every binary first), else it is built
# now (cargo build -p packager, debug: the encoding is ffmpeg's work).
set -euo pipefail
usage="usage: make-content.sh [--clear] OUT [TITLE_ID] [SECONDS]"
encrypt=(--encrypt)
case "${1:-}" in
--clear) encrypt=(); shift ;;
--encrypt) shift ;;
esac
out="${1:?$usage}"
title="${2:-t1}"
secs="${3:-12}"
case "$secs" in
'' | *[!0-9.]*) echo "make-content.sh: SECONDS must be a number, not $secs; $usage" >&2; exit 64 ;;
esac
mkdir -p "$out"
out="$(cd "$out" && pwd)"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
. scripts/packages.sh
install_missing ffmpeg:ffmpeg

pack="${OCA_PACK:-}"
if [ -z "$pack" ]; then
    target="${CARGO_TARGET_DIR:-$root/target}"
    for p in "$target/debug/oca-pack" "$target/release/oca-pack"; do
        if [ -x "$p" ]; then pack="$p"; break; fi
    done
fi
if [ -z "$pack" ]; then
    echo "make-content.sh: building oca-pack (cargo build -p packager)" >&2
    cargo build --quiet --locked -p packager
    pack="${CARGO_TARGET_DIR:-$root/target}/debug/oca-pack"
fi

work="$(mktemp -d "$out/.make-content.XXXXXX")"
trap 'rm -rf "$work"' EXIT
"$pack" source testpattern "$work/source.mkv" --seconds "$secs" --size 1280x720 >/dev/null
# --force: the script always (re)makes the title, as it did before oca-pack.
"$pack" encode "$work/source.mkv" "$out" --title "$title" --force \
    --name "Test pattern $title" --region eu-west --region us-east --segment 4 \
    --metric ssim --preset ultrafast --chunks 2 --chunk-secs 2 \
    --crfs 24,30,36 --heights 360,540 --min-bitrate 300000 --max-bitrate 3000000 \
    ${encrypt[@]+"${encrypt[@]}"} >/dev/null
echo "wrote $out/titles/$title"
