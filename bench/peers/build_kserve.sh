#!/usr/bin/env bash
# Build the KServe peer's venv, bench/peers/kserve/.venv, from the pins in bench/peers/kserve.txt: the model server
# of bench/serving_speed.py's variant (f), kept out of the project lock (kserve conflicts with it).
# Idempotent (a venv that has the pins already is checked in a second) and runnable from any directory.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/kserve/.venv"
uv="$repo/.venv/bin/uv"
[ -x "$uv" ] || { echo "build_kserve.sh: $uv not found: build the project's venv first" >&2; exit 1; }
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$uv" pip install --python "$venv/bin/python" --compile-bytecode -q -r "$here/kserve.txt"
"$venv/bin/python" -c 'import importlib.metadata as m, kserve, numpy, ai_edge_litert.interpreter
print("KServe peer ready: kserve", m.version("kserve"), "ai-edge-litert", m.version("ai-edge-litert"), "numpy", numpy.__version__)'
echo "  interpreter: $venv/bin/python"
