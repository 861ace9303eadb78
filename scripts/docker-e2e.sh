#!/usr/bin/env bash
# Docker end to end (issue 4): a real dockerd (Debian's docker.io) with its
# --data-root on a goldenfs session view, promotion of that session, and
# cached, isolated later sessions.
#
#  1. goldenfs daemon up, project created empty, session `warm` mounted; a
#     dockerd on it; `docker info` reports the overlay2 storage driver.
#  2. A base image from busybox-static (`docker import`; no registry here);
#     `docker build` of a Dockerfile that creates files, deletes files of an
#     earlier step (whiteouts inside overlay2 layers), re-creates a deleted
#     directory (opaque), renames a directory, chmods/chowns, appends to a
#     file of an earlier layer, makes a hard link and a symlink and sets a
#     security.capability xattr (setcap); `docker run` of the result must
#     print the expected content. With the legacy builder, then BuildKit
#     (DOCKER_BUILDKIT=1) if it runs here: the script says so if it does not.
#  3. dockerd stopped cleanly (exit 0, nothing left mounted on the view);
#     `warm` unmounted; `goldenfs promote` makes generation 2.
#  4. Session s1 on generation 2 with a new dockerd: the images are listed;
#     rebuilding uses the cache for every step (same image IDs); `docker run`
#     works; a container with the view bind-mounted sees golden-version.json
#     with generation 2 and session_id "warm".
#  5. Session s2, concurrently on generation 2 with its own dockerd: an image
#     built in s1 is invisible in s2 (to dockerd and as files), and the other
#     way round.
#  6. Everything torn down and checked: no mount, process, cgroup or
#     directory left. The cold builds of step 2 are repeated on a dockerd
#     whose data-root is a plain directory, and the goldenfs/plain build-time
#     ratios printed.
#
# Every step prints its wall time; any failed check exits non-zero. Cleanup
# (also on failure and Ctrl-C) stops every dockerd, kills what is left of its
# containers, unmounts everything under the scratch dir, removes its cgroups.
#
# Usage: scripts/docker-e2e.sh
# Needs root and /dev/fuse; installs docker.io and busybox-static if missing.
# Environment: GOLDENFS_BIN (skip the cargo build); DOCKER (the client,
# default /usr/bin/docker: docker.io's 20.10 client, whose built-in BuildKit
# support needs no buildx plugin); DOCKER_E2E_KEEP_LOGS=DIR copies the logs
# (dockerd, goldenfs daemon, builds, runs) to DIR before the teardown.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
export LC_ALL=C

case ${1:-} in
    "") ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option '$1' (see --help)" ;;
esac

gfs_init docker-e2e
RUN_DIR="$WORK/run"                 # dockerd exec-roots, sockets, pidfiles, keys
CGROUP_PARENT="/$(basename "$WORK")" # every container cgroup of this run lives below it
export DOCKER_CONFIG="$WORK/docker-config"
unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
DOCKER=${DOCKER:-/usr/bin/docker}
declare -A DOCKERD_PID=()
mkdir -p "$RUN_DIR" "$DOCKER_CONFIG" "$WORK/logs"
# Host directories dockerd and containerd create whatever their roots are
# (plugin discovery, shim sockets): removed at cleanup if this run made them.
HOST_DIRS=(/run/docker/plugins /run/docker /run/containerd/s /run/containerd)
CREATED_HOST_DIRS=()
for d in "${HOST_DIRS[@]}"; do [ -e "$d" ] || CREATED_HOST_DIRS+=("$d"); done

# ---------------------------------------------------------------- helpers

elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
STEP_TITLES=() STEP_TIMES=()
step() { # step N TITLE
    STEP_NO=$1 STEP_T0=$EPOCHREALTIME
    STEP_TITLES[$1]=$2
    say "Step $1: $2"
}
step_done() {
    STEP_TIMES[$STEP_NO]=$(elapsed "$STEP_T0")
    printf '    step %s done in %s s\n' "$STEP_NO" "${STEP_TIMES[$STEP_NO]}"
}
ok() { printf '    ok: %s\n' "$*"; }

