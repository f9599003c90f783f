#!/usr/bin/env bash
# Regenerate docs/img/timeline-demo.png, the README's picture of `faultline timeline`: run
# `faultline demo`, write its timeline page, and take a screenshot of the page in headless
# Chromium (Debian's `chromium`, installed by scripts/install-deps.sh; CHROMIUM=path picks
# another). The page loads nothing from the network; neither does the browser here.
#
# Usage: scripts/timeline-screenshot.sh [OUTPUT.png]    (run from anywhere in the repository)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/img/timeline-demo.png}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]]; then
    echo "timeline-screenshot: $chromium not found (scripts/install-deps.sh installs it)" >&2
    exit 1
fi

cargo build --release -q -p faultline-cli --bin faultline --manifest-path "$root/Cargo.toml"
bin=$root/target/release/faultline

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
# A short, fixed workload: 6 threads (more than the CPUs of a small machine), 3,000 loops each.
"$bin" demo -o faultline-demo --threads 6 --iterations 3000 >/dev/null
"$bin" timeline faultline-demo -o faultline-demo.html

timeout 120 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size=1400,560 \
    --screenshot="$work/shot.png" "file://$work/faultline-demo.html" 2>/dev/null
mkdir -p "$(dirname "$out")"
cp "$work/shot.png" "$out"
echo "timeline-screenshot: wrote $out"
