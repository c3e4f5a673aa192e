#!/usr/bin/env bash
# Prepares what scripts/gpu-check.sh needs on a GPU machine that cannot build (no crates.io):
# the CUDA splitbench, the release plugins and the WikiText-2 test file, in DIR (default
# dist/gpu, 46 MB). Then, on the GPU machine, from the repository root:
#   scripts/gpu-check.sh dist/gpu
set -euo pipefail
cd "$(dirname "$0")/.."
dist="${1:-dist/gpu}"
wikitext="${SPLITBENCH_WIKITEXT_DIR:-../shared/data/wikitext-2-raw-v1}/wiki.test.raw"
[ -f "$wikitext" ] || { echo "no $wikitext; set SPLITBENCH_WIKITEXT_DIR" >&2; exit 1; }

bin=$(scripts/build-cuda.sh build | tail -n 1 | cut -d' ' -f1)
plugins=(identity cast intq topk zstd outlier lut4 hqq blockmean rotate mx)
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
du -sh "$dist"
