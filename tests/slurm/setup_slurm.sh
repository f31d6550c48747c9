#!/usr/bin/env bash
# setup_slurm.sh — a real one-node Slurm cluster on this machine, for the
# job-script tests (tests/slurm/test_slurm_job.sh).
#
#   setup_slurm.sh start    install what is missing, write slurm.conf, start
#                           munged, slurmctld and slurmd, wait for the node
#   setup_slurm.sh stop     cancel the test cluster's jobs, stop its daemons
#   setup_slurm.sh clean    stop, then delete the state directory
#   setup_slurm.sh status   sinfo and squeue of the test cluster
#   setup_slurm.sh env      print the line that points clients at it:
#                           eval "$(tests/slurm/setup_slurm.sh env)"
#
# Everything (config, MUNGE socket, state, spool, logs) lives under
# TAU2_SLURM_DIR (default /tmp/tau2-slurm); nothing in /etc or /var is
# written, so a system Slurm or munged is left alone. The daemons run as root
# without systemd, as in a container. `start` is idempotent: daemons already
# running from this directory are kept, and the config is rewritten only when
# its content changes.
#
# Knobs (environment):
#   TAU2_SLURM_DIR         state directory (/tmp/tau2-slurm)
#   TAU2_SLURM_INSTALL     1: apt-get install missing packages (default); 0: never
#   TAU2_SLURMCTLD_PORT    slurmctld port (6817)
#   TAU2_SLURMD_PORT       slurmd port (6818)
#
# Exit status: 0 ready, 77 Slurm cannot run here (not root, packages missing
# and not installable), 1 it should have started and did not (see the logs
# named in the message).
set -u

DIR=${TAU2_SLURM_DIR:-/tmp/tau2-slurm}
CONF=$DIR/etc/slurm.conf
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PLUGIN_DIR=/usr/lib/x86_64-linux-gnu/slurm-wlm
export SLURM_CONF=$CONF

skip() { echo "setup_slurm: cannot run Slurm here: $*" >&2; exit 77; }
fail() { echo "setup_slurm: $*" >&2; exit 1; }

