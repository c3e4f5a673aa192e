#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that cannot build (no crates.io):
# the CUDA splitbench, the release plugins, the WikiText-2 test file and a copy of the check
# itself (gpu-check.sh, peer_hf.py, configs/gpu) in DIR (default dist/gpu, 54 MB). Then, on the
# GPU machine, from the directory that holds DIR (the copy does not depend on the checkout
# there, which may be another commit's or mid-edit):
#   dist/gpu/check/scripts/gpu-check.sh dist/gpu
set -euo pipefail
cd "$(dirname "$0")/.."
dist="${1:-dist/gpu}"
wikitext="${SPLITBENCH_WIKITEXT_DIR:-../shared/data/wikitext-2-raw-v1}/wiki.test.raw"
[ -f "$wikitext" ] || { echo "no $wikitext; set SPLITBENCH_WIKITEXT_DIR" >&2; exit 1; }

bin=$(scripts/build-cuda.sh build | tail -n 1 | cut -d' ' -f1)
plugins=(identity cast intq topk zstd outlier lut4 hqq blockmean rotate mx learned)
# build-cuda.sh builds the plugins beside the binary.
target=$(dirname "$bin")

rm -rf "$dist"
mkdir -p "$dist/plugins"
cp "$bin" "$dist/splitbench"
strip "$dist/splitbench"
for p in "${plugins[@]}"; do
  cp "$target/libsplitbench_codec_$p.so" "$dist/plugins/"
  strip "$dist/plugins/libsplitbench_codec_$p.so"
done
cp "$wikitext" "$dist/wiki.test.raw"
mkdir -p "$dist/check/scripts" "$dist/check/configs/gpu"
cp scripts/gpu-check.sh scripts/peer_hf.py "$dist/check/scripts/"
cp configs/gpu/*.toml "$dist/check/configs/gpu/"
{
  git log -1 --format='%H %cd'
  git status --porcelain --untracked-files=no | grep -q . && echo "plus uncommitted changes"
} >"$dist/check/COMMIT" 2>/dev/null || true
du -sh "$dist"
