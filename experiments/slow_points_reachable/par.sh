#!/usr/bin/env bash
# Slow points with both recipes on more networks, alongside driver2.sh (same markers as run.sh).
#   bash experiments/slow_points_reachable/par.sh EXP_DIR TRAINED_ROOT
# Run it from the checkout whose haviv_tf it should use (PYTHONPATH is set to it).
set -u
[ $# -eq 2 ] || { echo "usage: $0 EXP_DIR TRAINED_ROOT" >&2; exit 2; }
E=$1; TRAINED=$2
export PYTHONPATH=$PWD
for n in mnist-decu-gru-quick-s0 mnist-vocu-lstm-quick-s0 mnist-decu-lstm-quick-s0; do
  for r in paper default; do
    [ $r = default ] && [ $n = mnist-vocu-lstm-quick-s0 ] && continue   # lstm_c/reached is that run
    [ -d $E/$r/$n ] || { mkdir -p $E/$r; cp -a $TRAINED/$n $E/$r/$n; }
    [ -e $E/$r/$n.sp ] && continue
    echo "$(date -u +%T) par start $r $n" >> $E/log.txt
    nice -n 19 python3 -m haviv_tf.main --mode=slow_points --sp_recipe=$r --workdir=$E/$r/$n >> $E/par.log 2>&1 && touch $E/$r/$n.sp
    echo "$(date -u +%T) par done $r $n" >> $E/log.txt
  done
done
