#!/usr/bin/env bash
# Run HERE, on a machine that reaches PyPI: downloads into .whl/ the wheels that the lent GPU image lacks
# (diffusers, open_clip, kornia and their missing needs; the image has torch, transformers, timm, safetensors,
# huggingface_hub, pillow). .whl/ is git-ignored through .git/info/exclude and travels with `carry: [".whl"]`.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
py=${PYTHON:-python3}
wheels=(
  diffusers==0.42.1 open_clip_torch==3.3.0 kornia==0.9.0 kornia_rs==0.2.0
  ftfy==6.3.1 wcwidth==0.9.4 importlib_metadata
)
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl "${wheels[@]}"
ls -l .whl
du -sh .whl
