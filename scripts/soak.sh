#!/usr/bin/env bash
# Soak test (not run in CI). N replicas of one database on 127.0.0.1, each
# with a `crsyncd run` sidecar and a `crsync-writer` app that writes random
# inserts, updates and deletes through the crsync VFS (so the sidecars are
# woken by the commit signal), for a configurable time, while sidecars are
# killed with SIGKILL at random and restarted after a random short pause.
# Then the writers stop, the replicas must converge (bounded wait) to the
# same rows and the same crsql_changes (apart from the local db_version), and
# a report says what was written and moved, how many restarts were survived
# and the worst lag observed.
#
#   scripts/soak.sh [--minutes M | --seconds S] [--nodes N] [--dir DIR] [--keep]
#                   [--topology mesh|line] [--rate TPS] [--kill-every S]
#                   [--settle S] [--seed N] [--merge-equal-values]
#
#   --minutes / --seconds  how long the writers write (default 3 minutes)
#   --nodes N          replicas (default 3, 2..12)
#   --topology T       mesh (default): every sidecar listens and dials every
#                      lower-numbered one, so each pair has its own connection;
#                      line: node i dials node i-1 only (changes between the
#                      ends are relayed by the nodes in between)
#   --rate TPS         transactions per second per writer (default 10)
#   --kill-every S     mean seconds between two kills (default 6; uniform in
#                      [S/2, 3S/2]); a killed sidecar restarts after 0.2-4 s;
#                      one sidecar is down at a time; 0 = no kills
#   --settle S         how long to wait for convergence after the writers
#                      stop (default 90)
#   --seed N           seeds the writers and the kill schedule (default random;
#                      printed, but timing makes a run not exactly repeatable)
#   --dir DIR          where the databases and logs go (default a fresh
#                      /tmp/crsync-soak-XXXXXX); node* files in it are replaced
#   --keep             keep DIR afterwards (it is always kept when the run fails)
#   --merge-equal-values  create the databases with that engine setting, under
#                      which the origin (site id, seq) of every column value
#                      must converge too, and compare it
#
# "Identical" means: the same rows in every CRR and the same crsql_changes
# records, without the local db_version and without what the merge rules keep
# per replica (see `crsync-writer --help`, --dump): live sentinels at an equal
# causal length, the origin of sentinels and, unless --merge-equal-values,
# the origin of a value two sites wrote equally. The report also says whether
# all origins matched.
#
# Builds crsyncd and crsync-writer in $BUILD_DIR (default build-soak, set up
# with -Dbenchmarks=false if missing) with JOBS parallel jobs (default 1).
# Exit status: 0 when the replicas are identical and nothing went wrong (no
# sidecar exit we did not cause, every (re)start ready within 10 s, clean
# SIGTERM stops, no writer error, every receive cursor at its sender's
# db_version), 1 otherwise, 2 on bad usage or a failed build.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
duration=180 nodes=3 dir="" keep=0 topology=mesh rate=10 kill_every=6 settle=90 merge_equal=0
seed=$(( (RANDOM << 15) | RANDOM ))
need() { [ $# -ge 2 ] || { echo "soak.sh: $1 needs a value (try --help)" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) need "$@"; duration=$(awk -v m="$2" 'BEGIN { printf "%d", m * 60 }'); shift 2 ;;
    --seconds) need "$@"; duration=$2; shift 2 ;;
    --nodes) need "$@"; nodes=$2; shift 2 ;;
    --dir) need "$@"; dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --merge-equal-values) merge_equal=1; shift ;;
    --topology) need "$@"; topology=$2; shift 2 ;;
    --rate) need "$@"; rate=$2; shift 2 ;;
    --kill-every) need "$@"; kill_every=$2; shift 2 ;;
    --settle) need "$@"; settle=$2; shift 2 ;;
    --seed) need "$@"; seed=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "soak.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
int() { [[ $1 =~ ^[0-9]+$ ]]; }
if ! int "$duration" || ! int "$nodes" || ! int "$kill_every" || ! int "$settle" || ! int "$seed" ||
   [ "$duration" -lt 1 ] || [ "$nodes" -lt 2 ] || [ "$nodes" -gt 12 ] ||
   [[ ! $rate =~ ^[0-9]+(\.[0-9]+)?$ ]] || [[ $topology != mesh && $topology != line ]]; then
  echo "soak.sh: bad arguments: whole seconds >= 1, 2..12 nodes, mesh or line (try --help)" >&2
  exit 2
