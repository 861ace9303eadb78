#!/usr/bin/env bash
# Side-by-side benchmark of a goldenfs session view (issue 5): the same
# operations on the same corpus through goldenfs, kernel overlayfs,
# fuse-overlayfs 1.10 (Debian), fuse-overlayfs 2.0 (the Rust rewrite from
# crates.io) and a plain `cp -a` of the corpus per session. Prints one
# Markdown table of medians (seconds) with the ratios goldenfs / kernel
# overlayfs and goldenfs / fuse-overlayfs 2.0, then every sample.
#
# The corpus is copied once into the scratch directory (/var/tmp, a real
# disk); kernel overlayfs and both fuse-overlayfs mount that copy as their
# lower directory, goldenfs imports it into its store (a copy; the output says
# whether the store's filesystem could reflink), and `cp -a` copies it once
# per run. Every measurement is on a fresh mount (a new goldenfs session, a
# new empty overlay upper), so copy-up and rm start from the lower. The cp -a
# column uses one copy per run (made by the session-start row) for every row
# of that run; rm -rf, which destroys it, comes last.
#
# Rows (ids for --rows), each on a fresh view; backing files are warm in the
# page cache unless said otherwise:
#   start         create a session and mount it, until the view answers
#   stat-cold     find -printf '%i %s' (an lstat of every entry) after
#                 sync; echo 3 > /proc/sys/vm/drop_caches
#   stat-warm     the same walk again after one walk on the same view
#   read-all      cat every file (find | xargs cat), after one such pass
#   read-big      cat the biggest file, after one such read
#   create        tar x of a prepared tarball of 10,000 4 KB files
#   copyup-big    append 1 byte to the biggest lower file (copy-up)
#   append-small  append 1 byte to 2,000 small lower files (bash builtin
#                 printf, no fork per file)
#   rm            rm -rf of the whole lower tree
# Systems (ids for --systems): goldenfs, overlayfs, fovl1 (fuse-overlayfs
# 1.10), fovl2 (fuse-overlayfs 2.0), cp (cp -a per session).
# Runs are interleaved (run 1 of every row and system, then run 2, ...) so
# that background load drifting affects every column alike.
#
# Usage: scripts/bench.sh [OPTIONS]
#   --corpus DIR      corpus to use (default: the stable Rust toolchain,
#                     `rustc --print sysroot`, about 1.4 GB and 53,000 entries)
#   --synthetic       a generated corpus of 6,000 small files and one 64 MiB
#                     file instead (a run takes about a minute)
#   --runs N          runs per cell; the table shows medians (default 3)
#   --rows LIST       comma-separated row ids (default: all)
#   --systems LIST    comma-separated system ids (default: all)
#   -h, --help        this text
# Environment: GOLDENFS_BIN (use this binary instead of building),
# BENCH_TOOLS (where fuse-overlayfs 2.0 is installed, default
# /var/tmp/goldenfs-bench-tools; Debian's 1.10 stays /usr/bin/fuse-overlayfs).
# Needs root and /dev/fuse. With the default corpus and 3 runs it takes about
# 15 minutes on 2 cores; it prints its total time.
set -euo pipefail
export LC_ALL=C
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROWS_ALL=(start stat-cold stat-warm read-all read-big create copyup-big append-small rm)
SYSTEMS_ALL=(goldenfs overlayfs fovl1 fovl2 cp)
FOVL2_VERSION=2.0.0
BENCH_TOOLS=${BENCH_TOOLS:-/var/tmp/goldenfs-bench-tools}
FOVL1_BIN=/usr/bin/fuse-overlayfs
FOVL2_BIN=$BENCH_TOOLS/bin/fuse-overlayfs
CREATE_FILES=10000
SMALL_FILES=2000

corpus=""
synthetic=0
runs=3
rows_opt=""
systems_opt=""
while [ $# -gt 0 ]; do
    case $1 in
        --corpus) corpus=${2:?--corpus needs a directory}; shift ;;
        --synthetic) synthetic=1 ;;
        --runs) runs=${2:?--runs needs a number}; shift ;;
        --rows) rows_opt=${2:?--rows needs a list}; shift ;;
        --systems) systems_opt=${2:?--systems needs a list}; shift ;;
        -h | --help) gfs_usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
