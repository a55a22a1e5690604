#!/usr/bin/env bash
# Boot the shipped units under a real systemd and check that they work as
# installed: sandbox and all. systemd runs as PID 1 of private PID, mount, UTS,
# IPC and cgroup namespaces (as in a container), with
# - only the host's targets and slices as units (no host service can start:
#   no tmpfiles, sysctl, udev, getty...), no generators;
# - private /run, /tmp, /var/lib, /var/cache, /var/log and /srv (tmpfs), with
#   the test's work directory bound back at its path, so a checkout may live
#   under any of them;
# - /etc and /usr/bin as overlays: the package's users, configs and binaries
#   exist only inside;
# - the host's network namespace (loopback, ports chosen by the kernel).
#
#   tests/systemd/boot-test.sh BIN_DIR
#
# Prints what it checks; exits non-zero at the first failure. Everything it
# started dies with the namespace's PID 1 on exit.
set -euo pipefail
bin_dir=$(realpath "${1:?usage: boot-test.sh BIN_DIR}")
[ "$(id -u)" = 0 ] || { echo "boot-test: needs root (namespaces, mounts, PID 1)" >&2; exit 1; }
for c in unshare nsenter systemd-sysusers curl; do
    command -v "$c" >/dev/null || { echo "boot-test: needs $c" >&2; exit 1; }
