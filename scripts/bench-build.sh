#!/bin/bash
# Build benchmark: cold and warm `osbuild build` of one image config, the
# image sizes, and mmdebstrap building a comparable tree side by side.
# Prints a Markdown report on stdout (see docs/performance.md); progress and
# tool logs go to stderr and to the work directory.
#
#   ./scripts/bench-build.sh image-configs/minimal.toml     (or `make bench`)
#
# Environment:
#   KEEL_OSBUILD, KEEL_INIT_BINARY  the binaries (default: the release builds)
#   BENCH_DIR     parent of the temporary work directory (default: $TMPDIR or /tmp)
#   BENCH_KEEP=1  keep the work directory (images, logs) instead of deleting it
#   BENCH_MMDEBSTRAP=0  skip the mmdebstrap comparison
#
# The osbuild download cache used here is a fresh empty directory inside the
# work directory; the user's cache (~/.cache/keel) is never read or written.
set -euo pipefail

CONFIG=${1:?usage: bench-build.sh IMAGE-CONFIG.toml}
OSBUILD=${KEEL_OSBUILD:-target/release/osbuild}
INIT=${KEEL_INIT_BINARY:-target/x86_64-unknown-linux-gnu/release/keel-init}
FIRSTBOOT=${KEEL_FIRSTBOOT_BINARY:-target/x86_64-unknown-linux-gnu/release/keel-firstboot}
RUNS_MMDEB=2

log() { echo "bench: $*" >&2; }
die() {
  log "error: $*"
  exit 1
}

[ -f "$CONFIG" ] || die "no image config $CONFIG"
[ -x "$OSBUILD" ] || die "no osbuild binary at $OSBUILD (run make osbuild)"
[ -x "$INIT" ] || die "no keel-init binary at $INIT (run make init)"
[ -x "$FIRSTBOOT" ] || die "no keel-firstboot binary at $FIRSTBOOT (run make init)"
[ "$(id -u)" -eq 0 ] || log "warning: not root: osbuild cannot preserve file owners and mmdebstrap needs root"

if [ ! -x /usr/bin/time ] && [ "$(id -u)" -eq 0 ]; then
  log "installing GNU time for max-RSS figures"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq time >/dev/null 2>&1 ||
    log "warning: could not install GNU time; max RSS will not be reported"
fi

W=$(mktemp -d "${BENCH_DIR:-${TMPDIR:-/tmp}}/keel-bench.XXXXXX")
if [ "${BENCH_KEEP:-0}" = 1 ]; then
  log "work directory (kept): $W"
else
  trap 'rm -rf "$W"' EXIT
  log "work directory: $W"
fi

# Snapshot the binaries: a rebuild by someone else during the run must not
# change what is measured half way through.
mkdir "$W/bin"
cp -p "$OSBUILD" "$W/bin/osbuild"
cp -p "$INIT" "$W/bin/keel-init"
cp -p "$FIRSTBOOT" "$W/bin/keel-firstboot"
OSBUILD=$W/bin/osbuild
OSBUILD_ID="$(sha256sum "$OSBUILD" | cut -c1-12), built $(date -u -r "$OSBUILD" '+%Y-%m-%d %H:%M UTC')"
INIT=$W/bin/keel-init
FIRSTBOOT=$W/bin/keel-firstboot

# --- config ---------------------------------------------------------------
# One line per field: the include list (with the kernel package), the suites,
# the components. Version constraints in include ("pkg (>= 1)") are dropped
# for mmdebstrap, which only takes names.
mapfile -t CFG < <(python3 - "$CONFIG" <<'EOF'
import re, sys, tomllib
with open(sys.argv[1], "rb") as f:
    c = tomllib.load(f)
p = c["packages"]
names = [re.split(r"[\s(=]", s.strip(), maxsplit=1)[0] for s in p["include"]]
names.append(c["kernel"]["package"])
print(",".join(names))
print(" ".join(p["suites"]))
print(" ".join(p.get("components", ["main"])))
EOF
)
INCLUDE=${CFG[0]}
read -r -a SUITES <<<"${CFG[1]}"
COMPONENTS=${CFG[2]}

