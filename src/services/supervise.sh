#!/bin/sh
# servicectl's supervisor: keeps one ImageSys daemon instance running. A shell, not a Node process,
# so that thirty instances on a host do not cost thirty more Node heaps.
#   supervise.sh READY_FILE PID_FILE LABEL COMMAND [ARGS...]
# The daemon writes its pid to READY_FILE ($LIS_READY_FILE) once it is registered and listening.
# A daemon that dies after it was ready once is started again with backoff (1s, 2s, 4s ... 60s;
# afresh after it ran 60s); one that dies before it was ever ready (a bad config, no rsync) is not,
# and the supervisor exits 1, which `servicectl start` reports as "failed"; it leaves the reason in
# PID_FILE's name with .failed for .pid, so that a later `servicectl status` says so rather than "stopped".
# SIGTERM/SIGINT are passed on to the daemon; the supervisor exits once the daemon has.
ready=$1 pidfile=$2 label=$3
failed="${pidfile%.pid}.failed"
shift 3
say() { echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) servicectl: $label $*"; }
stopping=0 child='' delay='' ever=0 result=0
stop() {
  stopping=1
  if [ -n "$child" ]; then kill -TERM "$child" 2>/dev/null; fi
}
trap stop TERM INT
while [ "$stopping" = 0 ]; do
  rm -f "$ready"
  started=$(date +%s)
  LIS_READY_FILE=$ready "$@" &
  child=$!
  pid=$child
  # A trapped signal interrupts `wait` (status > 128) while the daemon is still finishing its rows: wait again.
  while :; do
    wait "$pid"
    code=$?
    kill -0 "$pid" 2>/dev/null || break
  done
  child=''
  if [ "$(cat "$ready" 2>/dev/null)" = "$pid" ]; then was_ready=1; else was_ready=0; fi
  rm -f "$ready"
  [ "$stopping" = 1 ] && break
  if [ "$code" -gt 128 ]; then how="was killed (signal $((code - 128)))"; else how="exited $code"; fi
  if [ "$was_ready" = 0 ] && [ "$ever" = 0 ]; then
    say "(pid $pid) $how before it was ready: not restarting it"
    echo "$(date -u +%Y-%m-%dT%H:%M:%SZ): (pid $pid) $how before it was ready" >"$failed"
    result=1
    break
  fi
  ever=1
  if [ -z "$delay" ] || [ $(($(date +%s) - started)) -ge 60 ]; then delay=1; else delay=$((delay * 2)); fi
  if [ "$delay" -gt 60 ]; then delay=60; fi
  say "(pid $pid) $how; starting it again in ${delay}s"
  # The sleep is our child too, so that a stop wakes us at once.
  sleep "$delay" &
  child=$!
  wait "$child"
  child=''
done
if [ "$(head -n 1 "$pidfile" 2>/dev/null)" = "$$" ]; then rm -f "$pidfile"; fi
exit "$result"
