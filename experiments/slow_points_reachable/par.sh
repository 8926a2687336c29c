#!/usr/bin/env bash
# Slow points with both recipes on more networks, alongside driver2 (same markers as run.sh).
E=/work/exp-11
export PYTHONPATH=/work/wt-11
for n in mnist-decu-gru-quick-s0 mnist-vocu-lstm-quick-s0 mnist-decu-lstm-quick-s0; do
  for r in paper default; do
    [ $r = default ] && [ $n = mnist-vocu-lstm-quick-s0 ] && continue   # lstm_c/reached is that run
    [ -d $E/$r/$n ] || cp -a /work/runs/small/$n $E/$r/$n
    [ -e $E/$r/$n.sp ] && continue
    echo "$(date -u +%T) par start $r $n" >> $E/log.txt
    nice -n 19 python3 -m haviv_tf.main --mode=slow_points --sp_recipe=$r --workdir=$E/$r/$n >> $E/par.log 2>&1 && touch $E/$r/$n.sp
    echo "$(date -u +%T) par done $r $n" >> $E/log.txt
  done
done
