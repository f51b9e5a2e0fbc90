#!/usr/bin/env bash
# Renders a report.html (or training_curves.svg) in headless Chromium and saves
# a PNG, to look at the report as a browser shows it.
#   bash scripts/tools/screenshot-report.sh model/report.html docs/report-example.png [WIDTH HEIGHT]
# Needs Debian's chromium (apt-get install -y chromium). Runs offline: a fresh
# profile, no network services, nothing the page could fetch (it fetches nothing).
set -euo pipefail
page=${1:?usage: screenshot-report.sh PAGE.html OUT.png [WIDTH HEIGHT]}
out=${2:?usage: screenshot-report.sh PAGE.html OUT.png [WIDTH HEIGHT]}
width=${3:-1040}
height=${4:-2400}
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
  echo "screenshot-report.sh: no chromium on PATH (Debian: apt-get install -y chromium)" >&2
  exit 1
fi
[ -f "$page" ] || { echo "screenshot-report.sh: $page does not exist" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
  --disable-sync --no-first-run --user-data-dir="$profile" --hide-scrollbars --force-device-scale-factor=1 \
  --window-size="$width,$height" --screenshot="$out" "file://$(realpath "$page")" 2>/dev/null
[ -s "$out" ] || { echo "screenshot-report.sh: chromium wrote no picture" >&2; exit 1; }
echo "$out"
