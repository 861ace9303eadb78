#!/usr/bin/env bash
# POSIX conformance of a goldenfs session view with pjdfstest (the Rust
# rewrite, crates.io `pjdfstest`), and of kernel overlayfs over the same lower
# tree for reference, side by side.
#
# The view is a fresh session on a generation with content; the suite runs in
# `work/`, a directory that exists in the generation (a merged directory).
# Two runs per target, because pjdfstest leaks open files between test cases,
# which makes a read-only remount fail with EBUSY on any filesystem (ext4
# included): the full suite without remounts, then the EROFS cases alone with
# remounts allowed. Every test case runs exactly once per target.
#
# Prints `pjdfstest: N passed, M failed` for goldenfs last; exits non-zero if
# any goldenfs case failed. Failures of the reference do not fail the script.
#
# Usage: scripts/pjdfstest.sh [--no-reference] [-- PATTERN...]
#   --no-reference   skip the kernel overlayfs run
#   PATTERN...       only test cases matching these (pjdfstest's filter)
# Needs root and /dev/fuse; installs pjdfstest and its dummy user `tests`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PJDFSTEST_VERSION=0.2.2
reference=1
patterns=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-reference) reference=0 ;;
        --) shift; patterns=("$@"); break ;;
        -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

gfs_init pjdfstest
say "Installing pjdfstest $PJDFSTEST_VERSION and its dummy users"
gfs_cargo_install pjdfstest "$PJDFSTEST_VERSION"
# pjdfstest switches to two unprivileged users: nobody and `tests`.
if ! id tests >/dev/null 2>&1; then
    useradd --system --user-group --no-create-home --shell /usr/sbin/nologin tests ||
        die "cannot create the dummy user 'tests' (useradd)"
fi
nobody_group=$(id -gn nobody) || die "the user 'nobody' is missing"

cat >"$WORK/pjdfstest.toml" <<EOF
[features]
posix_fallocate = {}
rename_ctime = {}
utime_now = {}
utimensat = {}

[settings]
# Longer than the kernel's coarse timestamp granularity (one jiffy).
naptime = 0.01
allow_remount = ALLOW_REMOUNT

[dummy_auth]
entries = [["nobody", "$nobody_group"], ["tests", "tests"]]
EOF
sed 's/ALLOW_REMOUNT/false/' "$WORK/pjdfstest.toml" >"$WORK/no-remount.toml"
sed 's/ALLOW_REMOUNT/true/' "$WORK/pjdfstest.toml" >"$WORK/remount.toml"

# pjdfstest remounts with `mount -o remount,ro PATH`. For a FUSE mount,
# mount(8) would hand that to the mount.fuse helper, which does not know
# goldenfs; `-i` makes it call mount(2) directly, as it does for overlayfs.
mkdir -p "$WORK/bin"
printf '#!/bin/sh\nexec /bin/mount -i "$@"\n' >"$WORK/bin/mount"
chmod 755 "$WORK/bin/mount"

# A second filesystem for the EXDEV cases.
mkdir -p "$WORK/secondary"
mount -t tmpfs -o size=16m goldenfs-pjdfstest-secondary "$WORK/secondary"

say "Generating the golden tree"
GOLDEN="$WORK/golden"
mkdir -p "$GOLDEN/work/lower-dir/nested" "$GOLDEN/etc" "$GOLDEN/var/lib/app"
for i in $(seq 1 50); do echo "lower file $i" >"$GOLDEN/work/lower-file-$i"; done
for i in $(seq 1 20); do echo "nested $i" >"$GOLDEN/work/lower-dir/nested/n-$i"; done
echo "config" >"$GOLDEN/etc/app.conf"
ln -s ../etc/app.conf "$GOLDEN/work/lower-symlink"
ln "$GOLDEN/work/lower-file-1" "$GOLDEN/work/lower-hardlink"
mkfifo "$GOLDEN/var/lib/app/fifo"
chmod 1777 "$GOLDEN/work"
echo "    $(find "$GOLDEN" | wc -l) entries"

