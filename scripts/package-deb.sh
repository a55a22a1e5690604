#!/usr/bin/env bash
# Build a Debian package of the three daemons with their units, example
# configs (as conffiles) and users, from the tree scripts/install.sh stages.
#
#   scripts/package-deb.sh [--bin-dir DIR] [--out DIR]
#
# Without --bin-dir it builds release binaries first. Writes
# OUT/oca-stack_<version>_<arch>.deb (OUT defaults to target/deb) and prints
# its path. Install on an appliance or the control plane with
#   apt install ./oca-stack_<version>_<arch>.deb
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir=""
out="${CARGO_TARGET_DIR:-target}/deb"
while (($#)); do
    case "$1" in
        --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift 2 ;;
        --out) out="${2:?--out needs a directory}"; shift 2 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "package-deb.sh: unknown argument $1 (see --help)" >&2; exit 64 ;;
    esac
done
command -v dpkg-deb >/dev/null || { echo "package-deb.sh: needs dpkg-deb (Debian)" >&2; exit 1; }

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
args=(--destdir "$stage")
[ -n "$bin_dir" ] && args+=(--bin-dir "$bin_dir")
scripts/install.sh "${args[@]}" >/dev/null
# Debian ships stripped binaries (debug info would triple the package).
if command -v strip >/dev/null; then
    strip --strip-unneeded "$stage"/usr/bin/{oca,fill-agent,steering}
fi

install -d -m 0755 "$stage/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: oca-stack
Version: $version
Architecture: $arch
Maintainer: oca-stack maintainers <oca-stack@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.34)
Recommends: systemd
Section: net
Priority: optional
Description: open video edge delivery: appliance daemon, fill agent, control plane
 oca serves immutable video objects and byte ranges over HTTP/1.1 and TLS with
 signed URLs, health and Prometheus metrics, graceful drain and a passive BGP
 listener; fill-agent pre-positions content off-peak; steering authorises
 plays, steers viewers to appliances and plans fills. Units are installed but
 not enabled: edit /etc/oca or /etc/steering first (see OPERATIONS.md).
CONTROL
(cd "$stage" && find etc -type f | sed 's|^|/|') > "$stage/DEBIAN/conffiles"
cat > "$stage/DEBIAN/postinst" <<'POSTINST'
#!/bin/sh
set -e
if [ "$1" = configure ]; then
    /usr/lib/oca-stack/setup
    if [ -d /run/systemd/system ]; then
        # An upgrade restarts what was running: oca drains first (SIGTERM).
        for u in oca fill-agent steering; do
            if systemctl is-active --quiet "$u"; then systemctl restart "$u"; fi
        done
    fi
fi
POSTINST
cat > "$stage/DEBIAN/prerm" <<'PRERM'
#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop fill-agent oca steering 2>/dev/null || true
    systemctl disable fill-agent oca steering 2>/dev/null || true
fi
PRERM
cat > "$stage/DEBIAN/postrm" <<'POSTRM'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi
POSTRM
chmod 0755 "$stage/DEBIAN/postinst" "$stage/DEBIAN/prerm" "$stage/DEBIAN/postrm"
mkdir -p "$out"
deb="$out/oca-stack_${version}_${arch}.deb"
# gzip: every dpkg reads it, and it packs in seconds rather than minutes.
dpkg-deb --root-owner-group -Zgzip --build "$stage" "$deb" >/dev/null
echo "$deb"