GFS_SCRIPT=bench
gfs_positive --runs "$runs"
[ -z "$corpus" ] || [ "$synthetic" -eq 0 ] || die "--corpus and --synthetic exclude each other"

# pick_list WHAT OPTION ALL...: the ids of OPTION (comma-separated) in the
# canonical order of ALL, or ALL if OPTION is empty.
pick_list() {
    local what=$1 opt=$2; shift 2
    if [ -z "$opt" ]; then echo "$*"; return; fi
    local id out=() known
    for id in ${opt//,/ }; do
        known=0
        for k in "$@"; do [ "$k" = "$id" ] && known=1; done
        [ "$known" -eq 1 ] || die "unknown $what '$id' (known: $*)"
    done
    for k in "$@"; do
        for id in ${opt//,/ }; do [ "$k" = "$id" ] && { out+=("$k"); break; }; done
    done
    echo "${out[*]}"
}
read -r -a ROWS <<<"$(pick_list row "$rows_opt" "${ROWS_ALL[@]}")"
read -r -a SYSTEMS <<<"$(pick_list system "$systems_opt" "${SYSTEMS_ALL[@]}")"
has_system() { local s; for s in "${SYSTEMS[@]}"; do [ "$s" = "$1" ] && return 0; done; return 1; }

# --- time ---------------------------------------------------------------

commas() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
now_us() { NOW=${EPOCHREALTIME/[.,]/}; } # no fork: sets NOW (microseconds)
fmt_s() { # fmt_s SECONDS: 3 significant digits-ish, like the issue's table
    awk -v t="$1" 'BEGIN { if (t < 1) printf "%.3f", t; else if (t < 100) printf "%.2f", t; else printf "%.1f", t }'
}
fmt_elapsed() { printf '%d min %02d s' $(($1 / 60)) $(($1 % 60)); }

# --- checks: each system is what it claims --------------------------------

# fstype_of / source_of MOUNTPOINT: the type and source of what is mounted
# exactly there (the last mount on it), from /proc/self/mountinfo.
fstype_of() {
    awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 1) } } END { print t }' \
        /proc/self/mountinfo
}
source_of() {
    awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") { t = $(i + 2) } } END { print t }' \
        /proc/self/mountinfo
}

# pids_serving MOUNTPOINT EXE: processes running EXE with MOUNTPOINT on their
# command line.
pids_serving() {
    local mp=$1 exe=$2 p
    for p in /proc/[0-9]*; do
        [ "$(readlink "$p/exe" 2>/dev/null)" = "$exe" ] || continue
        tr '\0' '\n' <"$p/cmdline" 2>/dev/null | grep -qxF "$mp" && echo "${p#/proc/}"
    done
    return 0
}

# --- the systems: NAME_mount (timed by the start row), NAME_check,
# NAME_unmount. Each sets VIEW (the root under which the corpus is at tree/)
# and BACKING (the directory whose tree/ holds the files the view reads).
# What a measurement leaves on disk (uppers, sessions, the cp -a copy) is
# removed at the end of the run, not between measurements: see end_run.

MNT_SEQ=0
new_mountpoint() { MNT_SEQ=$((MNT_SEQ + 1)); MP="$WORK/mnt/$1-$MNT_SEQ"; mkdir -p "$MP"; }
LEFTOVERS=() # commands run by end_run

goldenfs_mount() {
    SESSION="s$MNT_SEQ"
    "$BIN" session mount bench "$SESSION" "$MP" >/dev/null
    [ -e "$MP/golden-version.json" ] || die "goldenfs: no golden-version.json at $MP"
    VIEW=$MP BACKING=$GOLDEN_LAYER
}
goldenfs_check() {
    local t src
    t=$(fstype_of "$MP") src=$(source_of "$MP")
    [[ $t == fuse* ]] && [ "$src" = "goldenfs:$SESSION" ] ||
        die "goldenfs: $MP is '$t' from '$src', not a FUSE mount of goldenfs:$SESSION"
    kill -0 "$DAEMON_PID" 2>/dev/null || die "goldenfs: the daemon is not running"
    grep -q '"project_id": "bench"' "$MP/golden-version.json" || die "goldenfs: $MP is not a view of project bench"
    [ -d "$MP/tree" ] || die "goldenfs: no tree/ in the view $MP"
}
goldenfs_unmount() {
    "$BIN" session unmount "$SESSION" >/dev/null
    LEFTOVERS+=("'$BIN' session discard '$SESSION' >/dev/null && rmdir '$MP'")
}