# Tail of the warnings and errors of every dockerd log, for failures.
dockerd_log_tails() {
    local f
    for f in "$WORK"/logs/dockerd-*.log; do
        [ -f "$f" ] || continue
        printf -- '--- warnings/errors in %s (last 15) ---\n' "${f##*/}" >&2
        grep -E 'level=(warning|error|fatal)' "$f" | grep -v 'module=grpc' | tail -n 15 >&2 || true
    done
}
fail() {
    printf '%s: FAILED: %s\n' "$GFS_SCRIPT" "$*" >&2
    dockerd_log_tails
    exit 1
}

# dk NAME ARGS...: the docker client of dockerd NAME.
dk() {
    local name=$1
    shift
    DOCKER_HOST="unix://$RUN_DIR/$name.sock" "$DOCKER" "$@"
}

# dockerd_start NAME DATA_ROOT: a private dockerd, waits until it answers.
dockerd_start() {
    local name=$1 root=$2
    mkdir -p "$RUN_DIR/$name"
    # Only the trust key's path goes in the config file: dockerd would
    # otherwise write /etc/docker/key.json (and read /etc/docker/daemon.json).
    printf '{ "deprecated-key-path": "%s" }\n' "$RUN_DIR/$name-key.json" >"$RUN_DIR/$name.json"
    dockerd --config-file "$RUN_DIR/$name.json" \
        --data-root "$root" --exec-root "$RUN_DIR/$name" \
        -H "unix://$RUN_DIR/$name.sock" --pidfile "$RUN_DIR/$name.pid" \
        --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
        --storage-driver overlay2 --cgroup-parent "$CGROUP_PARENT/$name" \
        --shutdown-timeout 5 \
        >"$WORK/logs/dockerd-$name.log" 2>&1 &
    DOCKERD_PID[$name]=$!
    local i
    for i in $(seq 1 600); do
        if dk "$name" version >/dev/null 2>&1; then return 0; fi
        kill -0 "${DOCKERD_PID[$name]}" 2>/dev/null || {
            tail -n 20 "$WORK/logs/dockerd-$name.log" >&2
            fail "dockerd $name exited during start-up"
        }
        sleep 0.1
    done
    fail "dockerd $name does not answer on $RUN_DIR/$name.sock after 60 s"
}

# dockerd_stop NAME: SIGTERM, wait; returns dockerd's exit status (1 if it
# had to be killed).
dockerd_stop() {
    local name=$1 pid=${DOCKERD_PID[$1]:-} status=0 i
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        echo "    dockerd $name did not stop within 60 s of SIGTERM; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
        status=1
    fi
    wait "$pid" 2>/dev/null || status=$?
    unset "DOCKERD_PID[$name]"
    return "$status"
}

# Mount points under DIR/ (not DIR itself) other than goldenfs views,
# deepest first.
mounts_under() {
    awk -v w="$1/" 'index($5, w) == 1 {
            for (i = 7; $i != "-"; i++) ;
            if (!($(i + 1) == "fuse" && index($(i + 2), "goldenfs:") == 1)) print $5
        }' /proc/self/mountinfo | sort -r
}

