#!/bin/sh
# Reproduce results/README_results.md: each task x mode x seed 0-2, two runs at a time, one
# Numba thread each (a 2-core machine). Run from the repository root:
#   sh results/run_all.sh [TASK ...]
# Each run keeps its run directory runs/results/TASK-MODE-seedS/ and appends its final JSON
# line to runs/results/final.jsonl; then:  python results/summarize.py runs/results/final.jsonl
export NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mkdir -p runs/results
[ $# -gt 0 ] || set -- digits numbers addition
for task in "$@"; do
  case $task in                          # the settings of the reported runs
    digits) args="--steps 1500 --lr 0.005 --set patch_size=4" ;;
    numbers) args="--steps 800" ;;
    addition) args="--steps 1500" ;;
    digits-cnn) args="--steps 1000" ;;
  esac
  for seed in 0 1 2; do
    for mode in standard pa-matmul pa; do
      echo "$task $mode $seed $args"
    done
  done
done | xargs -P 2 -L 1 sh -c '
  out=runs/results/$0-$1-seed$2; task=$0; mode=$1; seed=$2; shift 2
  python -m pafree train --task $task --mode $mode --seed $seed --out $out --json "$@" > $out.log 2>&1 &&
    tail -n 1 $out.log >> runs/results/final.jsonl'
