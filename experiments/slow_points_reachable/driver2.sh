#!/usr/bin/env bash
# Priority order for the time left: finish the running compare, then slow points (both recipes)
# and back-tracking on the other finished networks, the previous code's slow-point fine-tuning
# and back-tracking on the first network, and an LSTM's c-bounds measurement.
E=/work/exp-11
while kill -0 4961 2>/dev/null; do sleep 15; done
[ -e $E/default/mnist-vocu-gru-quick-s0_finetune/compare.json ] && touch $E/default/mnist-vocu-gru-quick-s0.cmp
old() {  # old NAME: the previous code's slow-point fine-tuning and back-tracking on a copy
  local n=$1
  [ -d $E/old/$n ] || { mkdir -p $E/old; cp -a /work/runs/small/$n $E/old/$n; }
  cd /work/wt-base
  [ -e $E/old/$n.ft ] || { echo "$(date -u +%T) start old ft $n" >> $E/log.txt; PYTHONPATH=/work/wt-base nice -n 19 python3 -m haviv_tf.main --mode=finetune --finetune=slow_points --parent=$E/old/$n --workdir=$E/old/${n}_finetune/slow_points >> $E/log.txt 2>&1 && touch $E/old/$n.ft; }
  [ -e $E/old/$n.bt ] || { echo "$(date -u +%T) start old bt $n" >> $E/log.txt; PYTHONPATH=/work/wt-base nice -n 19 python3 -m haviv_tf.main --mode=backtrack --workdir=$E/old/$n >> $E/log.txt 2>&1 && touch $E/old/$n.bt; }
  cd $E
}
for n in $(grep -o "mnist-[a-z]*-[a-z]*-quick-s[0-9]" /work/runs/small/DONE.txt); do
  [ $n = mnist-vocu-gru-quick-s0 ] || bash $E/run.sh $n    # run.sh: sp both, bt both, compare
  [ $n = mnist-vocu-gru-quick-s0 ] && old $n
done
echo "$(date -u +%T) driver2 ends" >> $E/log.txt
