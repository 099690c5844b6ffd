#!/usr/bin/env bash
# Run the test suite on a busy machine: start HOGS CPU hogs (`yes >/dev/null`,
# default 2), run `vitest run` with the arguments given, and always stop the
# hogs this script started (by PID), however vitest ends.
#
#   npm run test:busy                          # whole suite beside 2 hogs
#   HOGS=4 npm run test:busy -- test/dns-lifecycle.test.ts
set -uo pipefail
cd "$(dirname "$0")/.."

hogs=${HOGS:-2}
pids=()
stop_hogs() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null; done
  pids=()
}
vitest=''
on_signal() {
  # vitest runs in a process group of its own (set -m): stop all of it, its
  # workers and the daemons the tests started, not only the first process.
  [[ -n $vitest ]] && kill -TERM -- "-$vitest" 2>/dev/null
  exit "$1"
}
trap stop_hogs EXIT
trap 'on_signal 130' INT
trap 'on_signal 143' TERM

for ((i = 0; i < hogs; i++)); do
  yes >/dev/null &
  pids+=("$!")
done
echo "test:busy: ${hogs} CPU hogs running (PIDs ${pids[*]:-none}) on $(nproc) CPUs" >&2

started=$(date +%s)
# In the background (so that a signal reaches the trap at once) and, with
# job control on, in its own process group.
set -m
node_modules/.bin/vitest run "$@" &
vitest=$!
set +m
wait "$vitest"
status=$?
vitest=
echo "test:busy: vitest exited ${status} after $(($(date +%s) - started)) s beside ${hogs} hogs" >&2
exit "$status"
