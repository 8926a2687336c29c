#!/usr/bin/env bash
# Slow points (both recipes), back-tracking and fine-tuning on copies of the small-grid networks.
# Resumable: every step leaves a marker file; re-run the script to continue.
#   bash /work/exp-11/run.sh NAME [NAME ...]
set -u
export PYTHONPATH=/work/wt-11 TF_CPP_MIN_LOG_LEVEL=2
E=/work/exp-11
py() { nice -n 19 python3 -m haviv_tf.main "$@"; }
step() {  # step MARKER command...
  local m=$1; shift
  [ -e "$m" ] && return 0
  echo "$(date -u +%T) start $m: $*" >> $E/log.txt
  if "$@" >> $E/log.txt 2>&1; then touch "$m"; echo "$(date -u +%T) done $m" >> $E/log.txt
  else echo "$(date -u +%T) FAILED $m" >> $E/log.txt; fi
}
for n in "$@"; do
  src=/work/runs/small/$n
  grep -q "$n rc=0" /work/runs/small/DONE.txt || { echo "$n not finished" >> $E/log.txt; continue; }
  for r in default paper; do
    [ -d $E/$r/$n ] || { mkdir -p $E/$r; cp -a $src $E/$r/$n; }
    step $E/$r/$n.sp py --mode=slow_points --sp_recipe=$r --workdir=$E/$r/$n
  done
done
for n in "$@"; do
  for r in default paper; do
    [ -e $E/$r/$n.sp ] && step $E/$r/$n.bt py --mode=backtrack --sp_recipe=$r --workdir=$E/$r/$n
  done
done
for n in "$@"; do
  [ -e $E/default/$n.sp ] && step $E/default/$n.cmp py --mode=compare --sp_recipe=default --parent=$E/default/$n
done
