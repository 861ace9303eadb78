#!/usr/bin/env bash
# Layer depth (issue 5): after 30 promotions stacked on an import, a view
# must walk the golden within 1.2x of a view of the import alone.
#
# It imports the corpus (generation 1), then stacks --promotions generations,
# each a session that, spread over the whole tree, appends to 20 files
# (copy-ups, so their directories exist in that layer), creates 5 files,
# deletes 5 (whiteouts) and, every fifth promotion, renames a directory
# (a redirect). Then, on fresh views of generation 1 (depth 1), of the top
# generation (depth N+1) and, when `goldenfs compact` exists, of the
# compacted generation, it times:
#   stat-cold   find -printf '%i %s' of the whole view after drop_caches
#   stat-warm   the same walk again on the same view
#   lookups     stat of 2,000 files by path on a fresh view (every name is
#               looked up once, through every layer above the one holding it)
# It prints a Markdown table of medians with the ratios to depth 1, and
# checks that every view shows the same number of entries. It never fails
# on timings.
#
# Usage: scripts/bench-depth.sh [OPTIONS]
#   --corpus DIR      golden to import (default: the stable Rust toolchain,
#                     `rustc --print sysroot`, about 53,000 entries)
#   --promotions N    generations to stack (default 30)
#   --runs N          runs per cell (default 3)
#   -h, --help        this text
# Environment: GOLDENFS_BIN (use this binary instead of building).
# Needs root and /dev/fuse. About 3 minutes with the defaults.
set -euo pipefail
export LC_ALL=C
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

corpus=""
promotions=30
runs=3
while [ $# -gt 0 ]; do
    case $1 in
        --corpus) corpus=${2:?--corpus needs a directory}; shift ;;
        --promotions) promotions=${2:?--promotions needs a number}; shift ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        -h | --help) gfs_usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
gfs_positive --promotions "$promotions"
gfs_positive --runs "$runs"
corpus=$(gfs_corpus "$corpus")

gfs_init bench-depth
T_START=$SECONDS
now_us() { NOW=${EPOCHREALTIME/[.,]/}; }
secs_since() { awk -v d=$((NOW - $1)) 'BEGIN { printf "%.3f", d / 1e6 }'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }

say "Machine"
gfs_machine_summary "$WORK"

say "Building goldenfs (release)"
gfs_build
echo "    $BIN"
# No automatic compaction while the stack is built: depth is what is measured.
if "$BIN" daemon --help | grep -q -- --compact-depth; then
    gfs_start_daemon --compact-depth 0
else
    gfs_start_daemon
fi

say "Importing the corpus ($corpus)"
"$BIN" project create depth --from "$corpus" >/dev/null
(cd "$corpus" && find . -type f -size -64k | sort) >"$WORK/files"
(cd "$corpus" && find . -mindepth 2 -type d -links 2 | sort) >"$WORK/leafdirs"
nfiles=$(wc -l <"$WORK/files")
nleaf=$(wc -l <"$WORK/leafdirs")
[ "$nfiles" -ge 100 ] || die "the corpus has only $nfiles small files; need 100"
echo "    $(find "$corpus" | wc -l) entries, $nfiles small files"