done
[ -x /lib/systemd/systemd ] || { echo "boot-test: needs systemd (/lib/systemd/systemd)" >&2; exit 1; }
repo=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$repo/target/tmp"
work=$(mktemp -d "$repo/target/tmp/boot.XXXXXX")
init=""
# systemd makes cgroups under the namespace's cgroup root, which is the host's
# root where this runs in the root cgroup: note what exists, remove what it adds.
cgroups_before=$(find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | sort)
cleanup() {
    [ -n "$init" ] && kill -9 "$init" 2>/dev/null || true
    # The namespace's mounts go with it; what is left is plain files.
    for _ in $(seq 50); do [ -n "$init" ] && kill -0 "$init" 2>/dev/null || break; sleep 0.1; done
    comm -13 <(echo "$cgroups_before") <(find /sys/fs/cgroup -mindepth 2 -type d 2>/dev/null | sort) |
        sort -r | while read -r d; do rmdir "$d" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 143' TERM INT
say() { echo "boot-test: $*"; }
# Commands inside the namespace of PID 1 (once it runs).
inside() { nsenter -t "$init" -m -p -- "$@"; }
ctl() { inside systemctl --no-pager "$@"; }
fail() {
    echo "boot-test: FAILED: $*" >&2
    [ -z "$init" ] || ctl status -l steering oca fill-agent >&2 || true
    echo "--- console:" >&2; tail -n 60 "$work/console.log" >&2 || true
    exit 1
}

# The package's tree, and the units systemd will see.
"$repo/scripts/install.sh" --destdir "$work/root" --bin-dir "$bin_dir" >/dev/null
mkdir -p "$work/units" "$work/empty" "$work/etc-up" "$work/etc-wk" "$work/bin-up" "$work/bin-wk"
cp -a /usr/lib/systemd/system/*.target /usr/lib/systemd/system/*.slice "$work/units/"
cp "$work/root/lib/systemd/system/"*.service "$work/units/"
cat > "$work/units/boot-test.target" <<'EOF'
[Unit]
Description=oca boot test
Wants=steering.service
After=steering.service
EOF
# Output where the test reads it; a short watchdog for oca, so a wedge is
# seen within seconds.
touch "$work/console.log"
for u in oca fill-agent steering; do
    mkdir -p "$work/units/$u.service.d"
    printf '[Service]\nStandardOutput=append:%s\nStandardError=inherit\n' "$work/console.log" \
        > "$work/units/$u.service.d/output.conf"
done
printf '[Service]\nWatchdogSec=3s\nTimeoutAbortSec=1s\nRestartSec=500ms\n' > "$work/units/oca.service.d/boot-test.conf"

# Test configs (steering first: oca's needs its port).
mkdir -p "$work/cfg"
cat > "$work/cfg/steering.toml" <<'EOF'
listen = "127.0.0.1:0"
database = "/var/lib/steering/steering.db"
[health]
interval = "500ms"
[[appliance]]
id = "boot-1"
credential = "boot-test-credential-0123456789"
tier = "embedded"
site = "isp-a"
region = "eu-west"
capacity_bps = 10000000000
# Replaced by what oca reports when it registers (its bound admin address).
admin_url = "http://127.0.0.1:9"
EOF

cat > "$work/inside.sh" <<EOF
set -euo pipefail
mount --make-rprivate /
# PID 1 writes to /dev/console: here, that is the test's log.
mount --bind "$work/console.log" /dev/console
# The work directory may lie under a directory masked next (a checkout in /tmp
# or /srv): hold it open, mask, then bind it back at the same path (systemd and
# this script name files in it). --no-canonicalize: resolved, the fd's path
# would name the empty directory in the tmpfs.
exec 3<"$work"
for d in /run /tmp /var/tmp /var/lib /var/cache /var/log /srv; do mount -t tmpfs -o mode=0755 tmpfs "\$d"; done
chmod 1777 /tmp /var/tmp
mkdir -p "$work"
mount --no-canonicalize --bind /proc/self/fd/3 "$work"
exec 3<&-
mount --bind "$work/units" /usr/lib/systemd/system
mount --bind "$work/empty" /usr/lib/systemd/system-generators
mount -t tmpfs tmpfs /etc/systemd/system
mount -t overlay overlay -o lowerdir=/etc,upperdir="$work/etc-up",workdir="$work/etc-wk" /etc
mount -t overlay overlay -o lowerdir=/usr/bin,upperdir="$work/bin-up",workdir="$work/bin-wk" /usr/bin
cp "$work/root/usr/bin/"* /usr/bin/
mkdir -p /usr/lib/sysusers.d
systemd-sysusers "$work/root/usr/lib/sysusers.d/oca-stack.conf"
cp -a "$work/root/etc/oca" "$work/root/etc/steering" /etc/
cp "$work/cfg/steering.toml" /etc/steering/steering.toml
chgrp -R oca /etc/oca; chgrp -R steering /etc/steering
mkdir -p /srv/oca/disk0/objects/titles/t1
head -c 100000 /dev/urandom > /srv/oca/disk0/objects/titles/t1/seg-00001.m4s
chown -R oca:oca /srv/oca
exec env container=oca-boot-test /lib/systemd/systemd --system --unit=boot-test.target \\
    --log-target=console --log-level=notice --show-status=no --default-standard-output=inherit
EOF
unshare --fork --pid --mount --uts --ipc --cgroup --mount-proc bash "$work/inside.sh" \
    >> "$work/console.log" 2>&1 &
unshare_pid=$!
# PID 1 of the namespace: the child of unshare.
for _ in $(seq 100); do
    init=$(pgrep -P "$unshare_pid" | head -1 || true)
    [ -n "$init" ] && [ "$(cat /proc/"$init"/comm 2>/dev/null)" = systemd ] && break
    init=""; sleep 0.1
done
[ -n "$init" ] || fail "systemd did not start"
# Wait for a condition with a deadline (seconds).
until_ok() { # SECONDS WHAT COMMAND...
    local deadline=$((SECONDS + $1)) what="$2"; shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
        sleep 0.2
    done
}
prop() { ctl show -P "$2" "$1"; }
active() { [ "$(ctl is-active "$1")" = active ]; }
banner() { grep -o "$1 listening [^ ]*" "$work/console.log" | tail -1 | sed 's/.*http=//'; }

until_ok 30 "systemd's control socket" ctl list-units
for u in oca fill-agent steering; do
    inside systemd-analyze verify "/usr/lib/systemd/system/$u.service" || fail "verify $u"
done
say "units verify inside the booted system"
# Exposure scores (0 = locked down, 10 = unprotected) of the units as loaded.
inside systemd-analyze security --no-pager oca.service fill-agent.service steering.service |
    tail -n 4 | sed 's/^/boot-test: security: /'

until_ok 30 "steering active" active steering
steering=$(banner steering)
[ -n "$steering" ] || fail "no steering banner"
say "steering active (Type=notify: ready once listening) at $steering; status: $(prop steering StatusText)"

cat > "$work/oca.toml" <<EOF
listen = ["127.0.0.1:0"]
admin_listen = "127.0.0.1:0"
stores = ["/srv/oca/disk0"]
access = "open"
fill_status = "/var/lib/fill-agent/status.json"
shutdown_grace = "5s"
[control]
url = "http://$steering"
appliance_id = "boot-1"
credential = "boot-test-credential-0123456789"
tier = "embedded"
site = "isp-a"
region = "eu-west"
EOF
inside sh -c "cat > /etc/oca/oca.toml" < "$work/oca.toml"
ctl start oca || fail "systemctl start oca"
active oca || fail "oca not active after start"
http=$(banner oca)
say "oca active at $http; status: $(prop oca StatusText)"
prop oca StatusText | grep -q "1 objects" || fail "oca status text"
curl -sf -o "$work/seg" "http://$http/titles/t1/seg-00001.m4s" || fail "object through the sandboxed oca"
[ "$(stat -c %s "$work/seg")" = 100000 ] || fail "object size"
say "a viewer request is served by the sandboxed oca (User=$(prop oca User), caps $(prop oca AmbientCapabilities))"
until_ok 30 "steering to see boot-1 up" sh -c "curl -sf http://$steering/v1/appliances | grep -q '\"id\":\"boot-1\".*\"up\":true'"
say "oca registered with steering and is polled healthy"
[ "$(inside stat -c %U:%a /var/lib/oca)" = oca:750 ] || fail "StateDirectory /var/lib/oca: $(inside stat -c %U:%a /var/lib/oca)"
say "StateDirectory /var/lib/oca made for the oca user"

ctl reload oca || fail "systemctl reload oca"
active oca || fail "oca not active after reload"
say "reload (SIGHUP): still active, RELOADING=1/READY=1 handled"

pid=$(prop oca MainPID)
restarts=$(prop oca NRestarts)
inside kill -STOP "$pid"
say "oca (pid $pid in the namespace) stopped with SIGSTOP: the watchdog must fire"
until_ok 30 "the watchdog to restart oca" sh -c "[ \"\$(nsenter -t $init -m -p -- systemctl show -P NRestarts oca)\" -gt $restarts ]"
until_ok 30 "oca active again" active oca
[ "$(prop oca MainPID)" != "$pid" ] || fail "same pid after the watchdog restart"
# A stopped process cannot exit by itself: only the watchdog could end it.
http=$(banner oca)
curl -sf -o /dev/null "http://$http/titles/t1/seg-00001.m4s" || fail "serving after the watchdog restart"
say "watchdog timeout → killed and restarted (NRestarts $(prop oca NRestarts)); serving again at $http"

cat > "$work/fill-agent.toml" <<EOF
stores = ["/srv/oca/disk0"]
oca_admin = "http://$(grep -o 'oca listening.*admin=[^ ]*' "$work/console.log" | tail -1 | sed 's/.*admin=//')"
status_file = "/var/lib/fill-agent/status.json"
headroom_percent = 0
[control]
url = "http://$steering"
appliance_id = "boot-1"
credential = "boot-test-credential-0123456789"
EOF
inside sh -c "cat > /etc/oca/fill-agent.toml" < "$work/fill-agent.toml"
ctl start fill-agent || fail "systemctl start fill-agent"
active fill-agent || fail "fill-agent not active"
until_ok 30 "fill-agent's status file" inside test -s /var/lib/fill-agent/status.json
say "fill-agent active (User=$(prop fill-agent User)); status: $(prop fill-agent StatusText)"

ctl stop fill-agent oca || fail "systemctl stop"
[ "$(prop oca ExecMainStatus)" = 0 ] || fail "oca exit status $(prop oca ExecMainStatus)"
grep -q "draining" "$work/console.log" || fail "oca did not drain"
say "stop: oca drained and exited 0"
ctl stop steering
[ "$(prop steering ExecMainStatus)" = 0 ] || fail "steering exit status"
say "all passed"
