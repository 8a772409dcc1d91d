#!/usr/bin/env bash
# Render RUN_DIR/report.html in headless Chromium and save a full-page screenshot to look at.
#   scripts/check_report_render.sh [RUN_DIR] [OUT_PNG]     (default: runs/demo, RUN_DIR/report.png)
# Needs a Chromium binary (Debian: apt-get install chromium). The page loads nothing from the
# network, so the screenshot shows exactly what a reader sees offline.
set -euo pipefail
run=${1:-runs/demo}
png=${2:-$run/report.png}
page=$(cd "$run" && pwd)/report.html
[ -f "$page" ] || { echo "$page: not found; run \`originprobe report $run\` first" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no chromium/google-chrome on PATH" >&2; exit 2; }
"$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1300,6000 \
    --screenshot="$png" "file://$page" >/dev/null 2>&1
python3 - "$png" <<'PY'
import struct, sys
with open(sys.argv[1], "rb") as f:
    head = f.read(24)
assert head[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", head[16:24])
print(f"wrote {sys.argv[1]} ({w}x{h})")
PY
