#!/usr/bin/env bash
# Data-path stress of a goldenfs session view with fsx (crates.io `fsx`, the
# Rust rewrite of the File System eXerciser): pseudorandom reads, writes,
# mmap reads and writes, truncates, fallocate, hole punching, sendfile,
# copy_file_range, fsync and reopen, each read checked against a model.
#
# Four files, a fixed seed and N operations each (default 100000):
#   upper          created in the session (never in a layer)
#   lower-trunc    starts in the generation; fsx opens it O_TRUNC (copy-up)
#   lower-keep     starts in the generation with 256 KiB of data; fsx keeps
#                  its size (block mode), so copy-up carries the data
#   lower-cached   like lower-trunc, while another process holds the lower
#                  copy open read-only: the inode stays in page-cache I/O
#                  mode and every read and write goes through the daemon
#                  instead of FUSE passthrough
# Exits non-zero on any miscompare or error.
#
# Usage: scripts/fsx.sh [-N OPS] [-S SEED] [FILE...]   (FILE: names above)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FSX_VERSION=0.3.2
ops=100000
seed=20261124
files=()
while [ $# -gt 0 ]; do
    case $1 in
        -N) ops=${2:?-N needs a number}; shift ;;
        -S) seed=${2:?-S needs a number}; shift ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        upper | lower-trunc | lower-keep | lower-cached) files+=("$1") ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
    shift
done
[ "${#files[@]}" -ne 0 ] || files=(upper lower-trunc lower-keep lower-cached)

gfs_init fsx
say "Installing fsx $FSX_VERSION"
gfs_cargo_install fsx "$FSX_VERSION"

FLEN=262144
# Every operation fsx has, mmap included.
cat >"$WORK/fsx.toml" <<EOF
flen = $FLEN
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
truncate = 5
fsync = 1
fdatasync = 1
posix_fallocate = 2
punch_hole = 2
sendfile = 2
posix_fadvise = 1
copy_file_range = 2
EOF
# Block mode never changes the size: no truncate, fallocate or reopen.
sed -e '1a blockmode = true\nnosizechecks = true' \
    -e 's/^\(truncate\|posix_fallocate\|close_open\) = .*/\1 = 0/' "$WORK/fsx.toml" >"$WORK/fsx-block.toml"

GOLDEN="$WORK/golden"
mkdir -p "$GOLDEN/data"
for f in lower-trunc lower-keep lower-cached; do
    head -c "$FLEN" /dev/urandom >"$GOLDEN/data/$f"
done

gfs_build
gfs_start_daemon
"$BIN" project create fsx --from "$GOLDEN" >/dev/null
mkdir -p "$WORK/view" "$WORK/artifacts"
"$BIN" session mount fsx s1 "$WORK/view"

failed=()
for f in "${files[@]}"; do
    conf="$WORK/fsx.toml"
    [ "$f" = lower-keep ] && conf="$WORK/fsx-block.toml"
    path="$WORK/view/data/$f"
    say "fsx $f: $ops operations, seed $seed"
    holder=""
    if [ "$f" = lower-cached ]; then
        # Hold the lower copy open read-only for the whole run.
        sleep infinity <"$path" &
        holder=$!
    fi
    start=$(date +%s.%N)
    status=0
    fsx -q -f "$conf" -N "$ops" -S "$seed" -P "$WORK/artifacts" "$path" >"$WORK/fsx-$f.log" 2>&1 || status=$?
    end=$(date +%s.%N)
    [ -z "$holder" ] || { kill "$holder"; wait "$holder" 2>/dev/null || true; }
    tail -n 3 "$WORK/fsx-$f.log" | sed 's/^/    /'
    if [ "$status" -ne 0 ] || ! grep -q 'All operations completed A-OK' "$WORK/fsx-$f.log"; then
        echo "    FAILED (exit $status); the last operations:"
        tail -n 40 "$WORK/fsx-$f.log" | sed 's/^/    /'
        failed+=("$f")
    fi
    printf '    %s: %.1f s\n' "$f" "$(awk -v a="$start" -v b="$end" 'BEGIN { print b - a }')"
done

"$BIN" session unmount s1 >/dev/null
say "Result"
echo "fsx: ${#files[@]} files x $ops operations (seed $seed), ${#failed[@]} failed${failed[*]:+: ${failed[*]}}"
[ "${#failed[@]}" -eq 0 ]
