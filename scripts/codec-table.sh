#!/usr/bin/env bash
# codec-check for every built-in codec at one shape; prints one table.
#   scripts/codec-table.sh [SHAPE] [DTYPE]     (defaults: 2,2048,1024 bf16)
set -euo pipefail
shape="${1:-2,2048,1024}"
dtype="${2:-bf16}"
bin="${SPLITBENCH:-target/release/splitbench}"
header=1
while read -r plugin codec params; do
  out=$("$bin" codec-check --plugin "$plugin" --codec "$codec" --params "$params" --shape "$shape" --dtype "$dtype")
  # codec-check's row starts with the codec name in 24 columns; put the params beside it.
  if [ $header = 1 ]; then printf '%-40s%s\n' "codec params" "$(echo "$out" | grep '^codec ' | cut -c25-)"; header=0; fi
  printf '%-40s%s\n' "$codec $params" "$(echo "$out" | tail -n 1 | cut -c25-)"
done <<'LIST'
identity identity {}
cast fp16 {}
cast bf16 {}
cast fp8-e4m3 {}
cast fp8-e4m3 {"scale":"per-token"}
cast fp8-e5m2 {}
intq int8-token {}
intq intn-block {"bits":8}
intq intn-block {"bits":4}
intq intn-block {"bits":2}
intq intn-block-asym {"bits":4}
topk topk {"fraction":0.1}
topk topk {"fraction":0.25}
zstd zstd {}
zstd zstd {"shuffle":true}
outlier outlier {"bits":4}
outlier outlier {"bits":4,"mode":"channel"}
intq intn-affine-token {"bits":8}
intq intn-affine-token {"bits":4}
intq intn-affine-token {"bits":8,"entropy":"rans"}
intq intn-block {"bits":4,"entropy":"rans"}
lut4 nf4 {}
lut4 fp4 {}
hqq hqq {"bits":4}
hqq hqq {"bits":3}
hqq hqq {"bits":2}
rotate hadamard-intn {"bits":4}
rotate hadamard-intn {"bits":4,"block":64}
mx mxfp4 {}
mx mxfp6-e2m3 {}
mx mxfp8-e4m3 {}
mx nvfp4 {}
blockmean block-mean {}
blockmean block-mean {"permute":"features"}
LIST
