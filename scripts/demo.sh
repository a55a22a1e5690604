#!/usr/bin/env bash
# Build oca and serve a directory of video objects on this machine.
#   scripts/demo.sh            serve generated sample content (a 3-rung ladder of 4 s segments)
#   scripts/demo.sh DIR        serve DIR (a disk root: objects live in DIR/objects/<key>)
# Listens on $OCA_LISTEN (default 127.0.0.1:8080), admin on $OCA_ADMIN (127.0.0.1:9090).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p oca
root="${1:-target/demo-store}"
if [[ $# -eq 0 && ! -d "$root/objects/titles" ]]; then
    echo "generating sample objects in $root"
    for rung in v360:500000 v720:2000000 v1080:5000000; do
        name="${rung%%:*}"; bps="${rung##*:}"
        dir="$root/objects/titles/demo/$name"
        mkdir -p "$dir"
        head -c 1000 /dev/urandom > "$dir/init.mp4"
        for i in $(seq -f %05g 1 15); do
            # 4-second segments at the rung's bitrate.
            head -c $((bps / 2)) /dev/urandom > "$dir/seg-$i.m4s"
        done
    done
fi
listen="${OCA_LISTEN:-127.0.0.1:8080}"
admin="${OCA_ADMIN:-127.0.0.1:9090}"
cat <<MSG
serving $root on http://$listen  (admin http://$admin)
  curl -r 0-1023 http://$listen/titles/demo/v720/seg-00001.m4s | wc -c
  curl http://$admin/health
  curl http://$admin/metrics
Ctrl-C (or SIGTERM) drains and stops.
MSG
# Open access: a local demo has no control plane to sign URLs (see README, "Signed URLs").
exec target/release/oca --store "$root" --listen "$listen" --admin-listen "$admin" --access open