# --- timing ---------------------------------------------------------------
# timed NAME CMD...: runs CMD with stdout+stderr to $W/NAME.log and writes
# "<wall seconds> <max RSS KiB or ->" to $W/NAME.time.
timed() {
  local name=$1
  shift
  local rc=0
  log "$name: $*"
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%e %M' -o "$W/$name.time" "$@" >"$W/$name.log" 2>&1 || rc=$?
  else
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >"$W/$name.log" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f -\n", b - a }' >"$W/$name.time"
  fi
  if [ "$rc" -ne 0 ]; then
    tail -n 30 "$W/$name.log" >&2
    die "$name failed (exit $rc); log above"
  fi
  log "$name: $(cut -d' ' -f1 "$W/$name.time") s"
}
wall() { printf '%.1f' "$(cut -d' ' -f1 "$W/$1.time")"; }
rss() {
  local k
  k=$(cut -d' ' -f2 "$W/$1.time")
  if [ "$k" = - ]; then echo "n/a"; else echo "$((k / 1024)) MiB"; fi
}
mib() { python3 -c 'import sys; print(f"{int(sys.argv[1]) / 1048576:.1f} MiB")' "$1"; }

# osbuild's per-step timings from its stderr: a step line "osbuild: NAME"
# followed by a line "osbuild:   ... (N.Ns)".
steps() {
  python3 - "$@" <<'EOF'
import re, sys
runs = []
for path in sys.argv[1:]:
    steps, step = {}, None
    for line in open(path, errors="replace"):
        line = line.rstrip("\n")
        m = re.match(r"osbuild: built \S+ in ([0-9.]+)s$", line)
        if m:
            steps["total (osbuild's own clock)"] = m.group(1)
            continue
        if re.match(r"osbuild: (?! )(?!warning|work tree)", line):
            step = line[len("osbuild: "):]
            continue
        m = re.match(r"osbuild:   .*\(([0-9.]+)s\)$", line)
        if m and step:
            steps[step] = m.group(1)
            step = None
    runs.append(steps)
order = list(runs[0])
for r in runs[1:]:
    order += [k for k in r if k not in order]
print("| step | " + " | ".join(f"run {i + 1} (s)" for i in range(len(runs))) + " |")
print("|---|" + "---:|" * len(runs))
for k in order:
    print(f"| {k} | " + " | ".join(r.get(k, "-") for r in runs) + " |")
EOF
}

# --- osbuild ----------------------------------------------------------------
CACHE=$W/cache
mkdir "$CACHE"
OSB=("$OSBUILD" build "$CONFIG" --cache "$CACHE" --init-binary "$INIT" --firstboot-binary "$FIRSTBOOT")

# Cold: empty cache, network. --keep-work so the erofs root can be measured
# afterwards; it only skips deleting the staging tree at the end.
timed osbuild-cold "${OSB[@]}" --out "$W/cold" --keep-work
# Warm, twice: full cache, --offline proves no network is touched.
timed osbuild-warm1 "${OSB[@]}" --out "$W/warm1" --offline
timed osbuild-warm2 "${OSB[@]}" --out "$W/warm2" --offline

