#!/usr/bin/env bash
# Session start time against golden size (issue 5): goldenfs must start a
# session in the same time whatever the golden's file count, where a `cp -a`
# per session grows linearly.
#
# For each size it generates a tree of that many small files (1,000 per
# directory, 16 to 80 bytes each; two python workers), then measures:
#   - cp -a of the tree (one session's private copy; --cp-runs times),
#   - the goldenfs import (`project create --from`, a copy of the tree),
#   - goldenfs session start: `session mount` of a new session until the
#     view answers (a stat of golden-version.json), median of --runs.
# It prints a Markdown table and whether goldenfs's start is flat: the
# largest size's median within 1.5x (or 10 ms) of the smallest's. It never
# fails on timings.
#
# Usage: scripts/bench-scale.sh [OPTIONS]
#   --sizes LIST    comma-separated file counts (default 50000,500000,2000000)
#   --quick         sizes 5000,50000,200000 (under a minute)
#   --runs N        session starts per size (default 5)
#   --cp-runs N     cp -a runs per size (default 1)
#   -h, --help      this text
# Environment: GOLDENFS_BIN (use this binary instead of building).
# Needs root and /dev/fuse, and free space for two copies of the largest tree
# (2 M files take about 8 GiB each on ext4: a 4 KiB block per file). The
# default sizes take about 10 minutes on 2 cores; it prints its total time.
set -euo pipefail
export LC_ALL=C
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

sizes="50000,500000,2000000"
runs=5
cp_runs=1
while [ $# -gt 0 ]; do
    case $1 in
        --sizes) sizes=${2:?--sizes needs a list}; shift ;;
        --quick) sizes="5000,50000,200000" ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --cp-runs) cp_runs=${2:?--cp-runs needs a number}; shift ;;
        -h | --help) gfs_usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
GFS_SCRIPT=bench-scale
read -r -a SIZES <<<"${sizes//,/ }"
for n in "${SIZES[@]}"; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "--sizes: '$n' is not a positive number"; done
gfs_positive --runs "$runs"
gfs_positive --cp-runs "$cp_runs"

now_us() { NOW=${EPOCHREALTIME/[.,]/}; }
secs_since() { awk -v d=$((NOW - $1)) 'BEGIN { printf "%.6f", d / 1e6 }'; } # after now_us
fmt_s() { awk -v t="$1" 'BEGIN { if (t < 1) printf "%.3f", t; else if (t < 100) printf "%.2f", t; else printf "%.1f", t }'; }
fmt_elapsed() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }
commas() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

# generate DIR N: N small files in directories of 1,000, by two workers.
generate() {
    python3 - "$1" "$2" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
per = 1000
ndirs = (n + per - 1) // per
os.makedirs(root)
workers = []
for w in range(2):
    pid = os.fork()
    if pid == 0:
        for d in range(w, ndirs, 2):
            path = os.path.join(root, "d%02d" % (d // 100), "d%05d" % d)
            os.makedirs(path, exist_ok=True)
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
            for i in range(d * per, min(n, (d + 1) * per)):
                fd = os.open("f%07d" % i, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644, dir_fd=dfd)
                os.write(fd, b"golden file %d\n" % i * (1 + i % 4))
                os.close(fd)
            os.close(dfd)
        os._exit(0)
    workers.append(pid)
status = 0
for pid in workers:
    _, st = os.waitpid(pid, 0)
    status |= st
sys.exit(1 if status else 0)
EOF
}

fstype_of() {
    awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1); s = $(i + 2) } } END { print t, s }' \
        /proc/self/mountinfo
}

gfs_init bench-scale
T_START=$SECONDS

say "Machine"
gfs_machine_summary "$WORK"

say "Building goldenfs (release)"
gfs_build
echo "    $BIN"
largest=0
for n in "${SIZES[@]}"; do [ "$n" -gt "$largest" ] && largest=$n; done
need_kb=$((largest * 4 * 2 + 1048576))
free_kb=$(df --output=avail -k "$WORK" | tail -n 1)
[ "$free_kb" -gt "$need_kb" ] || die "$WORK has $((free_kb / 1024)) MiB free; $(commas "$largest") files need about $((need_kb / 1024)) MiB"
free_inodes=$(df --output=iavail "$WORK" | tail -n 1)
[ "$free_inodes" -gt $((largest * 2 + 100000)) ] || die "$WORK has $free_inodes free inodes; need $((largest * 2 + 100000))"
gfs_start_daemon

