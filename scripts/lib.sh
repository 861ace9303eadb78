# Shared helpers for the scripts in scripts/: a private scratch directory, a
# goldenfs daemon on a temporary store, tool installation, and a cleanup that
# leaves no mount, process or directory behind, even on failure.
#
# Usage (from a script in scripts/):
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#   gfs_init NAME          # WORK=/var/tmp/goldenfs-NAME.XXXXXX, traps set
#   gfs_build              # BIN=release binary ($GOLDENFS_BIN if set)
#   gfs_start_daemon       # daemon on $WORK/state, socket exported
#   gfs_on_cleanup CMD...  # run CMD at cleanup, before the daemon stops
# Everything mounted under $WORK is unmounted at exit.

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '%s: %s\n' "${GFS_SCRIPT:-${0##*/}}" "$*" >&2; exit 1; }

GFS_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GFS_CLEANUP_HOOKS=()
DAEMON_PID=""

# Prints the header comment of the calling script (its --help) and exits.
gfs_usage() { sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0; }

# gfs_no_options "$@": a script that takes no argument but --help.
gfs_no_options() {
    case ${1:-} in
        "") ;;
        -h | --help) gfs_usage ;;
        *) die "unknown option '$1' (see --help)" ;;
    esac
}

# Dies unless $2 is a positive integer; $1 names the option.
gfs_positive() { [[ $2 =~ ^[1-9][0-9]*$ ]] || die "$1 needs a positive number, not '$2'"; }

# The benchmarks' default corpus, the stable Rust toolchain directory, unless
# $1 is given; dies unless the result is a directory.
gfs_corpus() {
    local corpus=$1
    if [ -z "$corpus" ]; then
        corpus=$(rustc --print sysroot 2>/dev/null) || die "no --corpus given and 'rustc --print sysroot' fails"
    fi
    [ -d "$corpus" ] || die "corpus '$corpus' is not a directory"
    printf '%s\n' "$corpus"
}

gfs_require_root() {
    [ "$(id -u)" -eq 0 ] || die "must run as root (FUSE mounts with allow_other, trusted.* xattrs, mknod)"
    [ -c /dev/fuse ] || die "/dev/fuse is missing (modprobe fuse)"
}

# gfs_init NAME: make the private scratch directory and install the traps.
gfs_init() {
    GFS_SCRIPT=$1
    gfs_require_root
    # On a real disk (not tmpfs); world-traversable so that tests running as
    # other users (pjdfstest's dummy users) can reach mounts inside it.
    WORK=$(mktemp -d "/var/tmp/goldenfs-$1.XXXXXX")
    chmod 755 "$WORK"
    STATE="$WORK/state"
    LOG="$WORK/daemon.log"
    export GOLDENFS_SOCKET="$WORK/goldenfs.sock"
    mkdir -p "$STATE"
    trap gfs_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

gfs_on_cleanup() { GFS_CLEANUP_HOOKS+=("$*"); }

# Mount points under $WORK, deepest first.
gfs_mounts_under_work() {
    awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

gfs_cleanup() {
    local status=$?
    set +e
    trap - EXIT INT TERM
    if [ "$status" -ne 0 ] && [ -f "${LOG:-}" ]; then
        printf '\n--- last lines of the daemon log (%s) ---\n' "$LOG" >&2
        tail -n 40 "$LOG" >&2
    fi
    local hook
    for hook in "${GFS_CLEANUP_HOOKS[@]+"${GFS_CLEANUP_HOOKS[@]}"}"; do
        eval "$hook"
    done
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$DAEMON_PID" 2>/dev/null; then
            echo "${GFS_SCRIPT}: the daemon did not stop on SIGTERM; killing it" >&2
            kill -KILL "$DAEMON_PID" 2>/dev/null
        fi
        wait "$DAEMON_PID" 2>/dev/null
    fi
    if [ -n "${WORK:-}" ] && [ -d "$WORK" ]; then
        local m
        for m in $(gfs_mounts_under_work); do umount "$m" 2>/dev/null || umount -l "$m"; done
        rm -rf "$WORK"
    fi
    exit "$status"
}

# gfs_build: BIN is the release binary; builds it unless GOLDENFS_BIN is set.
gfs_build() {
    if [ -n "${GOLDENFS_BIN:-}" ]; then
        BIN=$GOLDENFS_BIN
    else
        (cd "$GFS_REPO" && cargo build --release --quiet) || die "cargo build --release failed"
        BIN="$GFS_REPO/target/release/goldenfs"
    fi
    [ -x "$BIN" ] || die "no goldenfs binary at $BIN"
}

gfs_start_daemon() {
    "$BIN" daemon --state-dir "$STATE" --socket "$GOLDENFS_SOCKET" "$@" >"$LOG" 2>&1 &
    DAEMON_PID=$!
    for _ in $(seq 1 100); do
        if "$BIN" status >/dev/null 2>&1; then return 0; fi
        kill -0 "$DAEMON_PID" 2>/dev/null || die "the daemon exited during start-up (log: $LOG)"
        sleep 0.1
    done
    die "the daemon does not answer on $GOLDENFS_SOCKET"
}

# gfs_cargo_install CRATE VERSION: install a pinned cargo tool unless present.
gfs_cargo_install() {
    local crate=$1 version=$2
    if command -v "$crate" >/dev/null 2>&1 &&
        cargo install --list | grep -qx "$crate v$version:"; then
        return 0
    fi
    echo "    cargo install $crate@$version"
    cargo install --quiet --locked "$crate" --version "$version" || die "cargo install $crate@$version failed"
}

# gfs_apt_install CMD PACKAGE: install a Debian package unless CMD exists.
gfs_apt_install() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    echo "    apt-get install $pkg"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null; } ||
        die "apt-get install $pkg failed"
}

# gfs_median X...: the median of the numbers (the mean of the two middle ones
# for an even count).
gfs_median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR == 0) exit 1; m = int((NR + 1) / 2)
              if (NR % 2) print v[m]; else print (v[m] + v[m + 1]) / 2 }'
}

# gfs_machine_summary [DIR]: CPU, cores, memory, kernel, and the filesystem
# holding DIR (default /var/tmp), one line each, for benchmark reports.
gfs_machine_summary() {
    local dir=${1:-/var/tmp}
    echo "cpu:        $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores"
    echo "memory:     $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
    echo "kernel:     $(uname -sr)"
    echo "filesystem: $(df --output=fstype "$dir" | tail -n 1) ($(df --output=source "$dir" | tail -n 1)) at $dir"
    echo "load:       $(cut -d' ' -f1-3 /proc/loadavg) (1, 5, 15 min)"
}
