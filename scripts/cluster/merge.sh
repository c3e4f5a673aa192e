#!/usr/bin/env bash
# Merges the shards shard.sh wrote under OUT into OUT/merged (records, summary, plots):
#   scripts/cluster/merge.sh OUT
# merge refuses, naming the problem, a missing, duplicated or unfinished shard.
set -euo pipefail
out=${1:?usage: merge.sh OUT}
splitbench=${SPLITBENCH:-splitbench}
shopt -s nullglob
shards=("$out"/shard-*/*/)
if [ ${#shards[@]} -eq 0 ]; then
    echo "merge.sh: no shard folders under $out/shard-*/" >&2
    exit 1
fi
exec "$splitbench" merge "$out/merged" "${shards[@]}"
