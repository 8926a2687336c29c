#!/usr/bin/env bash
# Slow points (both recipes), back-tracking and fine-tuning on copies of the small-grid networks.
# Resumable: every step leaves a marker file; re-run the script to continue.
#   bash experiments/slow_points_reachable/run.sh EXP_DIR TRAINED_ROOT NAME [NAME ...]
# EXP_DIR: where the copies, markers and log.txt go; TRAINED_ROOT: the small grid's root (a
# network is copied once its `NAME rc=0` line is in TRAINED_ROOT/DONE.txt). Run it from the
# checkout whose haviv_tf it should use (PYTHONPATH is set to the current directory).
set -u
[ $# -ge 3 ] || { echo "usage: $0 EXP_DIR TRAINED_ROOT NAME [NAME ...]" >&2; exit 2; }
E=$1; TRAINED=$2; shift 2
export PYTHONPATH=$PWD TF_CPP_MIN_LOG_LEVEL=2
py() { nice -n 19 python3 -m haviv_tf.main "$@"; }
step() {  # step MARKER command...
  local m=$1; shift
  [ -e "$m" ] && return 0
  echo "$(date -u +%T) start $m: $*" >> $E/log.txt
  if "$@" >> $E/log.txt 2>&1; then touch "$m"; echo "$(date -u +%T) done $m" >> $E/log.txt
  else echo "$(date -u +%T) FAILED $m" >> $E/log.txt; fi
}
mkdir -p "$E"
for n in "$@"; do
  src=$TRAINED/$n
  grep -q "$n rc=0" "$TRAINED/DONE.txt" || { echo "$n not finished" >> $E/log.txt; continue; }
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