declare -A GEN IMPORT START STARTS CP
seq_no=0
for n in "${SIZES[@]}"; do
    say "$(commas "$n") files"
    tree="$WORK/trees/$n"
    now_us; t0=$NOW
    generate "$tree" "$n"
    now_us; GEN[$n]=$(secs_since "$t0")
    got=$(find "$tree" -type f | wc -l)
    [ "$got" -eq "$n" ] || die "generated $got files, not $n"
    echo "    generated in $(fmt_s "${GEN[$n]}") s"

    cps=()
    for r in $(seq 1 "$cp_runs"); do
        sync
        now_us; t0=$NOW
        cp -a "$tree" "$WORK/copy"
        now_us; cps+=("$(secs_since "$t0")")
        rm -rf "$WORK/copy"
    done
    CP[$n]=$(gfs_median "${cps[@]}")
    echo "    cp -a: ${cps[*]} s"

    sync
    now_us; t0=$NOW
    "$BIN" project create "p$n" --from "$tree" >/dev/null
    now_us; IMPORT[$n]=$(secs_since "$t0")
    echo "    import: $(fmt_s "${IMPORT[$n]}") s (a copy)"
    rm -rf "$tree"

    starts=()
    for r in $(seq 1 "$runs"); do
        seq_no=$((seq_no + 1))
        mp="$WORK/mnt/s$seq_no"
        mkdir -p "$mp"
        now_us; t0=$NOW
        "$BIN" session mount "p$n" "s$seq_no" "$mp" >/dev/null
        [ -e "$mp/golden-version.json" ]
        now_us; starts+=("$(secs_since "$t0")")
        # It is the view it claims to be, with the whole tree under it.
        read -r t src <<<"$(fstype_of "$mp")"
        [[ $t == fuse* ]] && [ "$src" = "goldenfs:s$seq_no" ] || die "$mp is '$t' from '$src', not goldenfs:s$seq_no"
        grep -q "\"project_id\": \"p$n\"" "$mp/golden-version.json" || die "$mp is not a view of p$n"
        [ -d "$mp/d00/d00000" ] || die "$mp has no d00/d00000"
        "$BIN" session unmount "s$seq_no" >/dev/null
        "$BIN" session discard "s$seq_no" >/dev/null
        rmdir "$mp"
    done
    START[$n]=$(gfs_median "${starts[@]}")
    STARTS[$n]="${starts[*]}"
    echo "    goldenfs session start: ${starts[*]} s"
    "$BIN" project delete "p$n" >/dev/null
done

say "Session start against golden size (seconds; goldenfs: median of $runs, cp -a: median of $cp_runs)"
echo
echo "| files | generate | goldenfs import | goldenfs session start | cp -a per session | cp -a / goldenfs start |"
echo "|---:|---:|---:|---:|---:|---:|"
for n in "${SIZES[@]}"; do
    printf '| %s | %s | %s | %s | %s | %s |\n' "$(commas "$n")" "$(fmt_s "${GEN[$n]}")" "$(fmt_s "${IMPORT[$n]}")" \
        "$(fmt_s "${START[$n]}")" "$(fmt_s "${CP[$n]}")" \
        "$(awk -v a="${CP[$n]}" -v b="${START[$n]}" 'BEGIN { printf "%.0f", a / b }')"
done
echo
echo "goldenfs session start, every sample:"
for n in "${SIZES[@]}"; do echo "    $(commas "$n"): ${STARTS[$n]}"; done

smallest=${SIZES[0]}
for n in "${SIZES[@]}"; do [ "$n" -lt "$smallest" ] && smallest=$n; done
echo
awk -v a="${START[$smallest]}" -v b="${START[$largest]}" -v s="$(commas "$smallest")" -v l="$(commas "$largest")" 'BEGIN {
    flat = (b <= a * 1.5 || b <= a + 0.010)
    printf "goldenfs session start: %.3f s at %s files, %.3f s at %s files (x%.2f): %s\n",
        a, s, b, l, b / a, flat ? "flat" : "NOT FLAT (grows with the golden)"
}'
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "total: $(fmt_elapsed $((SECONDS - T_START)))"