fi

# --- build ---
build=${BUILD_DIR:-build-soak}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" -Dbenchmarks=false >/dev/null || { echo "soak.sh: meson setup failed" >&2; exit 2; }
fi
ninja -C "$build" -j "${JOBS:-1}" tools/crsyncd tools/crsync-writer >/dev/null ||
  { echo "soak.sh: build failed (ninja -C $build)" >&2; exit 2; }
crsyncd=$(realpath "$build/tools/crsyncd")
writer=$(realpath "$build/tools/crsync-writer")

# --- state ---
if [ -z "$dir" ]; then
  dir=$(mktemp -d /tmp/crsync-soak-XXXXXX)
else
  mkdir -p "$dir" && rm -f "$dir"/node* "$dir"/samples.tsv "$dir"/events.tsv
fi
dir=$(realpath "$dir")
RANDOM=$seed
declare -a db port spid wpid down_since restart_at restarts_of exits_of last_kill_of site ver
declare -A site_node rec
samples=$dir/samples.tsv events=$dir/events.tsv
: >"$samples"
: >"$events"
round=0 start_failures=0
t_start=${EPOCHREALTIME//[.,]/}
now=0 # milliseconds since t_start, set by tick
tick() { local t=${EPOCHREALTIME//[.,]/}; now=$(( (t - t_start) / 1000 )); }
event() { tick; echo "$now $*" >>"$events"; }
say() { printf '[%5.1fs] %s\n' "$(awk -v t="$now" 'BEGIN { print t / 1000 }')" "$*"; }

# Every process this script starts is ended by pid, here or on any exit;
# a pid is signalled only while it is still a child of this shell.
ours() {
  local s
  [ -n "$1" ] && [ "$1" -gt 0 ] && s=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  s=${s##*) }  # fields after the command name: state, ppid, ...
  set -- $s
  [ "$2" = "$$" ]
}
cleanup() {
  local p left=0
  for p in "${wpid[@]}" "${spid[@]}"; do
    ours "$p" && kill -TERM "$p" 2>/dev/null && left=1
  done
  [ "$left" = 1 ] && sleep 0.5
  for p in "${wpid[@]}" "${spid[@]}"; do
    ours "$p" && kill -KILL "$p" 2>/dev/null
    ours "$p" && wait "$p" 2>/dev/null
  done
}
trap cleanup EXIT
trap 'echo "soak.sh: interrupted; files in $dir"; keep=1; exit 130' INT TERM

# Starts node i's sidecar: port 0 the first time, then the same port again.
start_sidecar() {
  local i=$1 args=(run --db "${db[$i]}" --listen "127.0.0.1:${port[$i]:-0}") j
  if [ "$topology" = mesh ]; then
    for ((j = 0; j < i; j++)); do args+=(--peer "127.0.0.1:${port[$j]}"); done
  elif [ "$i" -gt 0 ]; then
    args+=(--peer "127.0.0.1:${port[$((i - 1))]}")
  fi
  # Emptied here, not by the child's redirection: the child may open the
  # file only after the loop below has read the last instance's "ready".
  : >"$dir/node$i.crsyncd.out"
  "$crsyncd" "${args[@]}" >>"$dir/node$i.crsyncd.out" 2>>"$dir/node$i.crsyncd.log" &
  spid[$i]=$!
  tick
  local t0=$now
  while tick; [ "$now" -lt $((t0 + 10000)) ]; do  # at most 10 s
    grep -q '^ready$' "$dir/node$i.crsyncd.out" 2>/dev/null && break
    kill -0 "${spid[$i]}" 2>/dev/null || break
    sleep 0.05
  done
  if ! grep -q '^ready$' "$dir/node$i.crsyncd.out"; then
    local why="not ready after $(( (now - t0) / 1000 )) s"
    kill -0 "${spid[$i]}" 2>/dev/null || why="exited"
    ours "${spid[$i]}" && kill -KILL "${spid[$i]}" 2>/dev/null
    wait "${spid[$i]}" 2>/dev/null
    local st=$?
    [ "$why" = exited ] && why="exited with status $st"
    spid[$i]=0
    event "NOTREADY $i $st"
    start_failures=$((start_failures + 1))
    echo "soak.sh: node $i's sidecar did not start ($why); see $dir/node$i.crsyncd.log" >&2
    return 1
  fi
  [ -z "${port[$i]:-}" ] && port[$i]=$(sed -n 's/^listening \([0-9]*\)$/\1/p' "$dir/node$i.crsyncd.out")
  down_since[$i]=""
  event "UP $i"
}

# One sample of every node: db_version and receive cursors (crsyncd status).
sample() {
  local i a b c
  round=$((round + 1))
  for ((i = 0; i < nodes; i++)); do
    local out
    out=$("$crsyncd" status --db "${db[$i]}" 2>/dev/null) || continue
    tick
    while read -r a b c _; do
      if [ "$a" = db_version ]; then
        ver[$i]=$b
        echo "$round $now $i V $b" >>"$samples"
      elif [ "$a" = site ] && [ "$b" = id ]; then
        site[$i]=$c
        site_node[$c]=$i
      elif [[ $a =~ ^[0-9A-Fa-f]{32}$ ]] && [ -n "${site_node[$a]:-}" ]; then
        rec[$i,${site_node[$a]}]=$b
        echo "$round $now $i C ${site_node[$a]} $b" >>"$samples"
      fi
    done <<<"$out"
  done
}
# Dumps every node (crsync-writer --dump) into nodeI.dump and the compared
# part into nodeI.state (origins stripped unless --merge-equal-values);
# returns 0 when every nodeI.state equals node0's.
compare_dumps() {
  local i same=0
  for ((i = 0; i < nodes; i++)); do
    "$writer" --db "${db[$i]}" --dump >"$dir/node$i.dump" 2>"$dir/node$i.dump.err" || same=1
    if [ "$merge_equal" = 1 ]; then  # origins of values must match, not of sentinels
      sed -E "/^change '[^']*' X'[0-9a-f]*' '-1' /s/ \| X'[0-9a-f]*' -?[0-9]+$//" \
        "$dir/node$i.dump" >"$dir/node$i.state"
    else
      sed -E "s/ \| X'[0-9a-f]*' -?[0-9]+$//" "$dir/node$i.dump" >"$dir/node$i.state"
    fi
  done
  for ((i = 1; i < nodes; i++)); do cmp -s "$dir/node0.state" "$dir/node$i.state" || same=1; done
  return $same
}
# Current largest sender-version minus receiver-cursor over all links.
lag_now() {
  local j p m=0 l
  for ((j = 0; j < nodes; j++)); do
    for ((p = 0; p < nodes; p++)); do
      [ -n "${rec[$j,$p]:-}" ] || continue
      l=$(( ${ver[$p]:-0} - ${rec[$j,$p]} ))
      [ "$l" -gt "$m" ] && m=$l
    done
  done
  echo "$m"
}
links_caught_up() {
  local j p expect
  for ((j = 0; j < nodes; j++)); do
    for ((p = 0; p < nodes; p++)); do
      [ "$p" -eq "$j" ] && continue
      expect=0
      if [ "$topology" = mesh ] || [ $((j - p)) -eq 1 ] || [ $((p - j)) -eq 1 ]; then expect=1; fi
      [ "$expect" = 1 ] || continue
      [ "${rec[$j,$p]:-x}" = "${ver[$p]:-y}" ] || return 1
    done
  done
}
# Sidecars that exited without being killed by us: a crash or a fatal error.
check_sidecars() {
  local i st
  for ((i = 0; i < nodes; i++)); do
    [ -z "${down_since[$i]}" ] || continue
    if ! kill -0 "${spid[$i]}" 2>/dev/null; then
      wait "${spid[$i]}" 2>/dev/null
      st=$?
      exits_of[$i]=$(( ${exits_of[$i]:-0} + 1 ))
      event "EXIT $i $st"
      tick
      say "node $i's sidecar exited on its own (status $st; see $dir/node$i.crsyncd.log); restarting it"
      spid[$i]=0
      down_since[$i]=$now
      restart_at[$i]=$now
    fi
  done
}

# --- set up ---
echo "soak: $nodes nodes ($topology), ${duration}s of writes at $rate txn/s each, a kill -9 every ~${kill_every}s, seed $seed, in $dir"
for ((i = 0; i < nodes; i++)); do
  db[$i]=$dir/node$i.db
  spid[$i]=0 wpid[$i]=0 down_since[$i]="" restarts_of[$i]=0 exits_of[$i]=0
  init=(--init)
  [ "$merge_equal" = 1 ] && init+=(--merge-equal-values)
  "$writer" --db "${db[$i]}" "${init[@]}" --seconds 0 >/dev/null || { echo "soak.sh: cannot create ${db[$i]}" >&2; keep=1; exit 1; }
done
for ((i = 0; i < nodes; i++)); do
  start_sidecar "$i" || { keep=1; exit 1; }
done
echo "soak: sidecars on ports ${port[*]}; logs $dir/node*.crsyncd.log"
for ((i = 0; i < nodes; i++)); do
  "$writer" --db "${db[$i]}" --seconds "$duration" --rate "$rate" --seed $((seed * 100 + i)) \
    >"$dir/node$i.writer.log" 2>&1 &
  wpid[$i]=$!
done
tick
writes_start=$now

# --- the soak: sample, kill, restart ---
next_kill=$(( now + kill_every * 1000 ))
last_progress=$now
kills=0
while tick; [ $((now - writes_start)) -lt $((duration * 1000)) ]; do
  sample
  check_sidecars
  tick
  for ((i = 0; i < nodes; i++)); do
    if [ -n "${down_since[$i]}" ] && [ "$now" -ge "${restart_at[$i]}" ]; then
      if start_sidecar "$i"; then
        [ "${last_kill_of[$i]:-0}" = 1 ] && restarts_of[$i]=$(( restarts_of[$i] + 1 ))
        last_kill_of[$i]=0
      else
        tick; restart_at[$i]=$((now + 1000))
      fi
    fi
  done
  anydown=0
  for ((i = 0; i < nodes; i++)); do [ -n "${down_since[$i]}" ] && anydown=1; done
  if [ "$kill_every" -gt 0 ] && [ "$anydown" = 0 ] && [ "$now" -ge "$next_kill" ]; then
    i=$((RANDOM % nodes))
    ours "${spid[$i]}" && kill -KILL "${spid[$i]}"
    wait "${spid[$i]}" 2>/dev/null
    spid[$i]=0
    event "KILL $i"
    kills=$((kills + 1))
    last_kill_of[$i]=1
    down_since[$i]=$now
    pause=$((200 + RANDOM % 3800))
    restart_at[$i]=$((now + pause))
    next_kill=$((now + kill_every * 500 + (RANDOM << 15 | RANDOM) % (kill_every * 1000 + 1)))
  fi
  if [ $((now - last_progress)) -ge 15000 ]; then
    last_progress=$now
    down=""
    for ((i = 0; i < nodes; i++)); do [ -n "${down_since[$i]}" ] && down+=" node$i"; done
    say "db_versions ${ver[*]}  link lag now $(lag_now) versions  kills $kills${down:+  down:$down}"
  fi
  sleep 0.3
done

# --- wind down: every sidecar up, writers finish, wait for convergence ---
tick
for ((i = 0; i < nodes; i++)); do
  if [ -n "${down_since[$i]}" ]; then
    start_sidecar "$i" && [ "${last_kill_of[$i]:-0}" = 1 ] && restarts_of[$i]=$(( restarts_of[$i] + 1 ))
  fi
done
writer_fail=0
for ((i = 0; i < nodes; i++)); do
  for ((k = 0; k < 300; k++)); do kill -0 "${wpid[$i]}" 2>/dev/null || break; sleep 0.1; done
  ours "${wpid[$i]}" && kill -TERM "${wpid[$i]}" 2>/dev/null
  wait "${wpid[$i]}"
  st=$?
  wpid[$i]=0
  [ "$st" -eq 0 ] || { writer_fail=1; echo "soak.sh: node $i's writer failed (status $st): $(tail -3 "$dir/node$i.writer.log")" >&2; }
done
event "WRITERS_DONE"
tick
writers_done=$now
say "writers done; waiting up to ${settle}s for convergence"
converged=0
while tick; [ $((now - writers_done)) -lt $((settle * 1000)) ]; do
  sample
  check_sidecars
  for ((i = 0; i < nodes; i++)); do
    [ -n "${down_since[$i]}" ] && start_sidecar "$i"
  done
  if links_caught_up && compare_dumps; then
    converged=1
    break
  fi
  sleep 0.5
done
tick
converge_ms=$((now - writers_done))
caught_up=0
links_caught_up && caught_up=1
event "SETTLED $converged"

# Clean stop: every sidecar must exit 0 on SIGTERM.
unclean=0
for ((i = 0; i < nodes; i++)); do
  [ "${spid[$i]}" -gt 0 ] || continue
  ours "${spid[$i]}" && kill -TERM "${spid[$i]}" 2>/dev/null
  for ((k = 0; k < 100; k++)); do kill -0 "${spid[$i]}" 2>/dev/null || break; sleep 0.1; done
  ours "${spid[$i]}" && kill -KILL "${spid[$i]}" 2>/dev/null
  wait "${spid[$i]}" 2>/dev/null
  st=$?
  spid[$i]=0
  [ "$st" -eq 0 ] || { unclean=$((unclean + 1)); echo "soak.sh: node $i's sidecar did not stop cleanly (status $st)" >&2; }
done

# The authoritative comparison, with nothing running.
identical=1
compare_dumps || identical=0
origins_differ=0
for ((i = 1; i < nodes; i++)); do
  if ! cmp -s "$dir/node0.state" "$dir/node$i.state"; then
    echo "soak: node0 and node$i differ (first lines of the diff; full dumps in $dir):"
    diff "$dir/node0.state" "$dir/node$i.state" | head -20
  fi
  o=$(diff "$dir/node0.dump" "$dir/node$i.dump" | grep -c '^<')
  [ "$o" -gt "$origins_differ" ] && origins_differ=$o
done

# --- report ---
exits=0
for ((i = 0; i < nodes; i++)); do exits=$((exits + ${exits_of[$i]:-0})); done
export SOAK_DIR=$dir SOAK_NODES=$nodes SOAK_TOPOLOGY=$topology SOAK_SEED=$seed SOAK_DURATION=$duration \
       SOAK_RATE=$rate SOAK_CONVERGED=$converged SOAK_IDENTICAL=$identical SOAK_CONVERGE_MS=$converge_ms \
       SOAK_ORIGINS_DIFFER=$origins_differ SOAK_MERGE_EQUAL=$merge_equal SOAK_UNCLEAN=$unclean SOAK_EXITS=$exits SOAK_SITES="${site[*]}" \
       SOAK_RESTARTS="${restarts_of[*]}" SOAK_KILLS=$kills SOAK_START_FAILURES=$start_failures \
       SOAK_WRITER_FAIL=$writer_fail SOAK_CAUGHT_UP=$caught_up
python3 - <<'EOF'
import collections, os, re

d = os.environ["SOAK_DIR"]
n = int(os.environ["SOAK_NODES"])
sites = os.environ["SOAK_SITES"].lower().split()
E = os.environ.get

# Samples: "round t node V version" and "round t node C peer cursor".
V = collections.defaultdict(list)          # node -> [(round, t, version)]
C = collections.defaultdict(list)          # (receiver, sender) -> [(round, t, cursor)]
by_round = collections.defaultdict(dict)   # round -> {("V", node) | ("C", j, p): value}
t_end = 0
for line in open(os.path.join(d, "samples.tsv")):
    f = line.split()
    r, t, i = int(f[0]), int(f[1]), int(f[2])
    t_end = max(t_end, t)
    if f[3] == "V":
        V[i].append((r, t, int(f[4])))
        by_round[r][("V", i)] = int(f[4])
    else:
        C[(i, int(f[4]))].append((r, t, int(f[5])))
        by_round[r][("C", i, int(f[4]))] = int(f[5])

# Down intervals per node: from KILL / EXIT to the next UP.
down = collections.defaultdict(list)
since = {}
writers_done = None
for line in open(os.path.join(d, "events.tsv")):
    f = line.split()
    t, what = int(f[0]), f[1]
    if what in ("KILL", "EXIT"):
        since[int(f[2])] = t
    elif what == "UP" and int(f[2]) in since:
        down[int(f[2])].append((since.pop(int(f[2])), t))
    elif what == "WRITERS_DONE":
        writers_done = t
for i, t in since.items():
    down[i].append((t, t_end))

# A sidecar needs up to ~5 s after a restart before every peer has redialled
# (backoff capped at 5 s): windows touching [kill, restart + 6 s] of either
# end of a link count as outage-affected.
def affected(i, a, b):
    return any(a <= up + 6000 and b >= k for k, up in down[i])

# Time lag of link p -> j: for each version of p as sampled (first time it
# was seen), the time until j's receive cursor for p was first seen >= it
# (in the same sampling round or a later one; 0 if already there).
max_all = (0, None)
max_steady = (0, None)
pending = []
for (j, p), cur in sorted(C.items()):
    k = 0
    seen = set()
    for r0, t0, v in V[p]:
        if v in seen or v == 0:
            continue
        seen.add(v)
        while k < len(cur) and (cur[k][0] < r0 or cur[k][2] < v):
            k += 1
        if k == len(cur):
            pending.append((p, j, v, t_end - t0))
            break
        lag = max(0, cur[k][1] - t0)
        where = f"node{p} -> node{j} at node{p}'s version {v}"
        if lag > max_all[0]:
            max_all = (lag, where)
        if not affected(p, t0, t0 + lag) and not affected(j, t0, t0 + lag) and lag > max_steady[0]:
            max_steady = (lag, where)

# Version lag: in one sampling round, sender's db_version - receiver's cursor.
max_v = (0, None)
for r, vals in by_round.items():
    for key, cur in vals.items():
        if key[0] != "C":
            continue
        _, j, p = key
        if ("V", p) in vals and vals[("V", p)] - cur > max_v[0]:
            max_v = (vals[("V", p)] - cur, f"node{p} -> node{j}")
rounds = len(by_round)
span = (max(t for vs in V.values() for _, t, _ in vs) - min(t for vs in V.values() for _, t, _ in vs)) if V else 0
resolution = span / max(1, rounds - 1) / 1000

# Writers' summaries.
writes = []
tot_txns = tot_ops = tot_changes = 0
for i in range(n):
    text = open(os.path.join(d, f"node{i}.writer.log")).read()
    m = re.findall(r"^crsync-writer .*$", text, re.M)
    kv = dict(x.split("=", 1) for x in m[-1].split()[1:]) if m else {}
    writes.append(kv)
    tot_txns += int(kv.get("txns", 0))
    tot_ops += int(kv.get("ops", 0))
    tot_changes += int(kv.get("changes", 0))

# Changes moved: crsql_changes rows held by each node whose origin is
# another node (what replication brought and is still live; superseded
# changes are not counted), and the receive cursors at the end.
moved = []
rows = collections.Counter()
changes = 0
for i in range(n):
    path = os.path.join(d, f"node{i}.dump")
    remote = 0
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if f[0] == "change":
                if i == 0:
                    changes += 1
                # change TABLE PK CID VAL COL_VERSION CL | SITE_ID SEQ
                if sites and f[-2] != f"X'{sites[i]}'":
                    remote += 1
            elif f[0] == "row" and i == 0:
                rows[f[1]] += 1
    moved.append(remote)
cursors = {k: v[-1][2] for k, v in C.items() if v}

# Error lines in the sidecar logs, by kind (numbers and addresses blanked).
errors = collections.Counter()
for i in range(n):
    p = os.path.join(d, f"node{i}.crsyncd.log")
    if os.path.exists(p):
        for line in open(p):
            if line.startswith("crsyncd error:"):
                errors[re.sub(r"\d+", "N", line.strip()[len("crsyncd error: "):])] += 1

restarts = [int(x) for x in E("SOAK_RESTARTS").split()]
ok = E("SOAK_IDENTICAL") == "1" and E("SOAK_CONVERGED") == "1" and E("SOAK_EXITS") == "0" \
    and E("SOAK_UNCLEAN") == "0" and E("SOAK_START_FAILURES") == "0" and E("SOAK_WRITER_FAIL") == "0"
print()
print("=== crsync soak report ===")
print(f"duration         {E('SOAK_DURATION')} s of writes, {n} nodes ({E('SOAK_TOPOLOGY')}), "
      f"{E('SOAK_RATE')} txn/s per writer, seed {E('SOAK_SEED')}")
print(f"files            {d}")
for i, kv in enumerate(writes):
    print(f"{'writes' if i == 0 else '':16} node{i}: {kv.get('txns', '?')} txns, {kv.get('ops', '?')} statements "
          f"({kv.get('inserts', '?')} upserts, {kv.get('updates', '?')} updates, {kv.get('deletes', '?')} deletes) "
          f"recording {kv.get('changes', '?')} changes, busy {kv.get('busy', '?')}, errors {kv.get('errors', '?')}, final db_version {kv.get('db_version', '?')}")
print(f"{'':16} total {tot_txns} transactions, {tot_ops} statements, {tot_changes} changes")
print(f"changes moved    {tot_changes * (n - 1)} deliveries: each of the {tot_changes} changes written had to "
      f"reach the {n - 1} other replicas (relayed duplicates not counted)")
print(f"{'':16} at the end each node holds {changes} compared crsql_changes records; written by another node: "
      f"{', '.join(f'node{i} {m}' for i, m in enumerate(moved))}")
print(f"{'':16} receive cursors (sender versions covered): "
      + ", ".join(f"node{j}<-node{p} {c}" for (j, p), c in sorted(cursors.items())))
print(f"restarts         {E('SOAK_KILLS')} kill -9 + restart cycles survived "
      f"({', '.join(f'node{i} {r}' for i, r in enumerate(restarts))}); "
      f"sidecar exits not caused by the script: {E('SOAK_EXITS')}; "
      f"starts not ready within 10 s: {E('SOAK_START_FAILURES')}; "
      f"unclean SIGTERM stops: {E('SOAK_UNCLEAN')}")
print(f"max lag          time from a sender's db_version being first seen to the receiver's cursor for it "
      f"being first seen to cover it (per link, sampled every ~{resolution:.2f} s):")
print(f"{'':16}   {max_all[0] / 1000:.1f} s over all samples ({max_all[1]}), including sidecar outages")
print(f"{'':16}   {max_steady[0] / 1000:.1f} s with both ends up (no kill within the window or "
      f"6 s before it) ({max_steady[1]})")
print(f"{'':16} versions: {max_v[0]} ({max_v[1]}) = max over sampling rounds of sender db_version - "
      f"receiver cursor (a clock difference: merges advance clocks, so it is not a transaction count)")
if pending:
    print(f"{'':16} NOT covered at the end: " + ", ".join(f"node{p}->node{j} v{v}" for p, j, v, _ in pending[:6]))
print(f"sidecar errors   {sum(errors.values())} error lines in the logs"
      + (":" if errors else ""))
for msg, c in errors.most_common(8):
    print(f"{'':16}   {c:5} x {msg[:110]}")
conv_s = int(E("SOAK_CONVERGE_MS")) / 1000
if E("SOAK_CONVERGED") == "1":
    print(f"converged        yes, {conv_s:.1f} s after the writers stopped: identical rows "
          f"({', '.join(f'{t} {c}' for t, c in sorted(rows.items()))}) and crsql_changes ({changes} "
          f"records) on all {n} nodes; every receive cursor at its sender's db_version")
    od = int(E("SOAK_ORIGINS_DIFFER"))
    print(f"{'':16} origins (site id, seq) of those records: "
          + ("identical too" if od == 0 else f"{od} records differ from node0's at most "
             "(allowed for sentinels, and for values two sites wrote equally unless "
             "--merge-equal-values)"))
else:
    print(f"converged        NO within {conv_s:.0f} s; receive cursors caught up: "
          f"{'yes' if E('SOAK_CAUGHT_UP') == '1' else 'NO'}; identical after stopping the sidecars: "
          f"{'yes' if E('SOAK_IDENTICAL') == '1' else 'NO'}")
print("verdict          " + ("PASS" if ok else "FAIL"))
raise SystemExit(0 if ok else 1)
EOF
verdict=$?
if [ "$identical" = 1 ] && [ "$converged" = 1 ] && [ "$exits" = 0 ] && [ "$unclean" = 0 ] &&
   [ "$writer_fail" = 0 ] && [ "$verdict" = 0 ]; then
  if [ "$keep" = 0 ]; then rm -rf "$dir"; else echo "soak: files kept in $dir"; fi
  exit 0
fi
echo "soak: FAILED; files kept in $dir"
exit 1
