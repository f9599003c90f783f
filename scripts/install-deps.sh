#!/usr/bin/env bash
# Install the system packages faultline's LTTng comparison harness needs:
# babeltrace2, lttng-tools, liblttng-ust-dev, a C toolchain (gcc, pkg-config), and strace and
# ltrace (record --libc tests and bench --libc compare against them).
#
# Idempotent and non-interactive. Runs apt-get update only when a package is
# missing. Uses sudo only when not already root. Exits 0 when everything is present.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(babeltrace2 lttng-tools liblttng-ust-dev gcc libc6-dev pkg-config strace ltrace)

is_installed() {
    local status
    status=$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)
    [[ "$status" == "installed" ]]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! is_installed "$pkg"; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-deps: all present: ${PACKAGES[*]}"
    exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1; then
    SUDO=(sudo -n env DEBIAN_FRONTEND=noninteractive)
else
    echo "install-deps: missing ${missing[*]}, not root and sudo not available" >&2
    exit 1
fi

echo "install-deps: installing: ${missing[*]}"
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 update -q
"${SUDO[@]}" apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"

still_missing=()
for pkg in "${missing[@]}"; do
    if ! is_installed "$pkg"; then
        still_missing+=("$pkg")
    fi
done
if [[ ${#still_missing[@]} -ne 0 ]]; then
    echo "install-deps: failed to install: ${still_missing[*]}" >&2
    exit 1
fi
echo "install-deps: installed: ${missing[*]}"
