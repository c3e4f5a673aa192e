#!/usr/bin/env bash
# Runs shard INDEX of COUNT of an experiment into OUT/shard-INDEX, the one command every
# scheduler's task runs (Slurm array task, Kubernetes indexed pod, or by hand):
#   scripts/cluster/shard.sh EXPERIMENT.toml INDEX COUNT OUT
# A task that is restarted (preempted, requeued) resumes its shard's folder; a finished shard
# is left as it is, so rerunning a whole array is safe.
set -euo pipefail
experiment=${1:?usage: shard.sh EXPERIMENT.toml INDEX COUNT OUT}
index=${2:?usage: shard.sh EXPERIMENT.toml INDEX COUNT OUT}
count=${3:?usage: shard.sh EXPERIMENT.toml INDEX COUNT OUT}
out=${4:?usage: shard.sh EXPERIMENT.toml INDEX COUNT OUT}
splitbench=${SPLITBENCH:-splitbench}

# Absolute, since splitbench resolves a relative output.dir from the experiment's folder.
mkdir -p "$out"
out=$(cd "$out" && pwd)
dir="$out/shard-$index"
# The run folder splitbench made for this shard before, if any (run.json is written first).
previous=
if [ -d "$dir" ]; then
    previous=$(find "$dir" -mindepth 2 -maxdepth 2 -name run.json -printf '%h\n' | sort | tail -n 1)
fi
if [ -n "$previous" ] && [ -f "$previous/summary.json" ]; then
    echo "shard $index/$count: finished in $previous"
    exit 0
fi
if [ -n "$previous" ]; then
    exec "$splitbench" run "$experiment" --shard "$index/$count" --set "output.dir=\"$dir\"" --resume "$previous"
fi
exec "$splitbench" run "$experiment" --shard "$index/$count" --set "output.dir=\"$dir\""
