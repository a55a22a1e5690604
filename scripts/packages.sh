# Sourced by scripts/test.sh and scripts/lab.sh: installs the Debian packages
# they use when missing. Needs root (apt-get). Quiet: apt's output goes to
# target/install.log and one line says what is being installed.
#
# Nothing installed here is left running or enabled at boot: a policy-rc.d
# keeps the packages' services from starting during the install, and every
# systemd unit the install enabled (bird.service, nginx.service) is disabled
# again. Tests and the lab start their own bird and nginx, on loopback, with
# their own configs.

# install_missing COMMAND:PACKAGE... : install PACKAGE where COMMAND is not on
# the PATH. The command decides, not dpkg: a tool may come from elsewhere (npm
# inside NodeSource's nodejs package, say), and asking apt for Debian's package
# then would conflict with it.
install_missing() {
    local missing=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
    done
    ((${#missing[@]})) || return 0
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]}; run as root (or: apt-get install ${missing[*]})" >&2
        return 1
    fi
    mkdir -p target
    local log=target/install.log policy=/usr/sbin/policy-rc.d own_policy=0 before status=0
    echo "installing ${missing[*]} (log: $log)"
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\n# scripts/packages.sh: do not start services while installing\nexit 101\n' >"$policy"
        chmod +x "$policy"
        own_policy=1
    fi
    before=$(enabled_units)
    {
        apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    } >>"$log" 2>&1 || status=$?
    ((own_policy)) && rm -f "$policy"
    if ((status)); then
        echo "installing ${missing[*]} failed (apt-get exit $status); the end of $log:" >&2
        tail -n 20 "$log" >&2
        return "$status"
    fi
    local unit
    for unit in $(comm -13 <(echo "$before") <(enabled_units)); do
        systemctl disable --quiet "$unit" >>"$log" 2>&1 || true
        echo "disabled $unit (enabled by the install)" >>"$log"
    done
}

# Units enabled at boot, one name a line.
enabled_units() {
    find /etc/systemd/system -path '*.wants/*' -printf '%f\n' 2>/dev/null | sort -u
}
