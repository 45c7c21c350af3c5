#!/usr/bin/env bash
# Install everything the VS Code extension's build and its end-to-end test need, into the
# project-local, git-ignored folder .tools/ (system packages through apt):
#
#   apt      chromium (headless browser for Playwright), libkrb5-dev (code-server's kerberos build)
#   .tools/node24        Node 24 from the npm package node@24 (code-server 4.139 and vsce need >= 22)
#   .tools/code-server   code-server 4.139.1 (VS Code 1.139.1) from npm
#   vscode-client/node_modules   the extension's npm deps (vscode-languageclient, typescript,
#                                eslint, @vscode/vsce, playwright-core), from package-lock.json
#
# Idempotent: each step checks what is there and is skipped when already done, so a second
# run takes about a second. Usage: scripts/install-vscode-e2e.sh [--no-code-server]
# (--no-code-server: only what compile/lint/package need: Node 24 and the extension's deps).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
TOOLS="${TACTFUL_TOOLS_DIR:-$ROOT/.tools}"
NODE_DIR="$TOOLS/node24"
CS_DIR="$TOOLS/code-server"
CS_VERSION="4.139.1"
EXT="$ROOT/vscode-client"
WITH_CODE_SERVER=1
[[ "${1:-}" == "--no-code-server" ]] && WITH_CODE_SERVER=0

say() { echo "install-vscode-e2e: $*"; }
need_cmd() {
    command -v "$1" >/dev/null 2>&1 || {
        say "'$1' is required but not on PATH ($2)" >&2
        exit 1
    }
}
need_cmd npm "install Node.js with npm (any version >= 18) first; it only bootstraps Node 24"

# --- 1. system packages ------------------------------------------------------------------------
if [[ $WITH_CODE_SERVER == 1 ]]; then
    missing=()
    for pkg in chromium libkrb5-dev; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if ((${#missing[@]})); then
        SUDO=()
        [[ "$(id -u)" != 0 ]] && SUDO=(sudo)
        say "apt-get install ${missing[*]}"
        "${SUDO[@]}" apt-get update -qq
        DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

# --- 2. Node 24 ----------------------------------------------------------------------------------
NODE="$NODE_DIR/node_modules/.bin/node"
if [[ ! -x "$NODE" ]] || [[ "$("$NODE" --version 2>/dev/null)" != v24.* ]]; then
    say "npm install node@24 into $NODE_DIR"
    mkdir -p "$NODE_DIR"
    [[ -f "$NODE_DIR/package.json" ]] || echo '{"name": "tactful-node24", "private": true}' >"$NODE_DIR/package.json"
    (cd "$NODE_DIR" && npm install --no-audit --no-fund --loglevel=error node@24 >/dev/null)
fi
"$NODE" --version >/dev/null
export PATH="$NODE_DIR/node_modules/.bin:$PATH"
# Native modules (code-server's) build against Node 24's own headers, shipped in the package.
# (Otherwise node-gyp would download them, and only the npm registry is reachable.)
for d in "$NODE_DIR"/node_modules/node/node_modules/node-*-* "$NODE_DIR"/node_modules/node-*-*; do
    if [[ -f "$d/include/node/node.h" ]]; then
        export npm_config_nodedir="$d"
        break
    fi
done

# --- 3. code-server ------------------------------------------------------------------------------
if [[ $WITH_CODE_SERVER == 1 ]]; then
    STAMP="$CS_DIR/.installed-$CS_VERSION"
    if [[ ! -f "$STAMP" || ! -x "$CS_DIR/node_modules/.bin/code-server" ]]; then
        say "npm install code-server@$CS_VERSION into $CS_DIR (compiles native modules: about 2 minutes)"
        mkdir -p "$CS_DIR"
        [[ -f "$CS_DIR/package.json" ]] || echo '{"name": "tactful-code-server", "private": true}' >"$CS_DIR/package.json"
        (cd "$CS_DIR" && npm install --no-audit --no-fund --loglevel=error --foreground-scripts "code-server@$CS_VERSION" >"$CS_DIR/install.log" 2>&1) || {
            tail -40 "$CS_DIR/install.log" >&2
            say "code-server install failed (full log: $CS_DIR/install.log)" >&2
            exit 1
        }
        touch "$STAMP"
    fi
fi

# --- 4. the extension's npm dependencies -----------------------------------------------------------
LOCK="$EXT/package-lock.json"
EXT_STAMP="$EXT/node_modules/.tactful-installed"
if [[ ! -f "$EXT_STAMP" ]] || [[ "$LOCK" -nt "$EXT_STAMP" ]] || [[ "$EXT/package.json" -nt "$EXT_STAMP" ]]; then
    say "npm ci in vscode-client"
    if [[ -f "$LOCK" ]]; then
        (cd "$EXT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    else
        (cd "$EXT" && npm install --no-audit --no-fund --loglevel=error >/dev/null)
    fi
    touch "$EXT_STAMP"
fi
say "ready (node $("$NODE" --version)$([[ $WITH_CODE_SERVER == 1 ]] && echo ", code-server $CS_VERSION"))"