overlayfs_mount() {
    mkdir "$MP.upper" "$MP.work"
    mount -t overlay "bench-ovl-$MNT_SEQ" -o "lowerdir=$LOWER,upperdir=$MP.upper,workdir=$MP.work" "$MP"
    [ -e "$MP/tree" ] || die "overlayfs: no tree/ at $MP"
    VIEW=$MP BACKING=$LOWER
}
overlayfs_check() {
    [ "$(fstype_of "$MP")" = overlay ] || die "overlayfs: $MP is $(fstype_of "$MP"), not overlay"
}
overlayfs_unmount() {
    umount "$MP"
    LEFTOVERS+=("rm -rf '$MP.upper' '$MP.work' && rmdir '$MP'")
}

FOVL_PIDS=()
fovl_mount() { # fovl_mount BINARY
    mkdir "$MP.upper" "$MP.work"
    "$1" -o "lowerdir=$LOWER,upperdir=$MP.upper,workdir=$MP.work" "$MP" 2>>"$WORK/fuse-overlayfs.log"
    [ -e "$MP/tree" ] || die "fuse-overlayfs ($1): no tree/ at $MP"
    VIEW=$MP BACKING=$LOWER
}
fovl_check() { # fovl_check BINARY FSTYPE
    local t pids
    t=$(fstype_of "$MP")
    [ "$t" = "$2" ] || die "fuse-overlayfs ($1): $MP is '$t', not $2"
    pids=$(pids_serving "$MP" "$1")
    [ "$(echo "$pids" | grep -c .)" -eq 1 ] || die "fuse-overlayfs ($1): expected one process serving $MP, found '${pids//$'\n'/ }'"
    FOVL_PID=$pids
    FOVL_PIDS+=("$pids")
}
fovl_unmount() {
    umount "$MP"
    local _
    for _ in $(seq 1 200); do kill -0 "$FOVL_PID" 2>/dev/null || break; sleep 0.05; done
    kill -0 "$FOVL_PID" 2>/dev/null && die "fuse-overlayfs (pid $FOVL_PID) still runs after unmounting $MP"
    LEFTOVERS+=("rm -rf '$MP.upper' '$MP.work' && rmdir '$MP'")
}
# Debian's 1.10 is a libfuse program (type fuse.fuse-overlayfs); 2.0 uses
# fuser, which mounts as plain `fuse`; the process check tells them apart.
fovl1_mount() { fovl_mount "$FOVL1_BIN"; }
fovl1_check() { fovl_check "$FOVL1_BIN" fuse.fuse-overlayfs; }
fovl1_unmount() { fovl_unmount; }
fovl2_mount() { fovl_mount "$FOVL2_BIN"; }
fovl2_check() { fovl_check "$FOVL2_BIN" fuse; }
fovl2_unmount() { fovl_unmount; }

# cp -a: one copy per run, made by the start row (or untimed by the first
# row of the run that needs it), removed at the end of the run.
CP_COPY=""
cp_mount() {
    if [ -z "$CP_COPY" ] || [ "$ROW" = start ]; then
        MNT_SEQ=$((MNT_SEQ + 1))
        CP_COPY="$WORK/cp/run$RUN-$MNT_SEQ"
        mkdir -p "$WORK/cp"
        cp -a "$LOWER" "$CP_COPY"
        LEFTOVERS+=("rm -rf '$CP_COPY'")
    fi
    [ -e "$CP_COPY/tree" ] || die "cp: no tree/ in $CP_COPY"
    VIEW=$CP_COPY BACKING=$CP_COPY
}
cp_check() {
    mountpoint -q "$CP_COPY" && die "cp: $CP_COPY is a mount point"
    [ "$(stat -c %d "$CP_COPY")" = "$(stat -c %d "$LOWER")" ] || die "cp: $CP_COPY is not on the lower's filesystem"
}
cp_unmount() {
    # The next row of the run gets the copy as the start row made it.
    case $ROW in create) rm -rf "$CP_COPY/create" ;; rm) CP_COPY="" ;; esac
}

# --- the rows: row_NAME (timed), optionally setup_NAME and check_NAME
# (untimed, before and after) ------------------------------------------------

