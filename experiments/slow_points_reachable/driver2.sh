#!/usr/bin/env bash
# Priority order for the time left: finish the running compare, then slow points (both recipes)
# and back-tracking on the other finished networks, the previous code's slow-point fine-tuning
# and back-tracking on the first network, and an LSTM's c-bounds measurement.
#   bash experiments/slow_points_reachable/driver2.sh EXP_DIR TRAINED_ROOT OLD_CHECKOUT [PID]
# EXP_DIR and TRAINED_ROOT as for run.sh; OLD_CHECKOUT: a checkout of the previous code (main at
# bdb3b25) for the before/after runs; PID (optional): a running compare to wait for first.
set -u
[ $# -ge 3 ] || { echo "usage: $0 EXP_DIR TRAINED_ROOT OLD_CHECKOUT [PID]" >&2; exit 2; }
E=$1; TRAINED=$2; OLD=$3; WAIT=${4:-}
HERE=$(cd "$(dirname "$0")" && pwd)
if [ -n "$WAIT" ]; then while kill -0 "$WAIT" 2>/dev/null; do sleep 15; done; fi
[ -e $E/default/mnist-vocu-gru-quick-s0_finetune/compare.json ] && touch $E/default/mnist-vocu-gru-quick-s0.cmp
old() {  # old NAME: the previous code's slow-point fine-tuning and back-tracking on a copy
  local n=$1
  [ -d $E/old/$n ] || { mkdir -p $E/old; cp -a $TRAINED/$n $E/old/$n; }
  [ -e $E/old/$n.ft ] || { echo "$(date -u +%T) start old ft $n" >> $E/log.txt; (cd "$OLD" && PYTHONPATH="$OLD" nice -n 19 python3 -m haviv_tf.main --mode=finetune --finetune=slow_points --parent=$E/old/$n --workdir=$E/old/${n}_finetune/slow_points) >> $E/log.txt 2>&1 && touch $E/old/$n.ft; }
  [ -e $E/old/$n.bt ] || { echo "$(date -u +%T) start old bt $n" >> $E/log.txt; (cd "$OLD" && PYTHONPATH="$OLD" nice -n 19 python3 -m haviv_tf.main --mode=backtrack --workdir=$E/old/$n) >> $E/log.txt 2>&1 && touch $E/old/$n.bt; }
}
for n in $(grep -o "mnist-[a-z]*-[a-z]*-quick-s[0-9]" "$TRAINED/DONE.txt"); do
  [ $n = mnist-vocu-gru-quick-s0 ] || bash "$HERE/run.sh" "$E" "$TRAINED" $n    # run.sh: sp both, bt both, compare
  [ $n = mnist-vocu-gru-quick-s0 ] && old $n
done
echo "$(date -u +%T) driver2 ends" >> $E/log.txt
