#!/bin/sh
# Runs Keel's cargo-fuzz targets one after the other, each for
# FUZZ_SECONDS (default 600), and prints executions, time and crashes per
# target. Not part of `make test`; see docs/testing.md, "Fuzzing".
#
#   scripts/fuzz.sh                 # every target
#   scripts/fuzz.sh version deb822  # some targets, by name
#   FUZZ_SECONDS=180 scripts/fuzz.sh
#   scripts/fuzz.sh --list
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); libFuzzer's flags are
# nightly-only, which RUSTC_BOOTSTRAP=1 enables on the stable toolchain.
# Everything it writes is below target/fuzz/ of the repository: the build
# (shared by the fuzz crates), the corpus of each target (kept between
# runs), crash inputs (artifacts/TARGET/), logs and seeds generated from
# the repository's own files. Exits non-zero when a target crashed or
# could not run.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
seconds=${FUZZ_SECONDS:-600}
out="$root/target/fuzz"

# crate directory:target
all="firstboot:parse_validate
init:unit_file
init:control_protocol
osbuild:image_config
debrepo:deb822
debrepo:release
debrepo:packages
debrepo:version"

die() {
    echo "fuzz.sh: $*" >&2
    exit 2
}

case "$seconds" in
'' | *[!0-9]*) die "FUZZ_SECONDS must be a whole number of seconds, not \"$seconds\"" ;;
esac

if [ "${1:-}" = "--list" ]; then
    echo "$all" | cut -d: -f2
    exit 0
fi

selected=""
if [ $# -eq 0 ]; then
    selected=$all
else
    for name in "$@"; do
        line=$(echo "$all" | grep -x "[a-z]*:$name" || true)
        [ -n "$line" ] || die "unknown fuzz target \"$name\" (scripts/fuzz.sh --list names them)"
        selected="$selected
$line"
    done
fi

cargo fuzz --version >/dev/null 2>&1 ||
    die "cargo-fuzz is missing: install it with \`cargo install cargo-fuzz\`"

mkdir -p "$out"
# unit_file writes its unit files below TMPDIR: a directory of this run.
tmp=$(mktemp -d "$out/tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# Seeds generated from the repository's own files, for the targets whose
# inputs the repository has (the others have small seeds committed in
# CRATE/fuzz/seeds/TARGET/).
seed_dir() {
    d="$out/seeds/$1"
    rm -rf "$d"
    mkdir -p "$d"
    echo "$d"
}

# unit_file's first byte picks the unit's name: 0 service, 1 template
# instance, 2 mount, 3 swap, 4 target, 5 other type (see unit_file.rs).
unit_seeds() {
    d=$(seed_dir unit_file)
    n=0
    for f in "$root"/keel-units/tests/data/units/* "$root"/image-configs/*.tree/*/systemd/system/* \
        "$root"/image-configs/*.tree/*/lib/systemd/system/*; do
        [ -f "$f" ] || continue
        case "$f" in
        *@.service) pick='\001' ;;
        *.service) pick='\000' ;;
        *.mount) pick='\002' ;;
        *.swap) pick='\003' ;;
        *.target) pick='\004' ;;
        *) pick='\005' ;;
        esac
        n=$((n + 1))
        { printf "$pick"; cat "$f"; } >"$d/$n-$(basename "$f")"
    done
    echo "$d"
}

generated_seeds() {
    case "$1" in
    parse_validate) echo "$root/firstboot/tests/corpus" ;;
    unit_file) unit_seeds ;;
    image_config)
        d=$(seed_dir image_config)
        cp "$root"/image-configs/*.toml "$d/"
        echo "$d"
        ;;
    esac
}

machine="$(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1), $(. /etc/os-release && echo "$PRETTY_NAME")"
echo "fuzz.sh: $(date -u +%Y-%m-%d), $machine, ${seconds}s per target"

# Build every crate first (what `cargo fuzz run` would do), then run the
# libFuzzer binaries, so the time of each run is fuzzing only.
for crate in $(echo "$selected" | sed -n 's/:.*//p' | sort -u); do
    echo "fuzz.sh: building $crate/fuzz"
    (cd "$root/$crate" && RUSTC_BOOTSTRAP=1 cargo fuzz build --target-dir "$out") ||
        die "building $crate/fuzz failed"
done

summary=""
failed=0
for line in $selected; do
    crate=${line%%:*}
    target=${line#*:}
    corpus="$out/corpus/$target"
    artifacts="$out/artifacts/$target"
    log="$out/logs/$target.log"
    mkdir -p "$corpus" "$artifacts" "$out/logs"
    set -- "$corpus"
    [ -d "$root/$crate/fuzz/seeds/$target" ] && set -- "$@" "$root/$crate/fuzz/seeds/$target"
    gen=$(generated_seeds "$target")
    [ -n "$gen" ] && set -- "$@" "$gen"
    before=$(ls "$artifacts" | wc -l)
    echo "fuzz.sh: running $target for ${seconds}s (log: $log)"
    start=$(date +%s)
    status=0
    TMPDIR="$tmp" "$out/x86_64-unknown-linux-gnu/release/$target" "$@" \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
    elapsed=$(($(date +%s) - start))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
    corpus_size=$(ls "$corpus" | wc -l)
    crashes=$(($(ls "$artifacts" | wc -l) - before))
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        echo "fuzz.sh: $target exited with status $status without a crash input; the end of $log:" >&2
        tail -n 20 "$log" >&2
        crashes="?"
    fi
    [ "$status" -eq 0 ] || failed=1
    summary="$summary
$(printf '%-16s %12s %7ss %8s %8s' "$target" "${execs:-?}" "$elapsed" "$corpus_size" "$crashes")"
    if [ "$crashes" != 0 ] && [ "$crashes" != "?" ]; then
        echo "fuzz.sh: $target crashed; inputs in $artifacts/:" >&2
        ls -t "$artifacts" | head -n "$crashes" >&2
    fi
done

echo
printf '%-16s %12s %8s %8s %8s\n' target executions time corpus crashes
echo "$summary" | sed '/^$/d'
exit "$failed"
