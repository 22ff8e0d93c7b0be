#!/usr/bin/env bash
# Runs one command as the N tasks of a job array, on this machine, all at once: task i gets the variables a
# Slurm job array gives it (SLURM_ARRAY_TASK_ID=i, _COUNT=N, _MIN=0, _MAX=N-1), or with --kubernetes those of
# a Kubernetes indexed job (JOB_COMPLETION_INDEX=i; pass --parts N to sparsecoder yourself). So
# `sparsecoder ... --part auto` takes the same path here as on a cluster; the tests use it.
#
#   scripts/array_local.sh [--kubernetes] N CMD [ARGS...]
#
# Each task's output lines are prefixed with "[task i] ". Exits non-zero, naming the failed tasks, if any fails.
set -euo pipefail

kubernetes=0
if [[ "${1:-}" == "--kubernetes" ]]; then
    kubernetes=1
    shift
fi
if [[ $# -lt 2 || ! "$1" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [--kubernetes] N CMD [ARGS...]   (N: the number of tasks, at least 1)" >&2
    exit 2
fi
n=$1
shift

pids=()
for ((i = 0; i < n; i++)); do
    (
        if [[ $kubernetes == 1 ]]; then
            export JOB_COMPLETION_INDEX=$i
        else
            export SLURM_ARRAY_TASK_ID=$i SLURM_ARRAY_TASK_COUNT=$n SLURM_ARRAY_TASK_MIN=0 \
                SLURM_ARRAY_TASK_MAX=$((n - 1))
        fi
        "$@" 2>&1 | sed -u "s/^/[task $i] /"
        exit "${PIPESTATUS[0]}"
    ) &
    pids+=($!)
done

failed=()
for ((i = 0; i < n; i++)); do
    if ! wait "${pids[$i]}"; then
        failed+=("$i")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "array_local: task(s) ${failed[*]} of $n failed" >&2
    exit 1
fi
