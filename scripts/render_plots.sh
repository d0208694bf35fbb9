#!/usr/bin/env bash
# Render `dvc plots diff REV…` offline and take a screenshot, to look at what users see.
#
#   scripts/render_plots.sh drop3 cosine deep2      # -> reports/plots/index.html + screenshot.png
#
# The page DVC writes loads Vega from a CDN; here the same versions (vega 5.20.2, vega-lite 5.2.0,
# vega-embed 6.18.2, as dvc-render pins them) come from npm into ~/.cache/bertclf/vega, and
# Debian's Chromium renders the page headless. Needs npm and chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
out=reports/plots
vega="${XDG_CACHE_HOME:-$HOME/.cache}/bertclf/vega"
if [ ! -f "$vega/node_modules/vega-embed/build/vega-embed.min.js" ]; then
    mkdir -p "$vega"
    (cd "$vega" && npm init -y >/dev/null && npm install --legacy-peer-deps --no-audit --no-fund \
        vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2 >/dev/null)
fi
template=$(mktemp --suffix=.html)
trap 'rm -f "$template"' EXIT
{
    echo '<!DOCTYPE html><html><head><title>DVC Plot</title>'
    for lib in vega/build/vega vega-lite/build/vega-lite vega-embed/build/vega-embed; do
        echo "<script src=\"file://$vega/node_modules/$lib.min.js\"></script>"
    done
    echo '<style>table { border-spacing: 15px; }</style></head><body>{plot_divs}</body></html>'
} > "$template"
PATH="$PWD/.venv/bin:$PATH" dvc plots diff "$@" -o "$out" --html-template "$template"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
    --disable-component-update --disable-sync --user-data-dir="$(mktemp -d)" --allow-file-access-from-files \
    --virtual-time-budget=10000 --window-size=1500,2400 --screenshot="$out/screenshot.png" \
    "file://$PWD/$out/index.html" 2>/dev/null
echo "$out/index.html, $out/screenshot.png"
