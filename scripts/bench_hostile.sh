#!/usr/bin/env bash
# Hostile load against a release oca, with the figures docs/RELIABILITY.md
# records: a well-behaved client (keep-alive, ~200 requests/s, plus a new
# connection every tenth request) for a calm phase, then under 10,000 slowloris
# connections, 3,000 idle connections (together past a 12,000-connection cap),
# 200 readers that stall, 20 pipelines 500 deep and 200 resets a second.
#
#   scripts/bench_hostile.sh [oca-bench hostile options...] [--results FILE]
#
# --results FILE: the report as JSON with the options, the date, the machine,
# this command line and the oca configuration (docs/RELIABILITY.md's table is
# rendered from such files by bench/run.py --render).
set -euo pipefail
invocation="scripts/bench_hostile.sh${*:+ $*}"
results=""
prev=""
for a in "$@"; do
    [ "$prev" = "--results" ] && results="$a"
    prev="$a"
done
cd "$(dirname "$0")/.."
cargo build --release --locked -p oca -p bench >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/oca-hostile.XXXXXX")
oca_pid=""
trap '[ -n "$oca_pid" ] && kill "$oca_pid" 2>/dev/null; rm -rf "$work"' EXIT
mkdir -p "$work/disk/objects/titles/x"
head -c 1000000 /dev/urandom > "$work/disk/objects/titles/x/seg.m4s"
head -c 50000000 /dev/urandom > "$work/disk/objects/titles/x/big.m4s"
cat > "$work/oca.toml" <<TOML
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["$work/disk"]
access = "open"
max_connections = 12000
open_file_cache = 256
TOML
OCA_LOG=error target/release/oca --config "$work/oca.toml" > "$work/banner" &
oca_pid=$!
for _ in $(seq 100); do grep -q listening "$work/banner" 2>/dev/null && break; sleep 0.1; done
http=$(grep -o 'http=[^ ]*' "$work/banner" | cut -d= -f2)
[ -n "$http" ] || { echo "oca did not start" >&2; exit 1; }
# Defaults (10,000 slowloris, 3,000 idle, 200 stalled, 20 x 500 pipelined, 200
# resets/s) unless given; e.g. --flood 0 stays under the cap.
target/release/oca-bench hostile --server-pid "$oca_pid" \
    --url "http://$http/titles/x/seg.m4s" --big-url "http://$http/titles/x/big.m4s" "$@"
if [ -n "$results" ]; then
    python3 bench/figures/data.py annotate "$results" --via "$invocation" --server-config "$work/oca.toml"
fi