shopt -s nullglob
raws=("$W"/warm1/*.raw)
qcows=("$W"/warm1/*.qcow2)
erofss=("$W"/cold/.work-*/root.erofs)
shopt -u nullglob
[ ${#raws[@]} -eq 1 ] || die "expected one .raw in $W/warm1"
RAW=${raws[0]}
RAW_APPARENT=$(stat -c %s "$RAW")
RAW_ALLOC=$(du -B1 "$RAW" | cut -f1)
QCOW2=$([ ${#qcows[@]} -eq 1 ] && stat -c %s "${qcows[0]}" || echo 0)
EROFS=0
EROFS_ROWS=""
ROOT_TREE=0
ROOT_FILES=0
if [ ${#erofss[@]} -eq 1 ]; then
  EROFS=$(stat -c %s "${erofss[0]}")
  workdir=$(dirname "${erofss[0]}")
  ROOT_TREE=$(du -sB1 --apparent-size "$workdir/root" | cut -f1)
  ROOT_FILES=$(find "$workdir/root" | wc -l)
  # mkfs.erofs alone on the same staging tree: level 12 (slower, what osbuild used first),
  # the default lz4hc level (what osbuild runs), and plain lz4.
  for z in lz4hc,12 lz4hc lz4; do
    timed "mkfs.erofs-$z" mkfs.erofs "-z$z" --quiet "$W/probe.erofs" "$workdir/root"
    EROFS_ROWS+="| \`mkfs.erofs -z$z\` | $(wall "mkfs.erofs-$z") | $(mib "$(stat -c %s "$W/probe.erofs")") |"$'\n'
    rm -f "$W/probe.erofs"
  done
  rm -rf "$workdir"
fi

# Reproducibility: which GPT partitions differ between the raw images.
gpt_diff() {
  python3 - "$@" <<'EOF'
import struct, sys
def parts(path):
    with open(path, "rb") as f:
        f.seek(512)
        lba, n, size = struct.unpack_from("<QII", f.read(92), 72)
        f.seek(lba * 512)
        raw = f.read(n * size)
    out = []
    for i in range(n):
        e = raw[i * size:(i + 1) * size]
        if e[:16] != bytes(16):
            first, last = struct.unpack_from("<QQ", e, 32)
            name = e[56:128].decode("utf-16-le").rstrip("\0")
            out.append((name, first * 512, (last + 1 - first) * 512))
    return out
def same(a, b, off, size):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(off)
        fb.seek(off)
        while size > 0:
            n = min(size, 1 << 20)
            if fa.read(n) != fb.read(n):
                return False
            size -= n
    return True
a, others = sys.argv[1], sys.argv[2:]
differ = []
if not all(same(a, o, 0, 1 << 20) for o in others):
    differ.append("partition table")
for name, off, size in parts(a):
    if not all(same(a, o, off, size) for o in others):
        differ.append(name)
print(", ".join(differ) or "none")
EOF
}
NAME=$(basename "$RAW")
if cmp -s "$RAW" "$W/warm2/$NAME" && cmp -s "$RAW" "$W/cold/$NAME"; then
  IDENTICAL="yes"
else
  IDENTICAL="no; partitions that differ: $(gpt_diff "$RAW" "$W/warm2/$NAME" "$W/cold/$NAME")"
fi
HASHES=$(sed -n 's/.*root hash \([0-9a-f]*\) .*/\1/p' "$W"/osbuild-{cold,warm1,warm2}.log | sort -u | wc -l)
NPKG=$(sed -n 's/^osbuild:   \([0-9]*\) packages,.*/\1/p' "$W/osbuild-cold.log")

# --- mmdebstrap -----------------------------------------------------------
# The mirrors come from the host's apt sources (mmdebstrap itself would use
# its built-in default mirror): every enabled `deb` entry for one of the
# config's suites becomes a one-line sources entry.
mmdeb_sources() {
  python3 - "${SUITES[@]}" <<'EOF'
import glob, re, sys
want = set(sys.argv[1:])
out = []
def emit(uris, suites, comps, signed):
    opt = f"[signed-by={signed}] " if signed else ""
    for u in uris:
        for s in suites:
            if s in want:
                out.append(f"deb {opt}{u} {s} {' '.join(comps)}")
for path in sorted(glob.glob("/etc/apt/sources.list") + glob.glob("/etc/apt/sources.list.d/*.list")):
    for line in open(path, errors="replace"):
        line = line.split("#", 1)[0].strip()
        m = re.match(r"deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s+(.*)", line)
        if not m:
            continue
        opts = dict(o.split("=", 1) for o in (m.group(1) or "").split() if "=" in o)
        emit([m.group(2)], [m.group(3)], m.group(4).split(), opts.get("signed-by"))
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(path, errors="replace").read()):
        f, key = {}, None
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                f[key] += " " + line.strip()
                continue
            key, _, val = line.partition(":")
            key = key.strip().lower()
            f[key] = val.strip()
        if "deb" not in f.get("types", "").split() or f.get("enabled", "yes").lower() == "no":
            continue
        emit(f.get("uris", "").split(), f.get("suites", "").split(),
             f.get("components", "main").split(), f.get("signed-by"))
print("\n".join(dict.fromkeys(out)))
EOF
}

MMDEB_ROWS=""
MMDEB_EROFS=0
MMDEB_EROFS_SLIM=0
MMDEB_TREE=0
MMDEB_NPKG=""
if [ "${BENCH_MMDEBSTRAP:-1}" != 0 ]; then
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing (make deps installs it)"
  mapfile -t SRC < <(mmdeb_sources)
  [ ${#SRC[@]} -gt 0 ] || die "no apt source on this host serves ${SUITES[*]}"
  APTOPT=()
  # Forward the host's apt settings that decide whether its mirror works at
  # all (e.g. a dated snapshot whose Release files have expired).
  for opt in Acquire::Check-Valid-Until Acquire::Check-Date Acquire::http::Proxy; do
    v=$(apt-config dump "$opt" | sed -n "s/^$opt \"\(.*\)\";$/\1/p" | head -n1)
    [ -z "$v" ] || APTOPT+=(--aptopt="$opt \"$v\"")
  done
  for i in $(seq 1 "$RUNS_MMDEB"); do
    # Every run downloads everything: mmdebstrap's apt cache lives inside the
    # new chroot and is emptied at the end.
    timed "mmdebstrap$i" mmdebstrap --mode=root --variant=minbase \
      --components="${COMPONENTS// /,}" --include="$INCLUDE" "${APTOPT[@]}" \
      "${SUITES[0]}" "$W/mmdeb$i.tar" "${SRC[@]}"
  done
  MMDEB_TAR=$(stat -c %s "$W/mmdeb$RUNS_MMDEB.tar")
  MMDEB_NPKG=$(tar -xOf "$W/mmdeb$RUNS_MMDEB.tar" ./var/lib/dpkg/status | grep -c '^Package:' || true)
  # The same filesystem osbuild makes, of the unpacked tree as it is, and
  # without docs, manuals and translations (what osbuild drops).
  tree=$W/mmdeb-tree
  mkdir "$tree"
  tar -C "$tree" --numeric-owner -xpf "$W/mmdeb$RUNS_MMDEB.tar"
  MMDEB_TREE=$(du -sB1 --apparent-size "$tree" | cut -f1)
  mkfs.erofs -zlz4hc --quiet "$W/mmdeb.erofs" "$tree" >&2
  MMDEB_EROFS=$(stat -c %s "$W/mmdeb.erofs")
  find "$tree/usr/share/doc" -mindepth 2 ! -name copyright -delete 2>/dev/null || true
  rm -rf "$tree"/usr/share/{man,info,locale,doc-base,gtk-doc}
  mkfs.erofs -zlz4hc --quiet "$W/mmdeb-slim.erofs" "$tree" >&2
  MMDEB_EROFS_SLIM=$(stat -c %s "$W/mmdeb-slim.erofs")
  rm -rf "$tree" "$W"/mmdeb*.erofs
  for i in $(seq 1 "$RUNS_MMDEB"); do
    MMDEB_ROWS+="| mmdebstrap run $i (minbase, cold: downloads every time) | $(wall "mmdebstrap$i") | $(rss "mmdebstrap$i") |"$'\n'
  done
fi

# --- report ---------------------------------------------------------------
cat <<EOF
# osbuild build benchmark: $CONFIG

## Machine

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- CPUs: $(nproc) ($(lscpu | sed -n 's/^Model name:[[:space:]]*//p'))
- memory: $(free -g | awk '/^Mem:/ {print $2 " GiB total, " $7 " GiB available"}')
- kernel: $(uname -r)
- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)
- osbuild binary: sha256 $OSBUILD_ID

## Build times

| build | wall (s) | max RSS |
|---|---:|---:|
| osbuild cold (empty cache, network) | $(wall osbuild-cold) | $(rss osbuild-cold) |
| osbuild warm run 1 (\`--offline\`) | $(wall osbuild-warm1) | $(rss osbuild-warm1) |
| osbuild warm run 2 (\`--offline\`) | $(wall osbuild-warm2) | $(rss osbuild-warm2) |
${MMDEB_ROWS}
osbuild packages in the root: ${NPKG:-?} (plus the kernel and systemd-boot-efi);
mmdebstrap packages installed: ${MMDEB_NPKG:-not run}.
Raw images of the three builds bit-identical: $IDENTICAL.
Distinct dm-verity root hashes over the three builds: $HASHES (1 = the erofs root is reproducible).

## osbuild steps (seconds, from osbuild's stderr)

### Cold

$(steps "$W/osbuild-cold.log")

### Warm

$(steps "$W/osbuild-warm1.log" "$W/osbuild-warm2.log")

## Sizes

| artifact | size |
|---|---:|
| raw disk, apparent | $(mib "$RAW_APPARENT") |
| raw disk, allocated (sparse) | $(mib "$RAW_ALLOC") |
| qcow2 | $(mib "$QCOW2") |
| osbuild staging tree (apparent, $ROOT_FILES entries) | $(mib "$ROOT_TREE") |
| osbuild erofs root (lz4hc) | $(mib "$EROFS") |
EOF
if [ "${BENCH_MMDEBSTRAP:-1}" != 0 ]; then
  cat <<EOF
| mmdebstrap tarball | $(mib "$MMDEB_TAR") |
| mmdebstrap tree (apparent) | $(mib "$MMDEB_TREE") |
| mmdebstrap tree as erofs (lz4hc) | $(mib "$MMDEB_EROFS") |
| mmdebstrap tree without docs/man/locales, as erofs | $(mib "$MMDEB_EROFS_SLIM") |
EOF
fi
if [ -n "$EROFS_ROWS" ]; then
  cat <<EOF

## The erofs step: mkfs.erofs alone on osbuild's staging tree

| command | wall (s) | size |
|---|---:|---:|
${EROFS_ROWS%$'\n'}
EOF
fi
