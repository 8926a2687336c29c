#!/usr/bin/env bash
# Section (c) for both slow-point recipes on all 8 small-grid networks, and the paper recipe's
# back-tracking. The default recipe's slow points, fine-tunings (all three) and back-tracking are
# the study's own (`--mode=study --grid=small`); this script adds the paper recipe on copies.
# Resumable: every step leaves a marker file; re-run to continue.
#
#   python3 -m haviv_tf.main --mode=study --grid=small --workdir=$STUDY --workers=2 \
#       --data_dir=../shared/data
#   bash experiments/slow_points_reachable/grid.sh $STUDY $OUT
#
# $OUT/paper/<name> are the copies; $OUT/analyze_{default,paper} the two --mode=analyze outputs.
set -u
STUDY=$1; OUT=$2
mkdir -p "$OUT/paper"
py() { python3 -m haviv_tf.main "$@"; }
step() {  # step MARKER command...
  local m=$1; shift
  [ -e "$m" ] && return 0
  echo "$(date -u +%T) start $m: $*" >> "$OUT/log.txt"
  if "$@" >> "$OUT/log.txt" 2>&1; then touch "$m"; echo "$(date -u +%T) done $m" >> "$OUT/log.txt"
  else echo "$(date -u +%T) FAILED $m" >> "$OUT/log.txt"; fi
}
names=()
for d in "$STUDY"/mnist-*-quick-s[0-9]; do
  n=$(basename "$d")
  [ -e "$d/slow_points.npz" ] || { echo "$n: not finished in the study" >> "$OUT/log.txt"; continue; }
  names+=("$n")
  [ -d "$OUT/paper/$n" ] || cp -a "$d" "$OUT/paper/$n"
  step "$OUT/paper/$n.sp" py --mode=slow_points --sp_recipe=paper --workdir="$OUT/paper/$n"
done
join() { local IFS=,; echo "$*"; }
def=(); pap=()
for n in "${names[@]}"; do def+=("$STUDY/$n"); pap+=("$OUT/paper/$n"); done
if [ ${#names[@]} -gt 0 ]; then
  rm -f "$OUT/analyze_default.done" "$OUT/analyze_paper.done"  # the set may have grown
  step "$OUT/analyze_default.done" py --mode=analyze --out="$OUT/analyze_default" --workdirs="$(join "${def[@]}")"
  step "$OUT/analyze_paper.done" py --mode=analyze --out="$OUT/analyze_paper" --workdirs="$(join "${pap[@]}")"
fi
for n in "${names[@]}"; do
  step "$OUT/paper/$n.bt" py --mode=backtrack --sp_recipe=paper --workdir="$OUT/paper/$n"
done
echo "$(date -u +%T) grid.sh ends (${#names[@]} networks)" >> "$OUT/log.txt"
