#!/usr/bin/env bash
# goldenfs demo: build, start a daemon on a temporary store, import a small
# golden tree, mount two copy-on-write sessions, write in one, show the other
# is unaffected, promote, mount a third session on generation 2 and print its
# golden-version.json. Everything is torn down on exit, even on failure.
#
# Needs root and /dev/fuse. Usage: ./scripts/demo.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo.sh: %s\n' "$*" >&2; exit 1; }
check() { # check DESCRIPTION COMMAND...: fail the demo if COMMAND fails
    local what=$1; shift
    if "$@"; then printf '    ok: %s\n' "$what"; else die "FAILED: $what"; fi
}

[ "$(id -u)" -eq 0 ] || die "must run as root (FUSE mounts with allow_other, trusted.* xattrs)"
[ -c /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse)"

say "Building goldenfs (cargo build --release)"
cargo build --release
BIN="$PWD/target/release/goldenfs"

# A store on a real disk (not tmpfs), private to this run.
WORK=$(mktemp -d /var/tmp/goldenfs-demo.XXXXXX)
STATE="$WORK/state"
export GOLDENFS_SOCKET="$WORK/goldenfs.sock"
LOG="$WORK/daemon.log"
DAEMON_PID=""
mkdir -p "$STATE" "$WORK/mnt/s1" "$WORK/mnt/s2" "$WORK/mnt/s3"

cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [ "$status" -ne 0 ] && [ -f "$LOG" ]; then
        printf '\n--- last lines of the daemon log (%s) ---\n' "$LOG" >&2
        tail -n 40 "$LOG" >&2
    fi
    echo
    echo "==> Cleaning up"
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        for s in s1 s2 s3; do
            if mountpoint -q "$WORK/mnt/$s"; then "$BIN" session unmount "$s" >/dev/null 2>&1; fi
        done
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "    daemon did not stop on SIGTERM; killing it" >&2
            kill -KILL "$DAEMON_PID" 2>/dev/null
        fi
        wait "$DAEMON_PID" 2>/dev/null
    fi
    for m in "$WORK"/mnt/*; do
        if mountpoint -q "$m"; then umount -l "$m"; fi
    done
    rm -rf "$WORK"
    echo "    removed $WORK"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "Starting the daemon on a temporary store ($STATE)"
"$BIN" daemon --state-dir "$STATE" --socket "$GOLDENFS_SOCKET" >"$LOG" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do
    if "$BIN" status >/dev/null 2>&1; then break; fi
    kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited during start-up"
    sleep 0.1
done
"$BIN" status >/dev/null || die "the daemon does not answer on $GOLDENFS_SOCKET"
echo "    daemon pid $DAEMON_PID, socket $GOLDENFS_SOCKET"

say "Generating a small sample golden tree"
GOLDEN="$WORK/golden"
mkdir -p "$GOLDEN/app/data" "$GOLDEN/cache"
echo "setting: original" >"$GOLDEN/app/config.yaml"
for i in 1 2 3; do echo "record $i" >"$GOLDEN/app/data/record-$i.txt"; done
echo "warm cache entry" >"$GOLDEN/cache/entry"
ln -s app/config.yaml "$GOLDEN/config-link"
(cd "$GOLDEN" && find . | sort | sed 's/^/    /')

say "goldenfs project create demo --from $GOLDEN"
"$BIN" project create demo --from "$GOLDEN"
"$BIN" generations demo

say "Mounting two sessions: s1 and s2 (both on generation 1)"
"$BIN" session mount demo s1 "$WORK/mnt/s1"
"$BIN" session mount demo s2 "$WORK/mnt/s2"
"$BIN" session list

say "Writing in s1: edit a file, delete a file, delete a directory, add a file"
echo "setting: changed in s1" >"$WORK/mnt/s1/app/config.yaml"
rm "$WORK/mnt/s1/app/data/record-2.txt"
rm -rf "$WORK/mnt/s1/cache"
echo "built by s1" >"$WORK/mnt/s1/BUILD-RESULT"
echo "    s1/app/config.yaml: $(cat "$WORK/mnt/s1/app/config.yaml")"
echo "    s1 root: $(ls "$WORK/mnt/s1" | tr '\n' ' ')"

say "s2 is unaffected"
echo "    s2/app/config.yaml: $(cat "$WORK/mnt/s2/app/config.yaml")"
echo "    s2 root: $(ls "$WORK/mnt/s2" | tr '\n' ' ')"
check "s2 still has the original config" grep -qx "setting: original" "$WORK/mnt/s2/app/config.yaml"
check "s2 still has record-2.txt" test -f "$WORK/mnt/s2/app/data/record-2.txt"
check "s2 still has cache/" test -f "$WORK/mnt/s2/cache/entry"
check "s2 does not see BUILD-RESULT" test ! -e "$WORK/mnt/s2/BUILD-RESULT"
check "the golden tree on disk is unchanged" grep -qx "setting: original" "$GOLDEN/app/config.yaml"

say "Unmounting s1 and promoting it: generation 2"
"$BIN" session unmount s1
"$BIN" promote demo s1
"$BIN" generations demo

say "Mounting a third session s3: it starts from generation 2"
"$BIN" session mount demo s3 "$WORK/mnt/s3"
echo "    s3/app/config.yaml: $(cat "$WORK/mnt/s3/app/config.yaml")"
echo "    s3 root: $(ls "$WORK/mnt/s3" | tr '\n' ' ')"
check "s3 sees s1's edit" grep -qx "setting: changed in s1" "$WORK/mnt/s3/app/config.yaml"
check "s3 sees s1's new file" test -f "$WORK/mnt/s3/BUILD-RESULT"
check "s3 does not see what s1 deleted" test ! -e "$WORK/mnt/s3/cache"

say "cat s3/golden-version.json"
cat "$WORK/mnt/s3/golden-version.json"
check "s3 is on generation 2" grep -Eq '"generation": *2' "$WORK/mnt/s3/golden-version.json"
check "s2, mounted before the promotion, is still on generation 1" \
    grep -Eq '"generation": *1' "$WORK/mnt/s2/golden-version.json"

say "Tearing down: unmount, discard, stop the daemon"
"$BIN" session unmount s2
"$BIN" session unmount s3
"$BIN" session discard s2
"$BIN" session discard s3
kill -TERM "$DAEMON_PID"
wait "$DAEMON_PID" || die "the daemon exited non-zero on SIGTERM"
DAEMON_PID=""
say "Demo finished"
