#!/bin/bash
# keel-firstboot on large hostile configs: `keel-firstboot validate` of
#  - a 16 MB config that is nothing but unknown keys (about 1.2 million),
#  - a config with 20,000 files and 20,000 links,
# timed with peak RSS, for this tree's keel-firstboot and for the one built
# from an older commit (default 5483bba, before the bounds of issue 15),
# side by side in one run. Prints a Markdown table on stdout (see
# docs/performance.md); progress goes to stderr.
#
#   ./scripts/bench-firstboot.sh [OLD-COMMIT]
#
# Environment:
#   BENCH_DIR   parent of the temporary work directory (default: $TMPDIR or /tmp)
#   BENCH_RUNS  runs per binary and config (default 3; the table has the best
#               time and the largest peak RSS)
#
# The old commit is checked out in a temporary git worktree (removed at the
# end) and built with this tree's target directory, so only the changed
# crates are compiled again.
set -euo pipefail

OLD=${1:-5483bba}
RUNS=${BENCH_RUNS:-3}
HERE=$(cd "$(dirname "$0")/.." && pwd)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

log() { echo "bench: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ -x /usr/bin/time ] || die "GNU time (/usr/bin/time) is needed for peak RSS"
command -v python3 >/dev/null || die "python3 is needed to write the configs"

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/keel-bench-firstboot.XXXXXX")
OLD_TREE=$W/old
cleanup() {
  git -C "$HERE" worktree remove --force "$OLD_TREE" >/dev/null 2>&1 || true
  rm -rf "$W"
}
trap cleanup EXIT
log "work directory: $W"

build() { # tree, output binary
  log "building keel-firstboot (release) in $1"
  (cd "$1" && CARGO_TARGET_DIR=$HERE/target cargo build --release --locked -q -p keel-firstboot) >&2
  cp -p "$HERE/target/release/keel-firstboot" "$2"
}
git -C "$HERE" worktree add --detach -q "$OLD_TREE" "$OLD"
mkdir "$W/bin"
build "$OLD_TREE" "$W/bin/old"
build "$HERE" "$W/bin/new"
NEW_ID="$(git -C "$HERE" rev-parse --short HEAD)$(git -C "$HERE" diff --quiet HEAD -- firstboot || echo +changes)"
OLD_ID=$(git -C "$HERE" rev-parse --short "$OLD")

log "writing the configs"
python3 - "$W" <<'EOF'
import json, sys
w = sys.argv[1]
# Unknown keys: top-level "k0000000":0 pairs up to 16 MB.
with open(f"{w}/unknown.json", "w") as f:
    f.write('{"ignition":{"version":"3.4.0"}')
    size, i = 0, 0
    while size < 16 * 1000 * 1000:
        item = f',"k{i:07d}":0'
        f.write(item)
        size += len(item)
        i += 1
    f.write("}\n")
    print(i, file=open(f"{w}/unknown.count", "w"))
# 20,000 files in 200 directories, and 20,000 links to them elsewhere.
files = [{"path": f"/srv/d{i // 100}/f{i}", "contents": {"source": "data:,x"}} for i in range(20000)]
links = [{"path": f"/srv/l{i // 100}/l{i}", "target": f"/srv/d{i // 100}/f{i}"} for i in range(20000)]
json.dump({"ignition": {"version": "3.4.0"}, "storage": {"files": files, "links": links}},
          open(f"{w}/nodes.json", "w"))
EOF
UNKNOWN=$(cat "$W/unknown.count")

# run BINARY CONFIG: prints "best-seconds max-kib exit-code warnings-printed"
run() {
  local best="" peak=0 rc=0 lines=0
  for _ in $(seq "$RUNS"); do
    set +e
    /usr/bin/time -f "%e %M" -o "$W/time" "$1" validate "$2" >"$W/out" 2>/dev/null
    rc=$?
    set -e
    read -r t m <"$W/time"
    lines=$(wc -l <"$W/out")
    if [ -z "$best" ] || awk "BEGIN{exit !($t < $best)}"; then best=$t; fi
    [ "$m" -gt "$peak" ] && peak=$m
  done
  echo "$best $peak $rc $lines"
}

echo "| config | binary | time (best of $RUNS) | peak RSS | exit | lines printed |"
echo "|---|---|---|---|---|---|"
for c in unknown nodes; do
  case $c in
    unknown) name="16 MB, $UNKNOWN unknown keys" ;;
    nodes) name="20,000 files + 20,000 links" ;;
  esac
  for b in old new; do
    log "$c with $b"
    read -r t m rc lines < <(run "$W/bin/$b" "$W/$c.json")
    id=$OLD_ID
    [ "$b" = new ] && id=$NEW_ID
    printf '| %s | %s (%s) | %s s | %d MiB | %s | %s |\n' "$name" "$b" "$id" "$t" $((m / 1024)) "$rc" "$lines"
  done
done
echo
echo "Machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p' | head -1), load average $LOAD_START at the start (before the builds), $(cut -d' ' -f1-3 /proc/loadavg) at the end; $(date -u '+%Y-%m-%d %H:%M UTC')."
