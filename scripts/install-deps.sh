#!/usr/bin/env bash
# Install the system packages faultline's tests need: babeltrace2, lttng-tools,
# liblttng-ust-dev and a C toolchain (gcc, pkg-config) for the LTTng comparison harness; g++
# for the record --libc test of C++ exceptions; chromium (headless) for the timeline page's
# browser tests and scripts/timeline-screenshot.sh
# (those tests install their Node.js packages, playwright-core and speedscope, into the build
# directory with npm, and skip with a message where Chromium or npm is missing); strace and
# ltrace, which the record --libc tests and `faultline bench --libc` compare against; iproute2
# (ip netns, tc) for the relay tests that simulate several hosts and a slow link; Node.js and
# npm for those browser tests (playwright-core wants Node.js >= 20): any `node` and `npm` on
# PATH will do, Debian's packages are installed only when one is missing (Debian's npm
# conflicts with a Node.js from elsewhere, which bundles its own npm).
#
# Idempotent and non-interactive. Runs apt-get update only when a package is
# missing. Uses sudo only when not already root. Exits 0 when everything is present.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive

PACKAGES=(babeltrace2 lttng-tools liblttng-ust-dev gcc g++ libc6-dev pkg-config chromium strace ltrace iproute2)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi

node_note() {
    local major
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    if [[ "$major" -lt 20 ]]; then
        echo "install-deps: note: Node.js $(node --version 2>/dev/null || echo missing) is older than 20;" \
            "the timeline/speedscope browser tests need Node.js >= 20 (playwright-core)" >&2
    fi
}

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
    node_note
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
node_note
