#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests that submit real jobs.
#
#   tests/slurm_cluster.sh start [STATE_DIR]   install slurm-wlm + munge if missing (apt-get),
#                                              write /etc/slurm/slurm.conf for this host (2 CPUs,
#                                              one partition of one node), start munged,
#                                              slurmctld and slurmd, wait until sinfo shows the
#                                              node idle
#   tests/slurm_cluster.sh stop  [STATE_DIR]   stop exactly the three daemons `start` started
#   tests/slurm_cluster.sh check               exit 0 if a cluster answers and a node is idle
#
# STATE_DIR (default ${TMPDIR:-/tmp}/haviv-slurm) holds the daemons' pids, logs and spool. Needs root and
# apt-get (or the packages already installed); otherwise it says why on one `error:` line and
# exits 1 (the tests then skip with that reason). An /etc/slurm/slurm.conf that this script
# did not write is never overwritten.
set -euo pipefail

CMD="${1:-}"
STATE="${2:-${TMPDIR:-/tmp}/haviv-slurm}"
CONF=/etc/slurm/slurm.conf
MARK="# written by haviv_tf tests/slurm_cluster.sh"
TIMEOUT="${HAVIV_SLURM_START_TIMEOUT:-90}"

die() { echo "error: $*" >&2; exit 1; }

node_state() { sinfo -h -N -n "$1" -o %t 2>/dev/null | head -1 | tr -d '*~#!%$@^-'; }

install_if_missing() {
  local missing=()
  command -v munged >/dev/null 2>&1 || missing+=(munge)
  for b in slurmctld slurmd sbatch; do
    command -v "$b" >/dev/null 2>&1 || { missing+=(slurm-wlm); break; }
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  command -v apt-get >/dev/null 2>&1 || die "slurm-wlm/munge missing and no apt-get to install them"
  echo "installing ${missing[*]} (apt-get)" >&2
  apt-get update -q >"$STATE/apt.log" 2>&1 || die "apt-get update failed; see $STATE/apt.log"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      slurm-wlm munge >>"$STATE/apt.log" 2>&1 || die "apt-get install failed; see $STATE/apt.log"
}

write_conf() {
  local host="$1" mem
  if [ -e "$CONF" ] && ! head -1 "$CONF" | grep -qF "$MARK"; then
    die "$CONF exists and was not written by this script; not touching a real cluster's config"
  fi
  mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
  mkdir -p /etc/slurm "$STATE/ctld" "$STATE/spool"
  cat >"$CONF.tmp" <<EOF
$MARK
ClusterName=haviv-test
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
KillWait=5
MinJobAge=900
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$CONF.tmp" "$CONF"
}

start() {
  [ "$(id -u)" -eq 0 ] || die "not root: a Slurm cluster needs root to start"
  mkdir -p "$STATE"
  if [ -s "$STATE/pids" ]; then
    die "$STATE/pids exists: a cluster started by this script may be running; stop it first"
  fi
  install_if_missing
  local host
  host=$(hostname -s)
  write_conf "$host"
  command -v setpriv >/dev/null 2>&1 || die "setpriv (util-linux) missing"
  install -d -o munge -g munge -m 0755 /run/munge
  [ -s /etc/munge/munge.key ] || die "/etc/munge/munge.key missing (reinstall munge)"
  : >"$STATE/pids"
  # Each daemon in the foreground under our own `&`, so $! is its own process id.
  setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged --foreground \
      </dev/null >"$STATE/munged.out" 2>&1 &
  echo "munged $!" >>"$STATE/pids"
  for _ in $(seq 50); do [ -S /run/munge/munge.socket.2 ] && break; sleep 0.2; done
  [ -S /run/munge/munge.socket.2 ] || { stop; die "munged did not start; see $STATE/munged.out"; }
  slurmctld -D -i </dev/null >"$STATE/slurmctld.out" 2>&1 &
  echo "slurmctld $!" >>"$STATE/pids"
  slurmd -D </dev/null >"$STATE/slurmd.out" 2>&1 &
  echo "slurmd $!" >>"$STATE/pids"
  local deadline=$((SECONDS + TIMEOUT)) st=""
  while [ $SECONDS -lt $deadline ]; do
    st=$(node_state "$host")
    [ "$st" = idle ] && break
    if [ "$st" = drain ] || [ "$st" = down ]; then scontrol update nodename="$host" state=resume \
        >/dev/null 2>&1 || true; fi
    sleep 1
  done
  if [ "$st" != idle ]; then
    stop
    die "node $host not idle after ${TIMEOUT}s (state '${st:-none}'); see $STATE/slurmctld.log"
  fi
  echo "slurm cluster up: node $host idle (state in $STATE)"
}

stop() {
  [ -s "$STATE/pids" ] || { echo "no cluster started from $STATE"; return 0; }
  local name pid
  # Reverse order: slurmd, slurmctld, then munged.
  tac "$STATE/pids" | while read -r name pid; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    echo "stopped $name ($pid)"
  done
  rm -f "$STATE/pids"
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  check) st=$(node_state "$(hostname -s)"); [ "$st" = idle ] || [ "$st" = mix ] || [ "$st" = alloc ] ;;
  *) die "usage: $0 start|stop|check [STATE_DIR]" ;;
esac