# run_suite NAME DIR: both runs in DIR; sets P_PASSED P_FAILED P_SKIPPED.
run_suite() {
    local name=$1 dir=$2 out1="$WORK/$1-main.txt" out2="$WORK/$1-erofs.txt"
    local filter=("${patterns[@]+"${patterns[@]}"}")
    (cd "$dir" && PATH="$WORK/bin:$PATH" pjdfstest -c "$WORK/no-remount.toml" -p "$dir" \
        -s "$WORK/secondary" "${filter[@]+"${filter[@]}"}") >"$out1" 2>&1 || true
    # The EROFS cases (skipped in the first run) on their own, remounts allowed.
    local erofs=(erofs)
    if [ "${#filter[@]}" -ne 0 ]; then
        erofs=()
        for p in "${filter[@]}"; do [[ $p == *erofs* ]] && erofs+=("$p"); done
    fi
    : >"$out2"
    if [ "${#erofs[@]}" -ne 0 ]; then
        (cd "$dir" && PATH="$WORK/bin:$PATH" pjdfstest -c "$WORK/remount.toml" -p "$dir" \
            -s "$WORK/secondary" "${erofs[@]}") >"$out2" 2>&1 || true
    fi
    grep -q '^Summary:' "$out1" || { tail -n 30 "$out1" >&2; die "pjdfstest did not finish on $name"; }
    # A case is counted by its last result line: erofs cases are `skipped`
    # in the first run and `ok`/`FAILED` in the second.
    awk '
        /^[a-z_0-9]+(::[a-z_0-9]+)+ +(ok|FAILED|skipped)$/ { r[$1] = $2 }
        END { for (k in r) print k, r[k] }' "$out1" "$out2" | sort >"$WORK/$name-results.txt"
    P_PASSED=$(grep -c ' ok$' "$WORK/$name-results.txt" || true)
    P_FAILED=$(grep -c ' FAILED$' "$WORK/$name-results.txt" || true)
    P_SKIPPED=$(grep -c ' skipped$' "$WORK/$name-results.txt" || true)
    echo "    $name: $P_PASSED passed, $P_FAILED failed, $P_SKIPPED skipped"
    if [ "$P_FAILED" -ne 0 ]; then
        echo "    failed cases on $name:"
        grep ' FAILED$' "$WORK/$name-results.txt" | sed 's/ FAILED$//; s/^/      /'
    fi
    if [ "$P_SKIPPED" -ne 0 ]; then
        echo "    skipped cases on $name (reason):"
        # The reason is the line after `NAME  skipped`; a case counts by its last run.
        awk '/^[a-z_0-9]+(::[a-z_0-9]+)+ +(ok|FAILED|skipped)$/ {
                last = $1; r[$1] = $2; why[$1] = ""; next }
            last != "" && r[last] == "skipped" && why[last] == "" { sub(/^[ \t]+/, ""); why[last] = $0 }
            END { for (k in r) if (r[k] == "skipped") print "      " k ": " why[k] }' "$out1" "$out2" | sort
    fi
}

print_failures() { # print_failures NAME: the details pjdfstest gave for each failure
    local name=$1
    grep ' FAILED$' "$WORK/$name-results.txt" | while read -r case _; do
        echo "--- $case"
        awk -v c="$case" '$1 == c && $2 == "FAILED" { p = 1; next }
            p && /^[a-z_0-9]+(::[a-z_0-9]+)+ +(ok|FAILED|skipped)$/ { exit }
            p && !/^ +[0-9]+: |^ +at |Stack backtrace|^Backtrace/ { print }' \
            "$WORK/$name-main.txt" "$WORK/$name-erofs.txt" | head -n 8
    done
}

gfs_build
gfs_start_daemon

if [ "$reference" -eq 1 ]; then
    say "Reference: kernel overlayfs over the same lower tree"
    mkdir -p "$WORK/ovl/upper" "$WORK/ovl/work" "$WORK/ovl/mnt"
    mount -t overlay goldenfs-pjdfstest-ovl \
        -o "lowerdir=$GOLDEN,upperdir=$WORK/ovl/upper,workdir=$WORK/ovl/work" "$WORK/ovl/mnt"
    run_suite overlayfs "$WORK/ovl/mnt/work"
    REF_PASSED=$P_PASSED REF_FAILED=$P_FAILED
    umount "$WORK/ovl/mnt"
fi

say "goldenfs: a fresh session view on a generation with content"
"$BIN" project create pjd --from "$GOLDEN" >/dev/null
mkdir -p "$WORK/view"
"$BIN" session mount pjd s1 "$WORK/view"
run_suite goldenfs "$WORK/view/work"
G_PASSED=$P_PASSED G_FAILED=$P_FAILED
if [ "$G_FAILED" -ne 0 ]; then
    say "Details of the goldenfs failures"
    print_failures goldenfs
fi
"$BIN" session unmount s1 >/dev/null

say "Result"
if [ "$reference" -eq 1 ]; then
    echo "pjdfstest (kernel overlayfs, reference): $REF_PASSED passed, $REF_FAILED failed"
fi
echo "pjdfstest: $G_PASSED passed, $G_FAILED failed"
[ "$G_FAILED" -eq 0 ]