walk() { find "$1/tree" -printf '%i %s\n' >/dev/null; }
read_all() { (cd "$1" && find tree -type f -print0 | xargs -0 -r cat >/dev/null); }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
warm_backing() { find "$BACKING/tree" -printf '%s\n' >/dev/null; }
# Before every row that allocates inodes: this machine's root filesystem is
# ext4 without a journal, where the inode allocator skips inodes deleted in
# the last 1 to 6 minutes while their inode-table block is cached. Files
# created right after the previous measurement's cleanup took 5 to 20 times
# longer. Dropping the caches (then warming what the row reads) removes
# that artefact; cleanups are also deferred to the end of each run.
fresh_allocator() { drop_caches; }

setup_start() { if [ "$SYS" = cp ]; then read_all "$LOWER"; fi; }
setup_stat_cold() { drop_caches; }
row_stat_cold() { walk "$VIEW"; }
setup_stat_warm() { warm_backing; walk "$VIEW"; }
row_stat_warm() { walk "$VIEW"; }
setup_read_all() { read_all "$VIEW"; }
row_read_all() { read_all "$VIEW"; }
setup_read_big() { cat "$VIEW/tree/$BIG" >/dev/null; }
row_read_big() { cat "$VIEW/tree/$BIG" >/dev/null; }
setup_create() { fresh_allocator; cat "$WORK/create.tar" >/dev/null; }
row_create() { tar -xf "$WORK/create.tar" -C "$VIEW"; }
check_create() {
    [ "$(find "$VIEW/create" -type f | wc -l)" -eq "$CREATE_FILES" ] || die "$SYS: tar x did not create $CREATE_FILES files"
}
setup_copyup_big() { fresh_allocator; cat "$BACKING/tree/$BIG" >/dev/null; }
row_copyup_big() { printf x >>"$VIEW/tree/$BIG"; }
check_copyup_big() {
    [ "$(stat -c %s "$VIEW/tree/$BIG")" -eq $((BIG_SIZE + 1)) ] || die "$SYS: the append did not land"
    [ "$SYS" = cp ] || [ "$(stat -c %s "$BACKING/tree/$BIG")" -eq "$BIG_SIZE" ] || die "$SYS: the lower copy changed"
}
setup_append_small() {
    fresh_allocator
    (cd "$BACKING/tree" && xargs -d '\n' cat <"$WORK/small.list" >/dev/null)
}
row_append_small() {
    local f
    for f in "${SMALL[@]}"; do printf x >>"$VIEW/tree/$f"; done
}
setup_rm() { fresh_allocator; warm_backing; }
row_rm() { rm -rf "$VIEW/tree"; }
check_rm() {
    [ ! -e "$VIEW/tree" ] || die "$SYS: rm -rf left $VIEW/tree behind"
    [ "$SYS" = cp ] || [ -e "$BACKING/tree/$BIG" ] || die "$SYS: rm -rf removed the lower's files"
}

declare -A ROW_LABEL
label_rows() {
    ROW_LABEL=(
        [start]="session start"
        [stat-cold]="stat every entry, cold cache"
        [stat-warm]="stat every entry, warm"
        [read-all]="read every file, warm"
        [read-big]="read the biggest file ($BIG_HUMAN), warm"
        [create]="create $(commas $CREATE_FILES) 4 KB files (tar x)"
        [copyup-big]="append 1 byte to the biggest lower file (copy-up)"
        [append-small]="append 1 byte to $(commas ${#SMALL[@]}) small lower files"
        [rm]="rm -rf of a lower tree of $(commas "$CORPUS_ENTRIES") entries"
    )
}
declare -A SYS_LABEL=([goldenfs]=goldenfs [overlayfs]="kernel overlayfs" [cp]="cp -a per session")

# --- one measurement, one run ---------------------------------------------

