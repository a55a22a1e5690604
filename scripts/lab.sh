#!/usr/bin/env bash
# The whole stack on this machine, one command: installs what the lab uses if
# missing (ffmpeg, nginx, npm packages for the web player; their output goes to
# target/install.log; needs root for that), builds the binaries (release, with cargo's progress),
# then runs `oca-lab` (steering, an nginx origin, an IXP appliance, two ISPs'
# embedded appliances, an off-peak fill, viewers run as `oca-bench players`).
#
#   scripts/lab.sh [--duration 60s] [--viewers 2] [--fill-rate-bps N]
#   scripts/lab.sh --soak --duration 30m [--sample-every 5s] [--samples FILE]
#   scripts/lab.sh --chaos --duration 5m [--pause 2s..8s] [--down 0s..2s] [--seed N]
#   scripts/lab.sh --regions 2 [--duration 60s] [--results FILE]
#     (steering in two regions on PostgreSQL with a standby, and the failover
#     drills; installs postgresql-15)
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p target
. scripts/packages.sh
# ffmpeg: the test content; nginx-light: the origin; npm: the web player's
# packages. Quiet: one line, apt's output in target/install.log.
install_missing ffmpeg:ffmpeg nginx:nginx-light npm:npm
# --regions 2: PostgreSQL for steering's shared store (run as the postgres
# user through runuser; no system service is enabled).
case " $* " in *" --regions "*|*" --regions="*)
    install_missing /usr/lib/postgresql/15/bin/initdb:postgresql-15 runuser:util-linux ;;
esac
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.installed-lock; then
    echo "installing the web player's npm packages (log: target/install.log)"
    (cd tests/browser && npm ci --no-audit --no-fund >>../../target/install.log 2>&1 &&
        cp package-lock.json node_modules/.installed-lock) ||
        { echo "lab.sh: npm ci failed; see target/install.log" >&2; exit 1; }
fi
# Cargo's own progress (stderr): the first build takes minutes.
cargo build --release --locked -p steering -p oca -p fill-agent -p bench -p lab -p packager
exec target/release/oca-lab "$@"
