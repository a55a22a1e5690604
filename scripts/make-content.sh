#!/usr/bin/env bash
# Make real packaged test content with ffmpeg (installed from Debian if missing):
# a 3-rendition H.264/AAC ladder (360p, 540p, 720p) with 4-second segments,
# packaged as HLS (fMP4, multivariant + media playlists) and DASH, plus the
# title.toml sidecar steering's catalog import reads.
#
#   scripts/make-content.sh OUT [TITLE_ID] [SECONDS]
#
# Writes OUT/titles/TITLE_ID/{title.toml, master.m3u8, v360/, v540/, v720/, dash/}.
set -euo pipefail
out="${1:?usage: make-content.sh OUT [TITLE_ID] [SECONDS]}"
title="${2:-t1}"
secs="${3:-12}"
if ! command -v ffmpeg >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg
fi
dir="$out/titles/$title"
mkdir -p "$dir"
cd "$dir"
src=(-f lavfi -i "testsrc2=size=1280x720:rate=25:duration=$secs" -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$secs")
ladder=(-filter_complex "[0:v]split=3[a][b][c];[a]scale=640:360[v360];[b]scale=960:540[v540];[c]null[v720]"
    -map "[v360]" -map 1:a -map "[v540]" -map 1:a -map "[v720]" -map 1:a
    -c:v libx264 -preset veryfast -profile:v main -g 100 -keyint_min 100 -sc_threshold 0
    -b:v:0 500k -b:v:1 1200k -b:v:2 2500k -c:a aac -b:a 96k -ac 2)
# HLS: one directory per rendition, fMP4 segments of 4 s.
ffmpeg -hide_banner -loglevel error -y "${src[@]}" "${ladder[@]}" \
    -f hls -hls_time 4 -hls_playlist_type vod -hls_segment_type fmp4 \
    -hls_fmp4_init_filename init.mp4 -hls_segment_filename "v%v/seg-%05d.m4s" \
    -master_pl_name master.m3u8 -var_stream_map "v:0,a:0,name:360 v:1,a:1,name:540 v:2,a:2,name:720" \
    "v%v/index.m3u8"
# DASH: the same three video rungs and one audio track, 4 s segments, each
# representation in a directory of its own (dash/r0 ... dash/r3), which is what
# steering's catalog and the appliances' per-directory inventory expect.
mkdir -p dash/r0 dash/r1 dash/r2 dash/r3
ffmpeg -hide_banner -loglevel error -y "${src[@]}" \
    -filter_complex "[0:v]split=3[a][b][c];[a]scale=640:360[v360];[b]scale=960:540[v540];[c]null[v720]" \
    -map "[v360]" -map "[v540]" -map "[v720]" -map 1:a \
    -c:v libx264 -preset veryfast -profile:v main -g 100 -keyint_min 100 -sc_threshold 0 \
    -b:v:0 500k -b:v:1 1200k -b:v:2 2500k -c:a aac -b:a 96k -ac 2 \
    -f dash -seg_duration 4 -use_template 1 -use_timeline 0 \
    -init_seg_name 'r$RepresentationID$/init.m4s' -media_seg_name 'r$RepresentationID$/chunk-$Number%05d$.m4s' \
    dash/manifest.mpd
cat > title.toml <<TOML
name = "Test pattern $title"
regions = ["eu-west", "us-east"]
TOML
echo "wrote $dir"