declare -A SAMPLES # [row,system] = "seconds seconds ..."
measure() { # measure ROW SYSTEM
    ROW=$1 SYS=$2
    local fn=${1//-/_} t0 s
    [ "$SYS" = cp ] || new_mountpoint "$SYS"
    if [ "$ROW" = start ]; then
        setup_start
        now_us; t0=$NOW
        "${SYS}_mount"
        now_us
        "${SYS}_check"
    else
        "${SYS}_mount"
        "${SYS}_check"
        if declare -F "setup_$fn" >/dev/null; then "setup_$fn"; fi
        now_us; t0=$NOW
        "row_$fn"
        now_us
        if declare -F "check_$fn" >/dev/null; then "check_$fn"; fi
    fi
    s=$(awk -v d=$((NOW - t0)) 'BEGIN { printf "%.6f", d / 1e6 }')
    SAMPLES[$ROW,$SYS]+="$s "
    "${SYS}_unmount"
}

# end_run: remove what the run's measurements left, flush, drop the caches.
end_run() {
    local c
    for c in "${LEFTOVERS[@]+"${LEFTOVERS[@]}"}"; do eval "$c"; done
    LEFTOVERS=()
    CP_COPY=""
    drop_caches
}

# --- setup ----------------------------------------------------------------

# At exit (lib.sh then stops the daemon, which unmounts the goldenfs views,
# and unmounts anything else left under $WORK): the overlay mounts, and any
# fuse-overlayfs this script started that outlived its mount.
bench_cleanup() {
    local m p
    for m in $(gfs_mounts_under_work); do
        case $(fstype_of "$m") in overlay | fuse | fuse.fuse-overlayfs) umount "$m" 2>/dev/null || umount -l "$m" ;; esac
    done
    for p in "${FOVL_PIDS[@]+"${FOVL_PIDS[@]}"}"; do
        case $(readlink "/proc/$p/exe" 2>/dev/null) in
            "$FOVL1_BIN" | "$FOVL2_BIN")
                tr '\0' '\n' <"/proc/$p/cmdline" 2>/dev/null | grep -q "^$WORK/mnt/" && kill -TERM "$p" 2>/dev/null ;;
        esac
    done
}

gfs_init bench
gfs_on_cleanup bench_cleanup
T_START=$SECONDS
LOWER="$WORK/lower"

say "Machine"
gfs_machine_summary "$WORK"
echo "busy:       $(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|cargo|clippy-driver)$' || true) compiler processes running at the start (rustc, cc1, ld, cargo)"

say "Building goldenfs (release) and installing what it is compared with"
gfs_build
echo "    goldenfs: $BIN"
if has_system fovl1; then
    [ -x "$FOVL1_BIN" ] || gfs_apt_install fuse-overlayfs fuse-overlayfs
    [ -x "$FOVL1_BIN" ] || die "Debian's fuse-overlayfs is not at $FOVL1_BIN"
    v=$("$FOVL1_BIN" --version 2>&1 | sed -n 's/^fuse-overlayfs: version //p')
    SYS_LABEL[fovl1]="fuse-overlayfs $v"
    echo "    fuse-overlayfs $v: $FOVL1_BIN (Debian package $(dpkg-query -W -f '${Version}' fuse-overlayfs 2>/dev/null))"
    [[ $v == 1.* ]] || echo "    warning: expected fuse-overlayfs 1.x at $FOVL1_BIN, got '$v'"
fi
if has_system fovl2; then
    if [ ! -x "$FOVL2_BIN" ] || ! "$FOVL2_BIN" --version 2>&1 | grep -q "version $FOVL2_VERSION\$"; then
        echo "    cargo install fuse-overlayfs@$FOVL2_VERSION --root $BENCH_TOOLS"
        cargo install --quiet --locked --root "$BENCH_TOOLS" fuse-overlayfs --version "$FOVL2_VERSION" ||
            die "cargo install fuse-overlayfs@$FOVL2_VERSION failed"
    fi
    v=$("$FOVL2_BIN" --version 2>&1 | sed -n 's/^fuse-overlayfs: version //p')
    [ "$v" = "$FOVL2_VERSION" ] || die "$FOVL2_BIN --version says '$v', not $FOVL2_VERSION"
    SYS_LABEL[fovl2]="fuse-overlayfs ${v%.0}"
    echo "    fuse-overlayfs $v: $FOVL2_BIN (crates.io)"
fi
if has_system overlayfs; then
    grep -qw overlay /proc/filesystems || modprobe overlay || die "kernel overlayfs is not available"
fi

say "Corpus"
mkdir -p "$LOWER"
if [ "$synthetic" -eq 1 ]; then
    corpus_desc="synthetic: 40 directories of 150 files of 100 B to 32 KiB, one 64 MiB file"
    python3 - "$LOWER/tree" <<'EOF'