# PIDs of processes (other than this script and the goldenfs daemon) whose
# command line mentions $WORK: dockerd, containerd, shims.
procs_of_work() {
    local p cmd
    for p in /proc/[0-9]*; do
        p=${p#/proc/}
        [ "$p" = "$$" ] || [ "$p" = "$BASHPID" ] || [ "$p" = "${DAEMON_PID:-}" ] && continue
        cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline") || continue
        [[ $cmd == *"$WORK"* ]] && echo "$p"
    done
    return 0
}

# Cgroup directories of this run, deepest first (cgroup v1 and v2 layouts).
cgroups_of_run() {
    local d
    for d in /sys/fs/cgroup"$CGROUP_PARENT" /sys/fs/cgroup/*"$CGROUP_PARENT"; do
        [ -d "$d" ] && find "$d" -depth -type d
    done
    return 0
}

# Cleanup hook (runs before the goldenfs daemon stops): every dockerd, what
# is left of containerd, shims and containers, their mounts, their cgroups.
docker_cleanup() {
    local name p m d
    for name in "${!DOCKERD_PID[@]}"; do dockerd_stop "$name" >/dev/null 2>&1; done
    for p in $(procs_of_work); do kill -KILL "$p" 2>/dev/null; done
    for d in $(cgroups_of_run); do
        [ -f "$d/cgroup.procs" ] || continue
        for p in $(cat "$d/cgroup.procs" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    done
    sleep 0.2
    for m in $(mounts_under "$WORK"); do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    for d in $(cgroups_of_run); do rmdir "$d" 2>/dev/null; done
    for d in "${CREATED_HOST_DIRS[@]+"${CREATED_HOST_DIRS[@]}"}"; do rmdir "$d" 2>/dev/null; done
    return 0
}
gfs_on_cleanup docker_cleanup

# json_num FILE KEY / json_str FILE KEY: the first `"KEY": value` of a
# pretty-printed JSON file (enough for goldenfs's flat --json outputs).
json_num() { sed -n "s/^ *\"$2\": *\\([0-9][0-9]*\\).*/\\1/p" "$1" | head -n 1; }
json_str() { sed -n "s/^ *\"$2\": *\"\\([^\"]*\\)\".*/\\1/p" "$1" | head -n 1; }

# build NAME TAG BUILDKIT(0|1) DOCKERFILE LOG: a timed build; BUILD_SECONDS.
build() {
    local name=$1 tag=$2 bk=$3 file=$4 log=$5 t0=$EPOCHREALTIME
    local args=(build --network none -t "$tag" -f "$file")
    [ "$bk" = 1 ] && args+=(--progress=plain)
    if ! DOCKER_BUILDKIT=$bk dk "$name" "${args[@]}" "$WORK/ctx" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        fail "docker build of $tag on $name (DOCKER_BUILDKIT=$bk) failed (log above)"
    fi
    BUILD_SECONDS=$(elapsed "$t0")
}

# run_check NAME IMAGE: `docker run` the image; its output must be expected.txt.
run_check() {
    local name=$1 image=$2 out="$WORK/logs/run-$1-${2//[:\/]/-}.txt"
    dk "$name" run --rm --network none "$image" >"$out" 2>&1 ||
        { cat "$out" >&2; fail "docker run $image on $name failed"; }
    if ! diff -u "$WORK/expected.txt" "$out" >"$out.diff"; then
        cat "$out.diff" >&2
        fail "docker run $image on $name: unexpected content (diff: expected, actual)"
    fi
    ok "docker run $image on $name prints the expected content ($(wc -l <"$out") lines)"
}

image_id() { dk "$1" image inspect -f '{{.Id}}' "$2"; }

# check_dockerd_log NAME: dockerd NAME logged no filesystem error (EIO,
# EXDEV, ENOTCONN, ESTALE...); other error lines are shown, not fatal.
check_dockerd_log() {
    local f="$WORK/logs/dockerd-$1.log" errors
    errors=$(grep -E 'level=(error|fatal)' "$f" | grep -v 'module=grpc' || true)
    [ -z "$errors" ] && return 0
    if grep -qiE 'input/output error|cross-device|transport endpoint|stale file handle|no such device|EIO|EXDEV' <<<"$errors"; then
        printf '%s\n' "$errors" | tail -n 20 >&2
        fail "dockerd $1 logged filesystem errors (above)"
    fi
    echo "    note: dockerd $1 logged $(wc -l <<<"$errors") error line(s), none a filesystem error:"
    printf '%s\n' "$errors" | tail -n 5 | cut -c1-300 | sed 's/^/      /'
}

# bk_step_times LOG: `STEP<TAB>INSTRUCTION<TAB>SECONDS` for each RUN/COPY
# step of a BuildKit --progress=plain log, and `export` for the layers.
bk_step_times() {
    awk 'match($0, /^#[0-9]+ \[[0-9]+\/[0-9]+\] (RUN|COPY) /) {
            id[$1] = $2; what[$1] = substr($0, length($1) + length($2) + 3, 48) }
        /^#[0-9]+ DONE / && ($1 in id) { printf "%s\t%s\t%s\n", id[$1], what[$1], $3 }
        /^#[0-9]+ exporting layers [0-9.]+s done/ { printf "export\texporting layers\t%s\n", $4 }' "$1"
}

# ---------------------------------------------------------------- setup

say "Setup: packages, goldenfs, build context"
gfs_apt_install dockerd docker.io
[ -x "$DOCKER" ] || die "no docker client at $DOCKER (docker.io installs /usr/bin/docker; set DOCKER)"
for c in containerd runc; do command -v "$c" >/dev/null || die "$c is missing (a dependency of docker.io)"; done
# The base image needs a static busybox (the dynamic `busybox` package's would need its libc).
if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    echo "    apt-get install busybox-static"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null; } ||
        die "apt-get install busybox-static failed"
