#!/usr/bin/env bash
# Daemon memory against sessions (issue 5): how much the daemon's resident
# memory grows per idle mounted session, and whether it comes back after
# views were walked and the kernel forgot their inodes.
#
# It imports the corpus as one project, then measures the daemon's VmRSS
# (and its anonymous part, RssAnon; the rest is the binary's and libraries'
# code pages) from /proc:
#   1. after start-up, with no session;
#   2. with --sessions idle sessions mounted (each answered one stat);
#   3. after a full `find` walk (an lstat of every entry) in --walked of them;
#   4. after `echo 2 > /proc/sys/vm/drop_caches`, once the kernel has sent
#      its FORGETs (the fuse_inode slab is back to where it was).
# It prints a Markdown table and the two ratios issue 5 sets targets for:
# growth per idle session (target <= 2 MiB) and RSS after the forget against
# RSS before the walks (target <= 1.2). It never fails on the numbers.
#
# Usage: scripts/bench-memory.sh [OPTIONS]
#   --corpus DIR     golden to import (default: the stable Rust toolchain,
#                    `rustc --print sysroot`, about 53,000 entries)
#   --sessions N     idle sessions to mount (default 16)
#   --walked N       sessions to walk, at most --sessions (default 4)
#   -h, --help       this text
# Environment: GOLDENFS_BIN (use this binary instead of building).
# Needs root and /dev/fuse. About 2 minutes with the default corpus.
set -euo pipefail
export LC_ALL=C
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

corpus=""
sessions=16
walked=4
while [ $# -gt 0 ]; do
    case $1 in
        --corpus) corpus=${2:?--corpus needs a directory}; shift ;;
        --sessions) sessions=${2:?--sessions needs a number}; shift ;;
        --walked) walked=${2:?--walked needs a number}; shift ;;
        -h | --help) gfs_usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done
gfs_positive --sessions "$sessions"
gfs_positive --walked "$walked"
[ "$walked" -le "$sessions" ] || die "--walked ($walked) cannot exceed --sessions ($sessions)"
corpus=$(gfs_corpus "$corpus")

gfs_init bench-memory
T_START=$SECONDS

say "Machine"
gfs_machine_summary "$WORK"

say "Building goldenfs (release)"
gfs_build
echo "    $BIN"
gfs_start_daemon

rss_kb() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
fuse_inodes() { awk '$1 == "fuse_inode" { print $2 }' /proc/slabinfo; }
declare -A RSS ANON
sample() { # sample LABEL
    RSS[$1]=$(rss_kb "$DAEMON_PID" VmRSS)
    ANON[$1]=$(rss_kb "$DAEMON_PID" RssAnon)
    printf '    %-22s VmRSS %8s KiB   RssAnon %8s KiB\n' "$1" "${RSS[$1]}" "${ANON[$1]}"
}

say "Importing the corpus ($corpus)"
"$BIN" project create mem --from "$corpus" >/dev/null
entries=$(find "$corpus" | wc -l)
echo "    $entries entries"

say "Measuring"
slab0=$(fuse_inodes)
sample start
for i in $(seq 1 "$sessions"); do
    mkdir -p "$WORK/mnt/s$i"
    "$BIN" session mount mem "s$i" "$WORK/mnt/s$i" >/dev/null
    stat "$WORK/mnt/s$i/golden-version.json" >/dev/null
done
sample idle
for i in $(seq 1 "$walked"); do
    got=$(find "$WORK/mnt/s$i" -printf '%i %s\n' | wc -l)
    [ "$got" -ge "$entries" ] || die "walk of s$i saw $got entries, the corpus has $entries"
done
sample walked
sync
echo 2 >/proc/sys/vm/drop_caches
# FORGETs are asynchronous: wait until the kernel's FUSE inodes are gone and
# the daemon's RSS has stopped moving.
prev=0
for _ in $(seq 1 50); do
    sleep 0.2
    now=$(rss_kb "$DAEMON_PID" VmRSS)
    [ "$(fuse_inodes)" -le $((slab0 + sessions * 4 + 64)) ] && [ "$now" = "$prev" ] && break
    prev=$now
done
sample forgotten

per_session=$(awk -v a="${RSS[start]}" -v b="${RSS[idle]}" -v n="$sessions" 'BEGIN { printf "%.2f", (b - a) / n / 1024 }')
per_session_anon=$(awk -v a="${ANON[start]}" -v b="${ANON[idle]}" -v n="$sessions" 'BEGIN { printf "%.2f", (b - a) / n / 1024 }')
back=$(awk -v a="${RSS[idle]}" -v b="${RSS[forgotten]}" 'BEGIN { printf "%.2f", b / a }')
back_anon=$(awk -v a="${ANON[idle]}" -v b="${ANON[forgotten]}" 'BEGIN { printf "%.2f", b / a }')

say "Results"
echo
echo "Daemon memory, $sessions sessions of a $entries-entry golden, $walked walked then forgotten:"
echo
echo "| state | VmRSS (MiB) | RssAnon (MiB) |"
echo "|---|---:|---:|"
echo "| daemon started, no session | $(mib "${RSS[start]}") | $(mib "${ANON[start]}") |"
echo "| $sessions idle sessions mounted | $(mib "${RSS[idle]}") | $(mib "${ANON[idle]}") |"
echo "| after a full walk in $walked of them | $(mib "${RSS[walked]}") | $(mib "${ANON[walked]}") |"
echo "| after drop_caches (inodes forgotten) | $(mib "${RSS[forgotten]}") | $(mib "${ANON[forgotten]}") |"
echo
echo "growth per idle session: $per_session MiB (anonymous $per_session_anon MiB; target <= 2 MiB)"
echo "after the forget / before the walks: $back (anonymous $back_anon; target <= 1.2)"
echo
echo "total time: $((SECONDS - T_START)) s"
