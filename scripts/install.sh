#!/usr/bin/env bash
# Install oca, fill-agent and steering for systemd, without cargo on the target:
# binaries to /usr/bin, units to /lib/systemd/system, example configs to
# /etc/oca and /etc/steering (an existing config is never overwritten), docs to
# /usr/share/doc/oca-stack, and the system users `oca` and `steering`.
#
#   scripts/install.sh                    build (release) and install on this machine
#   scripts/install.sh --destdir DIR      stage the same tree under DIR (packaging;
#                                         no users, no systemctl)
#   scripts/install.sh --bin-dir DIR      take the binaries from DIR instead of building
#
# Units are installed but not enabled: edit the configs, then
#   systemctl enable --now oca fill-agent      (an appliance)
#   systemctl enable --now steering            (the control plane)
set -euo pipefail
cd "$(dirname "$0")/.."

destdir=""
bin_dir=""
while (($#)); do
    case "$1" in
        --destdir) destdir="${2:?--destdir needs a directory}"; shift 2 ;;
        --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done

if [ -z "$bin_dir" ]; then
    cargo build --release --locked -p oca -p fill-agent -p steering
    bin_dir="${CARGO_TARGET_DIR:-target}/release"
fi
for b in oca fill-agent steering; do
    [ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing; build it first" >&2; exit 1; }
done

root="${destdir%/}"
install -d -m 0755 "$root/usr/bin" "$root/lib/systemd/system" "$root/usr/lib/sysusers.d" \
    "$root/usr/share/doc/oca-stack/examples"
for b in oca fill-agent steering; do
    install -m 0755 "$bin_dir/$b" "$root/usr/bin/$b"
done
for u in oca fill-agent steering; do
    install -m 0644 "systemd/$u.service" "$root/lib/systemd/system/$u.service"
done
install -m 0644 systemd/oca-stack.sysusers "$root/usr/lib/sysusers.d/oca-stack.conf"
install -d -m 0755 "$root/usr/lib/oca-stack"
install -m 0755 systemd/oca-stack-setup "$root/usr/lib/oca-stack/setup"
for d in README.md docs/OPERATIONS.md docs/STEERING.md; do
    [ -f "$d" ] && install -m 0644 "$d" "$root/usr/share/doc/oca-stack/"
done
for c in oca.toml fill-agent.toml steering.toml; do
    install -m 0644 "systemd/$c" "$root/usr/share/doc/oca-stack/examples/$c"
done

# Configs: an operator's edits always survive a reinstall or upgrade.
config() { # FILE DIR
    local target="$root/etc/$2/$1"
    install -d -m 0750 "$root/etc/$2"
    if [ -e "$target" ]; then
        echo "kept $target (the new example is in /usr/share/doc/oca-stack/examples/$1)"
    else
        install -m 0640 "systemd/$1" "$target"
        echo "installed $target: edit it before starting the service"
    fi
}
config oca.toml oca
config fill-agent.toml oca
config steering.toml steering

if [ -n "$destdir" ]; then
    echo "staged under $destdir"
    exit 0
fi

/usr/lib/oca-stack/setup
echo "installed; next: edit /etc/oca/*.toml (or /etc/steering/steering.toml), mount disks under /srv/oca, then"
echo "  systemctl enable --now oca fill-agent     # an appliance"
echo "  systemctl enable --now steering           # the control plane"
