#!/usr/bin/env bash
# Work pools and GPU limits for voidbatch. Safe to run again (pools are overwritten, limits upserted).
#
#   PREFECT_API_URL=http://prefect.internal:4200/api GPUS=8 deploy/setup_pools.sh
#
#   cpu   (process)     the nightly batch: ingest, plan, conform, manifest; runs on the CPU hosts
#   a100  (kubernetes)  one shot per job, one GPU per job (deploy/k8s-job-template.json); its
#                       concurrency limit is the number of GPUs, so extra shots wait as Scheduled
#   gpu   tag limit     tasks tagged `gpu` share GPUS slots across all runs (in Prefect 3.8 this is
#                       the global concurrency limit `tag:gpu`)
#
# Without a cluster, run the GPU pool as process workers on the GPU host instead:
#   A100_POOL_TYPE=process GPUS=2 deploy/setup_pools.sh
#   CUDA_VISIBLE_DEVICES=0 prefect worker start --pool a100 --limit 1 &   # one worker per GPU
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PREFECT="${PREFECT:-prefect}"
CPU_POOL="${CPU_POOL:-cpu}"
CPU_POOL_TYPE="${CPU_POOL_TYPE:-process}"
A100_POOL="${A100_POOL:-a100}"
A100_POOL_TYPE="${A100_POOL_TYPE:-kubernetes}"
GPUS="${GPUS:-8}"                      # GPUs the a100 pool may use at once
GPU_TAG="${GPU_TAG:-gpu}"
CPU_BATCHES="${CPU_BATCHES:-}"         # optional cap on concurrent batch runs in the cpu pool

if [[ -z "${PREFECT_API_URL:-}" ]]; then
  echo "setup_pools.sh: set PREFECT_API_URL to your Prefect server (e.g. http://prefect.internal:4200/api)" >&2
  exit 2
fi
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
  echo "setup_pools.sh: GPUS must be a positive integer, got '$GPUS'" >&2
  exit 2
fi

create_pool() {  # name type
  local current
  current="$("$PREFECT" work-pool inspect "$1" --output json 2>/dev/null \
             | sed -n 's/^  "type": "\([^"]*\)",*$/\1/p')" || true
  if [[ -n "$current" && "$current" != "$2" ]]; then  # --overwrite keeps the old type: say so
    echo "setup_pools.sh: pool '$1' exists as type '$current', not '$2'; remove it first:" \
         "$PREFECT work-pool delete '$1'" >&2
    exit 1
  fi
  local args=("$1" --type "$2" --overwrite)
  if [[ "$2" == kubernetes ]]; then
    args+=(--base-job-template "$HERE/k8s-job-template.json")
  fi
  "$PREFECT" --no-prompt work-pool create "${args[@]}"
}

create_pool "$CPU_POOL" "$CPU_POOL_TYPE"
create_pool "$A100_POOL" "$A100_POOL_TYPE"
"$PREFECT" --no-prompt work-pool set-concurrency-limit "$A100_POOL" "$GPUS"
if [[ -n "$CPU_BATCHES" ]]; then
  "$PREFECT" --no-prompt work-pool set-concurrency-limit "$CPU_POOL" "$CPU_BATCHES"
fi
"$PREFECT" --no-prompt concurrency-limit create "$GPU_TAG" "$GPUS"

echo "voidbatch pools: $CPU_POOL ($CPU_POOL_TYPE), $A100_POOL ($A100_POOL_TYPE, $GPUS at once); tag limit $GPU_TAG=$GPUS"
