#!/usr/bin/env bash
# The container image's install steps. The Dockerfile runs them, and so does
# tests/integration/test_image_recipe.py in a fresh virtualenv, so the recipe the image is built with is
# the recipe CI checks.
#
#   deploy/image/install.sh deps   # a virtualenv with torch and the pinned requirements (needs requirements.txt)
#   deploy/image/install.sh app    # the package, then the checkpoint baked in (needs the source tree)
#
# Environment:
#   VENV             the virtualenv to create (default /opt/venv), with $PYTHON (default python3)
#   VARIANT          gpu (default) or cpu: which torch build to install
#   TORCH_VERSION    default 2.13.0
#   TORCH_INDEX_URL  auto (default): PyPI for gpu (its Linux wheels are the CUDA build), PyTorch's CPU
#                    index for cpu; empty: pip's own configuration; anything else: that index
#   CHECKPOINT_DIR   where the checkpoint goes (default ./checkpoint); one already there is kept unless it
#                    was converted by an older version of the converter. Its CTranslate2 exports go to the
#                    engine's cache (TW_ENGINE__CT2_CACHE_DIR, default ./.cache/ct2)
set -euo pipefail

step="${1:?usage: install.sh deps|app}"
venv="${VENV:-/opt/venv}"
variant="${VARIANT:-gpu}"
torch_version="${TORCH_VERSION:-2.13.0}"
index="${TORCH_INDEX_URL-auto}"
pip=("$venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check)

case "$variant" in
  gpu | cpu) ;;
  *) echo "VARIANT must be gpu or cpu, not '$variant'" >&2; exit 2 ;;
esac

case "$step" in
  deps)
    "${PYTHON:-python3}" -m venv "$venv"
    if [ "$index" = auto ]; then
      if [ "$variant" = cpu ]; then index=https://download.pytorch.org/whl/cpu; else index=; fi
    fi
    if [ -n "$index" ]; then
      "${pip[@]}" "torch==$torch_version" --index-url "$index"
    else
      "${pip[@]}" "torch==$torch_version"
    fi
    "${pip[@]}" -r requirements.txt
    # requirements.txt must not have moved torch off the pinned build.
    "$venv/bin/python" - "$torch_version" "$variant" <<'PY'
import sys

import torch

want, variant = sys.argv[1], sys.argv[2]
have = torch.__version__.split("+")[0]
if have != want:
    sys.exit(f"torch {torch.__version__} was installed, expected {want}")
if variant == "gpu" and torch.version.cuda is None:
    sys.exit(f"VARIANT=gpu installed a CPU-only torch ({torch.__version__}); set TORCH_INDEX_URL")
print(f"torch {torch.__version__} (CUDA {torch.version.cuda})")
PY
    ;;
  app)
    "${pip[@]}" --no-deps -e .
    "$venv/bin/tuned-whisper" checkpoint build --if-missing --output "${CHECKPOINT_DIR:-checkpoint}"
    "$venv/bin/tuned-whisper" checkpoint info "${CHECKPOINT_DIR:-checkpoint}"
    # The CTranslate2 backend's exports, baked so that the image starts without converting: int8 is the
    # CPU default; the GPU image also gets float16 for TW_ENGINE__BACKEND=ctranslate2 on CUDA.
    quantizations=(int8)
    if [ "$variant" = gpu ]; then quantizations+=(float16); fi
    for quantization in "${quantizations[@]}"; do
      "$venv/bin/tuned-whisper" checkpoint export-ct2 --checkpoint "${CHECKPOINT_DIR:-checkpoint}" \
        --quantization "$quantization" >/dev/null
    done
    ;;
  *)
    echo "unknown step '$step' (deps or app)" >&2
    exit 2
    ;;
esac
