#!/usr/bin/env bash
# Builds bench/peers/tfx/.venv, the TFX 1.16 venv of bench/pipeline_vs_tfx.py, from the pins in bench/peers/tfx.txt.
# Idempotent: does nothing when the venv already imports tfx. Runs from any directory.
#   bash bench/peers/build_tfx.sh [--force]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
venv="$here/tfx/.venv"
uv="$repo/.venv/bin/uv"
if [[ "${1:-}" == "--force" ]]; then rm -rf "$venv"; fi
if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import tfx, tensorflow_data_validation, tensorflow_model_analysis, tf_keras' 2>/dev/null; then
    echo "TFX venv already built: $venv"
    exit 0
fi
[[ -x "$uv" ]] || { echo "uv not found at $uv (the project's venv)" >&2; exit 1; }
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
/usr/bin/python3 -m venv "$venv"
"$uv" pip install --python "$venv/bin/python" --compile-bytecode -r "$here/tfx.txt"
"$venv/bin/python" -c 'import tfx; print("built", tfx.__version__, "in", "'"$venv"'")'
