#!/usr/bin/env bash
# Regenerate docs/images/replay-report.png: the replay report of the CUPS study log (imported with
# `tactful log import-cups`, replayed with the shipped default and a fixed 0.8 threshold), taken
# with headless Chromium. Run it after changing server/tactful/replay/html.py or plots.py.
#
#   scripts/screenshot-replay.sh [--out PNG] [--data CUPS_EVENTS] [--full] [--webview]
#
#   --out      where the PNG goes (default docs/images/replay-report.png)
#   --data     the CUPS events (default ../shared/data/cups_copilot/cups_events.jsonl.gz)
#   --full     the whole page at full scale (for looking at it), not the top 900x1040 CSS px at
#              0.8 scale kept in the README
#   --webview  as VS Code's webview shows it: its default styles and a dark theme injected, a
#              content security policy that allows no script and nothing from outside, 760 px wide
#
# Needs the project's venv (scripts/setup.sh) and Chromium (scripts/install-vscode-e2e.sh, or
# CHROMIUM=/path/to/chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
out="$root/docs/images/replay-report.png"
data="$root/../shared/data/cups_copilot/cups_events.jsonl.gz"
full=0
webview=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --data) data=$(realpath -m "$2"); shift 2 ;;
    --full) full=1; shift ;;
    --webview) webview=1; shift ;;
    *) echo "screenshot-replay.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
chromium=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || echo /usr/bin/chromium)}
[ -x "$chromium" ] || { echo "screenshot-replay.sh: no Chromium at $chromium (set CHROMIUM)" >&2; exit 1; }
[ -f "$data" ] || { echo "screenshot-replay.sh: no CUPS events at $data (use --data)" >&2; exit 1; }
py="$root/.venv/bin/python"
[ -x "$py" ] || { echo "screenshot-replay.sh: no venv, run scripts/setup.sh" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Run in the temporary folder so that the page names the log cups.sqlite3, not a random path.
(
  cd "$tmp"
  "$root/.venv/bin/tactful" log import-cups "$data" --out cups.sqlite3 >/dev/null
  "$root/.venv/bin/tactful" replay --log cups.sqlite3 --threshold 0.8 --html report.html --quiet >/dev/null 2>"$tmp/replay.log" \
    || { cat "$tmp/replay.log" >&2; exit 1; }
)
page="$tmp/report.html"
width=900
height=1040
scale=0.8
if [ "$webview" = 1 ]; then
  width=760
  "$py" - "$tmp/report.html" "$tmp/webview.html" <<'EOF'
import sys
# What VS Code puts before an extension's HTML in a webview (dark theme variables, its default
# styles) and a policy that blocks scripts and any outside resource, as a strict extension would.
head = """<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<style id="_defaultStyles">
:root{--vscode-editor-foreground:#cccccc;--vscode-editor-background:#1e1e1e;--vscode-font-family:system-ui,sans-serif;
--vscode-font-size:13px;--vscode-textPreformat-foreground:#d7ba7d;--vscode-textPreformat-background:rgba(255,255,255,.1);
--vscode-textLink-foreground:#3794ff}
html{background:var(--vscode-editor-background)}
body{background-color:transparent;color:var(--vscode-editor-foreground);font-family:var(--vscode-font-family);
font-size:var(--vscode-font-size);margin:0;padding:0 20px}
code{color:var(--vscode-textPreformat-foreground);background-color:var(--vscode-textPreformat-background);padding:1px 3px;border-radius:4px}
a,a code{color:var(--vscode-textLink-foreground)}
</style>"""
src, dst = sys.argv[1], sys.argv[2]
text = open(src, encoding="utf-8").read()
open(dst, "w", encoding="utf-8").write(text.replace("<head>", "<head>" + head, 1))
EOF
  page="$tmp/webview.html"
fi
if [ "$full" = 1 ]; then
  height=4000
  scale=1
fi
mkdir -p "$(dirname "$out")"
# At 0.8 device pixels per CSS pixel the README's PNG stays under 150 KB and readable.
"$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor="$scale" \
  --window-size="$width,$height" --screenshot="$out" "file://$page" >"$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log" >&2; exit 1; }
[ -s "$out" ] || { cat "$tmp/chromium.log" >&2; echo "screenshot-replay.sh: Chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $out ($(stat -c %s "$out") bytes; ${width}x${height} CSS px at scale $scale)"