# pid_alive FILE: the process named in a pid file is running.
pid_alive() {
  [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# Debian packages: the controller, the node daemon, the client commands and
# munge. The pmix MPI plugin (mpi_pmix*.so) ships in slurm-wlm-basic-plugins,
# which slurmd pulls in.
install_packages() {
  local missing=()
  command -v slurmctld >/dev/null || missing+=(slurmctld)
  command -v slurmd >/dev/null || missing+=(slurmd)
  command -v sbatch >/dev/null || missing+=(slurm-client)
  command -v munged >/dev/null || missing+=(munge)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "${TAU2_SLURM_INSTALL:-1}" = 1 ] || skip "missing ${missing[*]} (TAU2_SLURM_INSTALL=0)"
  command -v apt-get >/dev/null || skip "missing ${missing[*]} and no apt-get"
  echo "setup_slurm: installing ${missing[*]}" >&2
  # policy-rc.d in containers stops the packages' services from starting;
  # this script starts its own daemons anyway.
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >"$DIR/log/apt.log" 2>&1; then
    apt-get update >>"$DIR/log/apt.log" 2>&1
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" \
      >>"$DIR/log/apt.log" 2>&1 || skip "apt-get install ${missing[*]} failed ($DIR/log/apt.log)"
  fi
}

# The MPI plugin to default to: pmix when Slurm has it (srun --mpi=pmix
# starts Open MPI ranks directly), else none (jobs fall back to mpirun).
mpi_default() {
  if ls "$PLUGIN_DIR"/mpi_pmix*.so >/dev/null 2>&1; then echo pmix; else echo none; fi
}

# write_conf: slurm.conf from the template, with this machine's CPUs and
# memory as slurmd -C reports them.
write_conf() {
  local hw cpus boards sockets cores threads mem
  hw=$(slurmd -C 2>/dev/null | head -1)
  field() { echo "$hw" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  cpus=$(field CPUs) boards=$(field Boards) sockets=$(field SocketsPerBoard)
  cores=$(field CoresPerSocket) threads=$(field ThreadsPerCore) mem=$(field RealMemory)
  [ -n "$cpus" ] && [ -n "$mem" ] || fail "slurmd -C printed no CPUs/RealMemory: '$hw'"
  sed -e "s|@DIR@|$DIR|g" -e "s|@CPUS@|$cpus|g" -e "s|@BOARDS@|${boards:-1}|g" \
      -e "s|@SOCKETS@|${sockets:-1}|g" -e "s|@CORES@|${cores:-$cpus}|g" -e "s|@THREADS@|${threads:-1}|g" \
      -e "s|@MEM@|$mem|g" -e "s|@MPI_DEFAULT@|$(mpi_default)|g" \
      -e "s|@CTLD_PORT@|${TAU2_SLURMCTLD_PORT:-6817}|g" -e "s|@SLURMD_PORT@|${TAU2_SLURMD_PORT:-6818}|g" \
      "$HERE/slurm.conf.in" >"$CONF.tmp" || fail "cannot write $CONF"
  if cmp -s "$CONF.tmp" "$CONF"; then rm -f "$CONF.tmp"; return 1; fi
  mv "$CONF.tmp" "$CONF"
  return 0
}

# start_munge: munged as the munge user on a private socket, with the
# package's key (or a fresh one when there is none).
start_munge() {
  pid_alive "$DIR/munge/munged.pid" && return 0
  local key=/etc/munge/munge.key
  if [ ! -s "$key" ]; then
    key=$DIR/munge/munge.key
    [ -s "$key" ] || dd if=/dev/urandom of="$key" bs=1 count=128 2>/dev/null
  fi
  if [ "$key" = "$DIR/munge/munge.key" ] || [ "$(stat -c %U "$key")" != munge ]; then
    chown munge:munge "$key" 2>/dev/null
    chmod 400 "$key"
  fi
  chown munge:munge "$DIR/munge" 2>/dev/null
  chmod 755 "$DIR/munge"   # clients need to reach the socket
  local as=()
  id munge >/dev/null 2>&1 && as=(runuser -u munge --)
  "${as[@]}" munged --socket="$DIR/munge/munge.socket.2" --key-file="$key" \
    --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
    --seed-file="$DIR/munge/munged.seed" || fail "munged did not start ($DIR/munge/munged.log)"
  for _ in $(seq 50); do [ -S "$DIR/munge/munge.socket.2" ] && return 0; sleep 0.1; done
  fail "munged socket did not appear ($DIR/munge/munged.log)"
}

# wait_idle: until sinfo shows the node idle (or give up after 60 s).
wait_idle() {
  local state=""
  for _ in $(seq 120); do
    state=$(sinfo -h -n localhost -o %T 2>/dev/null | head -1)
    case $state in idle|mixed|allocated) return 0 ;; esac
    case $state in down*|drain*|inval*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 ;; esac
    sleep 0.5
  done
  fail "node not idle after 60 s (state '$state'; logs in $DIR/log)"
}

cmd_start() {
  [ "$(id -u)" -eq 0 ] || skip "not root (the daemons run as root here)"
  mkdir -p "$DIR"/{etc,munge,state,spool,run,log} || skip "cannot create $DIR"
  install_packages
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    || skip "slurmctld, slurmd or munged missing after install"
  local changed=0
  write_conf && changed=1
  start_munge
  if pid_alive "$DIR/run/slurmctld.pid"; then
    [ $changed -eq 1 ] && scontrol reconfigure >/dev/null 2>&1
  else
    slurmctld -f "$CONF" -i || fail "slurmctld did not start ($DIR/log/slurmctld.log)"
  fi
  if pid_alive "$DIR/run/slurmd.pid" && [ $changed -eq 0 ]; then
    :
  else
    pid_alive "$DIR/run/slurmd.pid" && { kill "$(cat "$DIR/run/slurmd.pid")"; sleep 1; }
    slurmd -f "$CONF" -N localhost || fail "slurmd did not start ($DIR/log/slurmd.log)"
  fi
  wait_idle
  echo "setup_slurm: node localhost idle (SLURM_CONF=$CONF, MpiDefault=$(mpi_default))" >&2
}

# stop_pid FILE: TERM the process, KILL it after 10 s.
stop_pid() {
  pid_alive "$1" || return 0
  local pid
  pid=$(cat "$1")
  kill "$pid" 2>/dev/null
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null
}

cmd_stop() {
  if pid_alive "$DIR/run/slurmctld.pid"; then
    scancel --full --quiet --user="$(id -un)" >/dev/null 2>&1
    for _ in $(seq 50); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.2; done
  fi
  stop_pid "$DIR/run/slurmd.pid"
  stop_pid "$DIR/run/slurmctld.pid"
  stop_pid "$DIR/munge/munged.pid"
}

case ${1:-start} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  clean) cmd_stop; rm -rf "$DIR" ;;
  status) sinfo; squeue ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|clean|status|env" >&2; exit 2 ;;
esac