fi
HAVE_SETCAP=0
command -v setcap >/dev/null && command -v getcap >/dev/null && HAVE_SETCAP=1
echo "    $("$DOCKER" --version); $(dockerd --version | sed 's/Docker version/dockerd/')"
[ "$HAVE_SETCAP" = 1 ] || echo "    note: setcap/getcap not installed (libcap2-bin): no security.capability step"
gfs_build
echo "    goldenfs: $BIN"

# The base image's root: static busybox and its applets, plus setcap/getcap
# with the libraries they need.
R="$WORK/base-rootfs"
mkdir -p "$R"/bin "$R"/etc "$R"/root "$R"/proc "$R"/sys "$R"/dev "$R"/tmp
chmod 1777 "$R/tmp"
cp /bin/busybox "$R/bin/busybox"
for a in $("$R/bin/busybox" --list); do [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
if [ "$HAVE_SETCAP" = 1 ]; then
    for b in setcap getcap; do
        p=$(command -v "$b")
        rm -f "$R/bin/$b"
        cp -L "$p" "$R/bin/$b"
        for lib in $(ldd "$p" | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }'); do
            mkdir -p "$R$(dirname "$lib")"
            cp -L "$lib" "$R$lib"
        done
    done
fi
tar -C "$R" --numeric-owner -cf "$WORK/base.tar" .

# The build context: the Dockerfile of step 2, the check script the image
# runs, and the output it must print.
mkdir -p "$WORK/ctx"
BLOB_BYTES=33554432 # 32 MiB, written in step 1 of the build, checked by md5
cat >"$WORK/ctx/Dockerfile" <<'EOF'
FROM gfs-base:1
# files, directories, 2,000 small files and a 32 MiB file
RUN mkdir -p /app/data /app/olddir/sub /app/many /app/reborn \
 && echo one >/app/data/a && echo two >/app/data/b \
 && echo keep >/app/olddir/keep && echo nested >/app/olddir/sub/n \
 && echo x >/app/reborn/x && echo y >/app/reborn/y \
 && i=0 && while [ $i -lt 2000 ]; do echo $i >/app/many/f$i; i=$((i + 1)); done \
 && yes goldenfs-blob | head -c 33554432 >/app/data/blob
# delete files of the step above and of the base image (whiteouts in this
# layer), and re-create a deleted directory (an opaque directory)
RUN rm /app/data/b /app/olddir/sub/n /app/many/f1* /bin/vi && rmdir /app/olddir/sub \
 && rm -rf /app/reborn && mkdir /app/reborn && echo z >/app/reborn/z
# rename a directory of an earlier layer
RUN mv /app/olddir /app/newdir
# chmod/chown, and append to a file of an earlier layer (copy-up)
RUN chmod 0750 /app/data/a && chown 1234:5678 /app/data/a && echo more >>/app/data/a
# a hard link and a symlink
RUN ln /app/data/a /app/data/a.hard && ln -s ../data/a /app/newdir/a.sym
EOF
if [ "$HAVE_SETCAP" = 1 ]; then
    cat >>"$WORK/ctx/Dockerfile" <<'EOF'
# a security.capability xattr
RUN cp /bin/busybox /app/captool && setcap cap_net_bind_service+ep /app/captool
EOF
fi
cat >>"$WORK/ctx/Dockerfile" <<'EOF'
COPY check.sh /app/check.sh
CMD ["/bin/sh", "/app/check.sh"]
EOF
cat >"$WORK/ctx/check.sh" <<'EOF'
# Prints what the image holds; docker-e2e.sh compares it with expected.txt.
cd /app
echo "data/a: $(tr '\n' '|' <data/a)"
echo "data/a: mode $(stat -c '%a %u:%g links=%h' data/a)"
if [ "$(stat -c %i data/a)" = "$(stat -c %i data/a.hard)" ]; then
    echo "data/a.hard: same inode as data/a"
else
    echo "data/a.hard: NOT the inode of data/a"
fi
for p in data/b olddir newdir/sub /bin/vi reborn/x; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "$p: present"; else echo "$p: absent"; fi
done
echo "newdir: $(ls newdir | tr '\n' ' ')"
echo "newdir/keep: $(cat newdir/keep)"
echo "newdir/a.sym: $(readlink newdir/a.sym) -> $(tr '\n' '|' <newdir/a.sym)"
echo "reborn: $(ls reborn | tr '\n' ' ')"
echo "many: $(ls many | wc -l) files, sum $(cat many/* | awk '{ s += $1 } END { print s }')"
echo "data/blob: $(stat -c %s data/blob) bytes, md5 $(md5sum <data/blob | cut -d' ' -f1)"
if [ -e captool ]; then echo "captool: $(getcap captool)"; fi
EOF
{
    echo "data/a: one|more|"
    echo "data/a: mode 750 1234:5678 links=2"
    echo "data/a.hard: same inode as data/a"
    echo "data/b: absent"
    echo "olddir: absent"
    echo "newdir/sub: absent"
    echo "/bin/vi: absent"
    echo "reborn/x: absent"
    echo "newdir: a.sym keep "
    echo "newdir/keep: keep"
    echo "newdir/a.sym: ../data/a -> one|more|"
    echo "reborn: z "
    echo "many: $(seq 0 1999 | grep -vc '^1') files, sum $(seq 0 1999 | grep -v '^1' | awk '{ s += $1 } END { print s }')"
    echo "data/blob: $BLOB_BYTES bytes, md5 $( (yes goldenfs-blob || true) | head -c "$BLOB_BYTES" | md5sum | cut -d' ' -f1)"
    if [ "$HAVE_SETCAP" = 1 ]; then echo "captool: captool cap_net_bind_service=ep"; fi
} >"$WORK/expected.txt"
# Cached steps of a rebuild: every instruction but FROM (legacy builder), the
# RUN and COPY ones (BuildKit).
N_STEPS=$(grep -cE '^(RUN|COPY|CMD) ' "$WORK/ctx/Dockerfile")
N_BK_STEPS=$(grep -cE '^(RUN|COPY) ' "$WORK/ctx/Dockerfile")
# A different image, for step 5.
printf 'FROM gfs-app:legacy\nRUN echo "only in %s" >/app/only-here\n' s1 >"$WORK/ctx/Dockerfile.s1"
printf 'FROM gfs-app:legacy\nRUN echo "only in %s" >/app/only-here\n' s2 >"$WORK/ctx/Dockerfile.s2"
printf 'FROM gfs-base:1\nLABEL probe=buildkit\n' >"$WORK/ctx/Dockerfile.probe"

# ---------------------------------------------------------------- 1

step 1 "goldenfs daemon, empty project, session warm, dockerd on it"
gfs_start_daemon
"$BIN" project create docker >/dev/null
mkdir -p "$WORK/warm" "$WORK/s1" "$WORK/s2"
"$BIN" session mount docker warm "$WORK/warm" >/dev/null
ok "session warm mounted on generation 1 (empty)"
dockerd_start warm "$WORK/warm"
driver=$(dk warm info -f '{{.Driver}}')
[ "$driver" = overlay2 ] || fail "docker info reports storage driver '$driver', not overlay2"
ok "docker info: storage driver $driver, backing filesystem $(dk warm info -f '{{range .DriverStatus}}{{if eq (index . 0) "Backing Filesystem"}}{{index . 1}}{{end}}{{end}}')"
step_done

# ---------------------------------------------------------------- 2

step 2 "docker build (legacy builder, then BuildKit) and docker run in warm"
dk warm import "$WORK/base.tar" gfs-base:1 >/dev/null
ok "base image gfs-base:1 imported ($(du -k "$WORK/base.tar" | cut -f1) KiB tar)"
build warm gfs-app:legacy 0 "$WORK/ctx/Dockerfile" "$WORK/logs/build-warm-legacy.log"
T_GFS_LEGACY=$BUILD_SECONDS
ok "legacy build: $N_STEPS steps in $T_GFS_LEGACY s"
run_check warm gfs-app:legacy
BUILDKIT=1
if ! DOCKER_BUILDKIT=1 dk warm build --network none --progress=plain -t gfs-probe:1 \
    -f "$WORK/ctx/Dockerfile.probe" "$WORK/ctx" >"$WORK/logs/buildkit-probe.log" 2>&1; then
    BUILDKIT=0
    BUILDKIT_WHY=$(grep -iE 'error|unknown|not supported|requires' "$WORK/logs/buildkit-probe.log" | tail -n 3 | tr '\n' ' ')
    echo "    NOTE: BuildKit does NOT run here: DOCKER_BUILDKIT=1 docker build of a"
    echo "    Dockerfile without RUN failed: ${BUILDKIT_WHY:-$(tail -n 3 "$WORK/logs/buildkit-probe.log" | tr '\n' ' ')}"
    echo "    Only the legacy builder is tested."
else
    dk warm rmi gfs-probe:1 >/dev/null
    build warm gfs-app:buildkit 1 "$WORK/ctx/Dockerfile" "$WORK/logs/build-warm-buildkit.log"
    T_GFS_BUILDKIT=$BUILD_SECONDS
    ok "BuildKit build: $N_BK_STEPS RUN/COPY steps in $T_GFS_BUILDKIT s"
    run_check warm gfs-app:buildkit
fi
ID_LEGACY=$(image_id warm gfs-app:legacy)
[ "$BUILDKIT" = 1 ] && ID_BUILDKIT=$(image_id warm gfs-app:buildkit)
IMAGES_WARM=$(dk warm images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
ok "images in warm: $IMAGES_WARM"
step_done

# ---------------------------------------------------------------- 3

step 3 "dockerd stopped cleanly, warm unmounted, promoted to generation 2"
dockerd_stop warm || fail "dockerd on warm exited with status $? (log: logs/dockerd-warm.log)"
check_dockerd_log warm
left=$(mounts_under "$WORK/warm")
[ -z "$left" ] || fail "mounts left on the warm view after dockerd stopped: $left"
ok "dockerd exited 0; nothing mounted on the view"
"$BIN" session unmount warm >/dev/null
"$BIN" promote docker warm --json >"$WORK/logs/promote.json"
gen=$(json_num "$WORK/logs/promote.json" generation)
[ "$gen" = 2 ] || fail "promote made generation '$gen', not 2: $(cat "$WORK/logs/promote.json")"
"$BIN" generations docker --json >"$WORK/logs/generations.json"
cur=$(json_num "$WORK/logs/generations.json" current)
[ "$cur" = 2 ] || fail "generations reports current '$cur', not 2"
ok "promoted: generation $gen is current, $(du -sm "$STATE/layers" | cut -f1) MiB of layers in the store"
step_done

# ---------------------------------------------------------------- 4

step 4 "session s1 on generation 2: images listed, cached rebuild, run, version file"
t0=$EPOCHREALTIME
"$BIN" session mount docker s1 "$WORK/s1" >/dev/null
ok "session s1 mounted in $(elapsed "$t0") s"
dockerd_start s1 "$WORK/s1"
images=$(dk s1 images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
[ "$images" = "$IMAGES_WARM" ] || fail "s1 lists images '$images', warm had '$IMAGES_WARM'"
[ "$(image_id s1 gfs-app:legacy)" = "$ID_LEGACY" ] || fail "gfs-app:legacy has another ID in s1"
ok "s1 lists the images of generation 2: $images"
build s1 gfs-app:legacy 0 "$WORK/ctx/Dockerfile" "$WORK/logs/build-s1-legacy.log"
cached=$(grep -c 'Using cache' "$WORK/logs/build-s1-legacy.log" || true)
[ "$cached" = "$N_STEPS" ] || { cat "$WORK/logs/build-s1-legacy.log" >&2; fail "legacy rebuild in s1: $cached of $N_STEPS steps from the cache"; }
[ "$(image_id s1 gfs-app:legacy)" = "$ID_LEGACY" ] || fail "legacy rebuild in s1 made a new image"
ok "legacy rebuild: all $N_STEPS steps from the cache, same image ID, $BUILD_SECONDS s"
if [ "$BUILDKIT" = 1 ]; then
    build s1 gfs-app:buildkit 1 "$WORK/ctx/Dockerfile" "$WORK/logs/build-s1-buildkit.log"
    cached=$(grep -cE '^#[0-9]+ CACHED$' "$WORK/logs/build-s1-buildkit.log" || true)
    [ "$cached" = "$N_BK_STEPS" ] || { cat "$WORK/logs/build-s1-buildkit.log" >&2; fail "BuildKit rebuild in s1: $cached of $N_BK_STEPS steps CACHED"; }
    [ "$(image_id s1 gfs-app:buildkit)" = "$ID_BUILDKIT" ] || fail "BuildKit rebuild in s1 made a new image"
    ok "BuildKit rebuild: all $N_BK_STEPS RUN/COPY steps CACHED, same image ID, $BUILD_SECONDS s"
fi
run_check s1 gfs-app:legacy
[ "$BUILDKIT" = 1 ] && run_check s1 gfs-app:buildkit
dk s1 run --rm --network none -v "$WORK/s1:/golden:ro" gfs-base:1 cat /golden/golden-version.json \
    >"$WORK/logs/version-in-container.json" 2>&1 ||
    { cat "$WORK/logs/version-in-container.json" >&2; fail "docker run with the view bind-mounted failed"; }
vgen=$(json_num "$WORK/logs/version-in-container.json" generation)
vsession=$(json_str "$WORK/logs/version-in-container.json" session_id)
[ "$vgen" = 2 ] && [ "$vsession" = warm ] ||
    { cat "$WORK/logs/version-in-container.json" >&2; fail "the container sees generation '$vgen', session_id '$vsession' (want 2, warm)"; }
ok "a container with the view at /golden reads golden-version.json: generation $vgen, session_id \"$vsession\""
step_done

# ---------------------------------------------------------------- 5

step 5 "session s2 concurrently on generation 2: what s1 builds is invisible in s2"
"$BIN" session mount docker s2 "$WORK/s2" >/dev/null
dockerd_start s2 "$WORK/s2"
build s1 gfs-other:s1 0 "$WORK/ctx/Dockerfile.s1" "$WORK/logs/build-s1-other.log"
build s2 gfs-other:s2 0 "$WORK/ctx/Dockerfile.s2" "$WORK/logs/build-s2-other.log"
[ "$(dk s1 run --rm --network none gfs-other:s1 cat /app/only-here)" = "only in s1" ] || fail "gfs-other:s1 is wrong in s1"
[ "$(dk s2 run --rm --network none gfs-other:s2 cat /app/only-here)" = "only in s2" ] || fail "gfs-other:s2 is wrong in s2"
if dk s2 image inspect gfs-other:s1 >/dev/null 2>&1; then fail "s2 sees the image gfs-other:s1 built in s1"; fi
if dk s1 image inspect gfs-other:s2 >/dev/null 2>&1; then fail "s1 sees the image gfs-other:s2 built in s2"; fi
# The new layer's directory is in one view only (paths relative to the data-root).
for pair in "s1 s2" "s2 s1"; do
    set -- $pair
    up=$(dk "$1" image inspect -f '{{.GraphDriver.Data.UpperDir}}' "gfs-other:$1")
    rel=${up#"$WORK/$1/"}
    [ "$rel" != "$up" ] && [ -d "$WORK/$1/$rel" ] || fail "the layer of gfs-other:$1 is not under $WORK/$1 ($up)"
    [ ! -e "$WORK/$2/$rel" ] || fail "the layer directory $rel of $1 exists in $2's view"
    [ "$(cat "$WORK/$1/$rel/app/only-here")" = "only in $1" ] || fail "layer content of gfs-other:$1 is wrong"
done
run_check s2 gfs-app:legacy
images=$(dk s2 images --format '{{.Repository}}:{{.Tag}}' | grep -v '^gfs-other:s2$' | sort | tr '\n' ' ')
[ "$images" = "$IMAGES_WARM" ] || fail "s2 lists '$images' besides its own image (generation 2 has '$IMAGES_WARM')"
ok "each image and its layer directory is visible in its own session only; s2 still has generation 2's images"
step_done

# ---------------------------------------------------------------- 6

step 6 "teardown; the same builds on a plain directory; build-time ratios"
for s in s1 s2; do
    dockerd_stop "$s" || fail "dockerd on $s exited with status $?"
    check_dockerd_log "$s"
    left=$(mounts_under "$WORK/$s")
    [ -z "$left" ] || fail "mounts left on the $s view after dockerd stopped: $left"
    "$BIN" session unmount "$s" >/dev/null
    "$BIN" session discard "$s" >/dev/null
done
ok "dockerd on s1 and s2 exited 0; s1 and s2 unmounted and discarded"

mkdir -p "$WORK/plain"
dockerd_start plain "$WORK/plain"
dk plain import "$WORK/base.tar" gfs-base:1 >/dev/null
build plain gfs-app:legacy 0 "$WORK/ctx/Dockerfile" "$WORK/logs/build-plain-legacy.log"
T_PLAIN_LEGACY=$BUILD_SECONDS
run_check plain gfs-app:legacy
if [ "$BUILDKIT" = 1 ]; then
    build plain gfs-app:buildkit 1 "$WORK/ctx/Dockerfile" "$WORK/logs/build-plain-buildkit.log"
    T_PLAIN_BUILDKIT=$BUILD_SECONDS
fi
dockerd_stop plain || fail "dockerd on the plain directory exited with status $?"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
printf '    docker build, legacy builder: goldenfs view %6s s, plain directory %6s s, ratio %s\n' \
    "$T_GFS_LEGACY" "$T_PLAIN_LEGACY" "$(ratio "$T_GFS_LEGACY" "$T_PLAIN_LEGACY")"
if [ "$BUILDKIT" = 1 ]; then
    printf '    docker build, BuildKit:       goldenfs view %6s s, plain directory %6s s, ratio %s\n' \
        "$T_GFS_BUILDKIT" "$T_PLAIN_BUILDKIT" "$(ratio "$T_GFS_BUILDKIT" "$T_PLAIN_BUILDKIT")"
    echo "    BuildKit, per step (goldenfs view / plain directory):"
    bk_step_times "$WORK/logs/build-plain-buildkit.log" >"$WORK/logs/bk-plain.tsv"
    bk_step_times "$WORK/logs/build-warm-buildkit.log" |
        awk -F '\t' 'NR == FNR { plain[$1] = $3; next }
            { printf "      %-7s %-48s %6s / %s\n", $1, $2, $3, plain[$1] }' "$WORK/logs/bk-plain.tsv" -
else
    echo "    docker build, BuildKit: not measured (BuildKit does not run here)"
fi

# Tear down everything and check that nothing is left.
kill -TERM "$DAEMON_PID"
status=0
wait "$DAEMON_PID" || status=$?
[ "$status" = 0 ] || fail "the goldenfs daemon exited with status $status on SIGTERM"
DAEMON_PID=""
left=$(awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo)
[ -z "$left" ] || fail "mounts left under $WORK: $left"
left=$(procs_of_work | tr '\n' ' ')
[ -z "$left" ] || fail "processes left: $(for p in $left; do tr '\0' ' ' <"/proc/$p/cmdline"; echo; done)"
# runc removes each container's cgroup; the parents dockerd made are ours to remove.
for d in $(cgroups_of_run); do rmdir "$d" 2>/dev/null || true; done
left=$(cgroups_of_run | tr '\n' ' ')
[ -z "$left" ] || fail "cgroups left (busy): $left"
if [ -n "${DOCKER_E2E_KEEP_LOGS:-}" ]; then
    mkdir -p "$DOCKER_E2E_KEEP_LOGS"
    cp -r "$WORK/logs/." "$LOG" "$DOCKER_E2E_KEEP_LOGS/"
    echo "    logs copied to $DOCKER_E2E_KEEP_LOGS"
fi
rm -rf "$WORK"
[ ! -e "$WORK" ] || fail "$WORK is still there"
# Created by this run's dockerds; still there only if another dockerd uses them.
for d in "${CREATED_HOST_DIRS[@]+"${CREATED_HOST_DIRS[@]}"}"; do
    rmdir "$d" 2>/dev/null || [ ! -e "$d" ] || echo "    note: $d is in use by another dockerd; left in place"
done
ok "no mount, process, cgroup or directory of this run is left"
step_done

say "Summary"
for i in 1 2 3 4 5 6; do printf '    step %s  %6s s  %s\n' "$i" "${STEP_TIMES[$i]}" "${STEP_TITLES[$i]}"; done
printf '    build ratio goldenfs/plain: legacy %s' "$(ratio "$T_GFS_LEGACY" "$T_PLAIN_LEGACY")"
[ "$BUILDKIT" = 1 ] && printf ', BuildKit %s' "$(ratio "$T_GFS_BUILDKIT" "$T_PLAIN_BUILDKIT")"
printf '\n    BuildKit: %s\n' "$([ "$BUILDKIT" = 1 ] && echo ran || echo 'did NOT run here')"
echo "docker-e2e: all checks passed"
