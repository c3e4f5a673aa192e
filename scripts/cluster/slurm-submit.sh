#!/usr/bin/env bash
# Submits an experiment as N Slurm array tasks and a merge job that runs when all succeeded:
#   scripts/cluster/slurm-submit.sh EXPERIMENT.toml N OUT
# OUT must be on a file system every node sees; the merged run lands in OUT/merged.
set -euo pipefail
experiment=${1:?usage: slurm-submit.sh EXPERIMENT.toml N OUT}
count=${2:?usage: slurm-submit.sh EXPERIMENT.toml N OUT}
out=${3:?usage: slurm-submit.sh EXPERIMENT.toml N OUT}
export SPLITBENCH_SCRIPTS
SPLITBENCH_SCRIPTS=$(dirname "$(readlink -f "$0")")
experiment=$(readlink -f "$experiment")
mkdir -p "$out"
out=$(readlink -f "$out")
array=$(sbatch --parsable --export=ALL --array="0-$((count - 1))" \
    "$SPLITBENCH_SCRIPTS/slurm-shards.sbatch" "$experiment" "$out")
sbatch --parsable --export=ALL --dependency="afterok:${array%%;*}" \
    "$SPLITBENCH_SCRIPTS/slurm-merge.sbatch" "$out"