# pick K SEED: K paths from the file list, spread over the whole tree.
pick() { awk -v k="$1" -v s="$2" -v n="$nfiles" 'BEGIN { srand(s) } { f[NR] = $0 }
    END { for (i = 0; i < k; i++) print f[1 + int(rand() * n)] }' "$WORK/files" | sort -u; }

say "Stacking $promotions promotions"
removed=()
for g in $(seq 1 "$promotions"); do
    mp="$WORK/mnt/p$g"
    mkdir -p "$mp"
    "$BIN" session mount depth "p$g" "$mp" >/dev/null
    while read -r f; do [ -e "$mp/$f" ] && printf x >>"$mp/$f"; done < <(pick 20 "$g")
    i=0
    while read -r f; do i=$((i + 1)); echo "new $g" >"$mp/$(dirname "$f")/new-$g-$i"; done < <(pick 5 "$((g + 1000))")
    while read -r f; do [ -e "$mp/$f" ] && rm -f "$mp/$f"; done < <(pick 5 "$((g + 2000))")
    if [ $((g % 5)) -eq 0 ] && [ "$nleaf" -gt 0 ]; then
        d=$(sed -n "$((1 + (g * 7919) % nleaf))p" "$WORK/leafdirs")
        [ -d "$mp/$d" ] && mv "$mp/$d" "$mp/$d.renamed-$g"
    fi
    "$BIN" session unmount "p$g" >/dev/null
    "$BIN" promote depth "p$g" >/dev/null
done
top=$("$BIN" generations depth --json | python3 -c 'import json,sys; d=json.load(sys.stdin); g=d if isinstance(d,list) else d["generations"]; print(max(x["generation"] for x in g))')
echo "    top generation $top"

CASES=("depth 1:1" "depth $((promotions + 1)):$top")
if "$BIN" compact --help >/dev/null 2>&1; then
    say "Compacting generation $top"
    now_us; t0=$NOW
    "$BIN" compact depth >/dev/null
    now_us; echo "    compacted in $(secs_since "$t0") s"
    compacted=$("$BIN" generations depth --json | python3 -c 'import json,sys; d=json.load(sys.stdin); g=d if isinstance(d,list) else d["generations"]; print(max(x["generation"] for x in g))')
    CASES+=("compacted:$compacted")
fi

# A list of paths that exist at the top generation, for the lookups row.
mp="$WORK/mnt/probe"
mkdir -p "$mp"
"$BIN" session mount depth probe "$mp" >/dev/null
(cd "$mp" && find . -type f ! -name golden-version.json | awk 'NR % 23 == 0 && ++n <= 2000') >"$WORK/lookups"
"$BIN" session unmount probe >/dev/null
"$BIN" session discard probe >/dev/null

declare -A T
seq_no=0
view_of() { # view_of GENERATION: mount a fresh session on it in $VIEW
    "$BIN" rollback depth "$1" >/dev/null
    seq_no=$((seq_no + 1))
    VIEW="$WORK/mnt/v$seq_no"
    mkdir -p "$VIEW"
    "$BIN" session mount depth "v$seq_no" "$VIEW" >/dev/null
}
done_with_view() {
    "$BIN" session unmount "v$seq_no" >/dev/null
    "$BIN" session discard "v$seq_no" >/dev/null
}
say "Measuring ($runs runs)"
declare -A ENTRIES
for r in $(seq 1 "$runs"); do
    for c in "${CASES[@]}"; do
        label=${c%%:*} gen=${c##*:}
        view_of "$gen"
        drop_caches
        now_us; t0=$NOW
        n=$(find "$VIEW" -printf '%i %s\n' | wc -l)
        now_us; T[$label,stat-cold]+="$(secs_since "$t0") "
        ENTRIES[$label]=$n
        now_us; t0=$NOW
        find "$VIEW" -printf '%i %s\n' >/dev/null
        now_us; T[$label,stat-warm]+="$(secs_since "$t0") "
        done_with_view
        view_of "$gen"
        now_us; t0=$NOW
        (cd "$VIEW" && xargs -d '\n' stat -c '%i' <"$WORK/lookups" >/dev/null 2>&1) || true
        now_us; T[$label,lookups]+="$(secs_since "$t0") "
        done_with_view
        t_cold=(${T[$label,stat-cold]}) t_warm=(${T[$label,stat-warm]})
        echo "    run $r $label: cold ${t_cold[-1]} s, warm ${t_warm[-1]} s"
    done
done
"$BIN" rollback depth "$top" >/dev/null

say "Results"
base=${CASES[0]%%:*}
hdr="| operation |" sep="|---|"
for c in "${CASES[@]}"; do hdr+=" ${c%%:*} |"; sep+="---:|"; done
for c in "${CASES[@]:1}"; do hdr+=" ${c%%:*} / $base |"; sep+="---:|"; done
echo
echo "Median of $runs runs, seconds; $promotions promotions stacked on the import:"
echo
echo "$hdr"
echo "$sep"
for row in stat-cold stat-warm lookups; do
    line="| $row |"
    declare -A MED=()
    for c in "${CASES[@]}"; do
        l=${c%%:*}
        # shellcheck disable=SC2086
        MED[$l]=$(gfs_median ${T[$l,$row]})
        line+=" ${MED[$l]} |"
    done
    for c in "${CASES[@]:1}"; do
        l=${c%%:*}
        line+=" $(awk -v a="${MED[$l]}" -v b="${MED[$base]}" 'BEGIN { printf "%.2f", a / b }') |"
    done
    echo "$line"
done
echo
for c in "${CASES[@]}"; do echo "entries seen at ${c%%:*} (generation ${c##*:}): ${ENTRIES[${c%%:*}]}"; done
[ "${CASES[2]+x}" ] && [ "${ENTRIES[${CASES[1]%%:*}]}" != "${ENTRIES[${CASES[2]%%:*}]}" ] &&
    die "the compacted generation shows ${ENTRIES[${CASES[2]%%:*}]} entries, the deep one ${ENTRIES[${CASES[1]%%:*}]}"
echo
echo "total time: $((SECONDS - T_START)) s"