import os, random, sys
root = sys.argv[1]
rng = random.Random(5)
os.mkdir(root)
for d in range(40):
    sub = os.path.join(root, "d%02d" % (d // 8), "e%02d" % d)
    os.makedirs(sub)
    for f in range(150):
        with open(os.path.join(sub, "f%03d.txt" % f), "wb") as fh:
            fh.write(rng.randbytes(rng.randint(100, 32768)))
    os.symlink("f000.txt", os.path.join(sub, "link"))
os.mkdir(os.path.join(root, "big"))
with open(os.path.join(root, "big", "blob.bin"), "wb") as fh:
    for _ in range(64):
        fh.write(rng.randbytes(1 << 20))
EOF
else
    if [ -z "$corpus" ]; then
        corpus=$(rustc --print sysroot 2>/dev/null) || die "no --corpus given and 'rustc --print sysroot' fails"
        corpus_desc="the stable Rust toolchain, $corpus ($(rustc --version))"
    else
        corpus_desc=$corpus
    fi
    [ -d "$corpus" ] || die "corpus $corpus is not a directory"
    need_kb=$(($(du -sk "$corpus" | cut -f1) * 4))
    free_kb=$(df --output=avail -k "$WORK" | tail -n 1)
    [ "$free_kb" -gt "$need_kb" ] || die "$WORK has $((free_kb / 1024)) MiB free; the corpus needs about $((need_kb / 1024)) MiB (4 copies at the peak)"
    now_us; t0=$NOW
    cp -a "$corpus" "$LOWER/tree"
    now_us
    echo "    copied into $LOWER/tree in $(fmt_s "$(awk -v d=$((NOW - t0)) 'BEGIN { print d / 1e6 }')") s"
fi
CORPUS_ENTRIES=$(find "$LOWER/tree" | wc -l)
corpus_files=$(find "$LOWER/tree" -type f | wc -l)
corpus_dirs=$(find "$LOWER/tree" -type d | wc -l)
corpus_bytes=$(du -sb "$LOWER/tree" | cut -f1)
read -r BIG_SIZE BIG < <(find "$LOWER/tree" -type f -printf '%s %P\n' | sort -n | tail -n 1)
BIG_HUMAN=$(numfmt --to=iec --suffix=B "$BIG_SIZE")
# SMALL_FILES files of at most 64 KiB, spread over the tree (every k-th in
# path order), other than the biggest.
find "$LOWER/tree" -type f -size -65k -printf '%P\n' | grep -vxF "$BIG" | sort >"$WORK/small.all"
n_small=$(wc -l <"$WORK/small.all")
[ "$n_small" -gt 0 ] || die "the corpus has no file of at most 64 KiB"
step=$((n_small / SMALL_FILES)); [ "$step" -ge 1 ] || step=1
awk -v k="$step" -v n="$SMALL_FILES" '(NR - 1) % k == 0 && c < n { print; c++ }' "$WORK/small.all" >"$WORK/small.list"
mapfile -t SMALL <"$WORK/small.list"
echo "    corpus:   $corpus_desc"
echo "    $(commas "$CORPUS_ENTRIES") entries: $(commas "$corpus_files") files, $(commas "$corpus_dirs") directories; $(numfmt --to=iec --suffix=B "$corpus_bytes")"
echo "    biggest file: tree/$BIG ($BIG_HUMAN)"
echo "    small files appended to: ${#SMALL[@]} of the $n_small files of at most 64 KiB"
[ "${#SMALL[@]}" -eq "$SMALL_FILES" ] || echo "    note: the corpus has fewer than $SMALL_FILES such files"
label_rows

# The tarball for the create row: CREATE_FILES files of 4 KiB in 100 dirs.
python3 - "$WORK/create-src" "$CREATE_FILES" <<'EOF'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "create", "d%03d" % (i % 100))
    if i < 100:
        os.makedirs(d)
    with open(os.path.join(d, "f%05d" % i), "wb") as fh:
        fh.write((b"%08d" % i) * 512)
EOF
tar -cf "$WORK/create.tar" -C "$WORK/create-src" create
rm -rf "$WORK/create-src"

if has_system goldenfs; then
    say "goldenfs: daemon, and the corpus imported as project bench"
    gfs_start_daemon
    used0=$(df --output=used -k "$WORK" | tail -n 1)
    now_us; t0=$NOW
    "$BIN" project create bench --from "$LOWER" --json >"$WORK/import.json"
    now_us
    import_s=$(awk -v d=$((NOW - t0)) 'BEGIN { print d / 1e6 }')
    used1=$(df --output=used -k "$WORK" | tail -n 1)
    layer=$(sed -n 's/.*"layer": *"\([^"]*\)".*/\1/p' "$WORK/import.json")
    GOLDEN_LAYER="$STATE/layers/$layer"
    [ -d "$GOLDEN_LAYER/tree" ] || die "no imported tree at $GOLDEN_LAYER/tree"
    # Could the store have shared the data (reflinks)? ext4 cannot.
    probe="$STATE/work/.reflink-probe"
    head -c 65536 /dev/zero >"$probe.src"
    if cp --reflink=always "$probe.src" "$probe.dst" 2>/dev/null; then how="reflinks possible on the store's filesystem: data shared, not copied"
    else how="no reflinks on the store's filesystem: every byte copied"; fi
    rm -f "$probe.src" "$probe.dst"
    echo "    import (project create --from, a copy): $(fmt_s "$import_s") s; $how; store grew by $(((used1 - used0) / 1024)) MiB"
fi

# --- the runs -------------------------------------------------------------

say "Measuring: ${#ROWS[@]} rows x ${#SYSTEMS[@]} systems x $runs runs"
T_MEASURE=$SECONDS
for RUN in $(seq 1 "$runs"); do
    # The systems take turns at going first.
    k=$(((RUN - 1) % ${#SYSTEMS[@]}))
    order=("${SYSTEMS[@]:k}" "${SYSTEMS[@]:0:k}")
    for row in "${ROWS[@]}"; do
        line="    run $RUN  $(printf '%-13s' "$row")"
        for sys in "${order[@]}"; do
            measure "$row" "$sys"
            last=${SAMPLES[$row,$sys]% }
            line+="  $sys $(fmt_s "${last##* }")"
        done
        echo "$line"
    done
    end_run
done
T_MEASURED=$((SECONDS - T_MEASURE))

# --- the table ------------------------------------------------------------

median_of() { gfs_median ${SAMPLES[$1,$2]}; }
ratio() { # ratio ROW SYSTEM: goldenfs / SYSTEM, or - if either is missing
    if has_system goldenfs && has_system "$2"; then
        awk -v a="$(median_of "$1" goldenfs)" -v b="$(median_of "$1" "$2")" \
            'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
    else
        echo "-"
    fi
}

say "Results: medians of $runs runs, seconds ($corpus_desc)"
header="| operation |"
sep="|---|"
for sys in "${SYSTEMS[@]}"; do header+=" ${SYS_LABEL[$sys]} |"; sep+="---:|"; done
show_ratio_ovl=0 show_ratio_fovl2=0
if has_system goldenfs && has_system overlayfs; then
    show_ratio_ovl=1; header+=" goldenfs / overlayfs |"; sep+="---:|"
fi
if has_system goldenfs && has_system fovl2; then
    show_ratio_fovl2=1; header+=" goldenfs / ${SYS_LABEL[fovl2]} |"; sep+="---:|"
fi
echo
echo "$header"
echo "$sep"
for row in "${ROWS[@]}"; do
    out="| ${ROW_LABEL[$row]} |"
    for sys in "${SYSTEMS[@]}"; do out+=" $(fmt_s "$(median_of "$row" "$sys")") |"; done
    [ "$show_ratio_ovl" -eq 0 ] || out+=" $(ratio "$row" overlayfs) |"
    [ "$show_ratio_fovl2" -eq 0 ] || out+=" $(ratio "$row" fovl2) |"
    echo "$out"
done

echo
echo "Every sample (seconds, in run order):"
for row in "${ROWS[@]}"; do
    for sys in "${SYSTEMS[@]}"; do
        printf '    %-13s %-10s' "$row" "$sys"
        for s in ${SAMPLES[$row,$sys]}; do printf ' %s' "$(fmt_s "$s")"; done
        echo
    done
done

echo
if has_system goldenfs; then
    echo "goldenfs import of the corpus: $(fmt_s "$import_s") s ($how)"
fi
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(ps -eo comm= | grep -cE '^(rustc|cc1|cc1plus|ld|cargo|clippy-driver)$' || true) compiler processes running"
echo "measuring: $(fmt_elapsed "$T_MEASURED"); total: $(fmt_elapsed $((SECONDS - T_START)))"
