# Shared by docker-e2e.sh and docker-volume-e2e.sh: private dockerds on this
# host, the Docker scenario's build context and checks (builds, runs, cached
# rebuilds, isolation), and a cleanup that leaves no dockerd, container,
# mount or cgroup of the run behind.
#
# Usage (after lib.sh):
#   source "$(dirname "${BASH_SOURCE[0]}")/docker-lib.sh"
#   docker_init NAME       # gfs_init NAME; RUN_DIR, CGROUP_PARENT, DOCKER; cleanup hook
#   docker_setup           # packages, goldenfs ($BIN), base.tar, ctx/, expected.txt
#   dockerd_start NAME DATA_ROOT; dk NAME ARGS...; dockerd_stop NAME
#   scenario_builds NAME; scenario_cached NAME; scenario_isolation ...
#   docker_teardown_checks # after the goldenfs daemon stopped
# A dockerd NAME is reached at $RUN_DIR/NAME.sock and logs to
# $WORK/logs/dockerd-NAME.log, wherever it runs.

# docker_init NAME: gfs_init NAME, then the run's directories and variables
# and the cleanup hook.
docker_init() {
    local d
    gfs_init "$1"
    RUN_DIR="$WORK/run"                 # dockerd exec-roots, sockets, pidfiles, keys
    CGROUP_PARENT="/$(basename "$WORK")" # every container cgroup of this run lives below it
    export DOCKER_CONFIG="$WORK/docker-config"
    unset DOCKER_HOST DOCKER_CONTEXT DOCKER_TLS_VERIFY DOCKER_CERT_PATH
    DOCKER=${DOCKER:-/usr/bin/docker}
    declare -gA DOCKERD_PID=()
    mkdir -p "$RUN_DIR" "$DOCKER_CONFIG" "$WORK/logs"
    # Host directories dockerd and containerd create whatever their roots are
    # (plugin discovery, shim sockets, the default root of runc, which BuildKit
    # leaves behind): removed at cleanup if this run made them.
    HOST_DIRS=(/run/docker/plugins /run/docker /run/containerd/s /run/containerd /run/runc)
    CREATED_HOST_DIRS=()
    for d in "${HOST_DIRS[@]}"; do [ -e "$d" ] || CREATED_HOST_DIRS+=("$d"); done
    gfs_on_cleanup docker_cleanup
}

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

# dockerd_stop_checked NAME DIR: dockerd NAME stopped; it must exit 0, log
# no filesystem error and leave nothing mounted under DIR (its data-root).
dockerd_stop_checked() {
    local name=$1 dir=$2 status=0 left
    dockerd_stop "$name" || status=$?
    [ "$status" = 0 ] || fail "dockerd $name exited with status $status (log: logs/dockerd-$name.log)"
    check_dockerd_log "$name"
    left=$(mounts_under "$dir")
    [ -z "$left" ] || fail "mounts left under $dir after dockerd $name stopped: $left"
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

# docker_setup: docker.io and busybox-static installed, goldenfs built ($BIN),
# the base image tar ($WORK/base.tar), the build context ($WORK/ctx) and the
# output its image must print ($WORK/expected.txt).
docker_setup() {
    local R p b a c lib
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
}

# scenario_builds NAME: in dockerd NAME, the base image imported, the
# Dockerfile built with the legacy builder, then with BuildKit if it runs
# here, and each image run. Sets BUILDKIT (1 if it ran), T_GFS_LEGACY,
# T_GFS_BUILDKIT, ID_LEGACY, ID_BUILDKIT and IMAGES_WARM (the image list).
scenario_builds() {
    local name=$1 why
    dk "$name" import "$WORK/base.tar" gfs-base:1 >/dev/null
    ok "base image gfs-base:1 imported ($(du -k "$WORK/base.tar" | cut -f1) KiB tar)"
    build "$name" gfs-app:legacy 0 "$WORK/ctx/Dockerfile" "$WORK/logs/build-$name-legacy.log"
    T_GFS_LEGACY=$BUILD_SECONDS
    ok "legacy build: $N_STEPS steps in $T_GFS_LEGACY s"
    run_check "$name" gfs-app:legacy
    BUILDKIT=1
    if ! DOCKER_BUILDKIT=1 dk "$name" build --network none --progress=plain -t gfs-probe:1 \
        -f "$WORK/ctx/Dockerfile.probe" "$WORK/ctx" >"$WORK/logs/buildkit-probe.log" 2>&1; then
        BUILDKIT=0
        why=$(grep -iE 'error|unknown|not supported|requires' "$WORK/logs/buildkit-probe.log" | tail -n 3 | tr '\n' ' ')
        echo "    NOTE: BuildKit does NOT run here: DOCKER_BUILDKIT=1 docker build of a"
        echo "    Dockerfile without RUN failed: ${why:-$(tail -n 3 "$WORK/logs/buildkit-probe.log" | tr '\n' ' ')}"
        echo "    Only the legacy builder is tested."
    else
        dk "$name" rmi gfs-probe:1 >/dev/null
        build "$name" gfs-app:buildkit 1 "$WORK/ctx/Dockerfile" "$WORK/logs/build-$name-buildkit.log"
        T_GFS_BUILDKIT=$BUILD_SECONDS
        ok "BuildKit build: $N_BK_STEPS RUN/COPY steps in $T_GFS_BUILDKIT s"
        run_check "$name" gfs-app:buildkit
    fi
    ID_LEGACY=$(image_id "$name" gfs-app:legacy)
    [ "$BUILDKIT" = 1 ] && ID_BUILDKIT=$(image_id "$name" gfs-app:buildkit)
    IMAGES_WARM=$(dk "$name" images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
    ok "images in $name: $IMAGES_WARM"
}

# cached_rebuild NAME legacy|buildkit BUILDKIT(0|1) PATTERN N ID WHAT: the
# Dockerfile rebuilt in dockerd NAME: N lines of the log match PATTERN (one
# per cached step) and the image keeps ID.
cached_rebuild() {
    local name=$1 kind=$2 bk=$3 pattern=$4 want=$5 id=$6 what=$7 cached
    local log="$WORK/logs/build-$name-$kind.log"
    build "$name" "gfs-app:$kind" "$bk" "$WORK/ctx/Dockerfile" "$log"
    cached=$(grep -cE "$pattern" "$log" || true)
    [ "$cached" = "$want" ] || { cat "$log" >&2; fail "$kind rebuild in $name: $cached of $want steps from the cache"; }
    [ "$(image_id "$name" "gfs-app:$kind")" = "$id" ] || fail "$kind rebuild in $name made a new image"
    ok "$kind rebuild: $what, same image ID, $BUILD_SECONDS s"
}

# scenario_cached NAME: dockerd NAME (on a later generation) lists the
# images scenario_builds made, with the same IDs; rebuilding takes every
# step from the cache and makes the same images; they run.
scenario_cached() {
    local name=$1 images
    images=$(dk "$name" images --format '{{.Repository}}:{{.Tag}}' | sort | tr '\n' ' ')
    [ "$images" = "$IMAGES_WARM" ] || fail "$name lists images '$images', the warm-up session had '$IMAGES_WARM'"
    [ "$(image_id "$name" gfs-app:legacy)" = "$ID_LEGACY" ] || fail "gfs-app:legacy has another ID in $name"
    ok "$name lists the images of the promoted generation: $images"
    cached_rebuild "$name" legacy 0 'Using cache' "$N_STEPS" "$ID_LEGACY" "all $N_STEPS steps from the cache"
    [ "$BUILDKIT" = 1 ] && cached_rebuild "$name" buildkit 1 '^#[0-9]+ CACHED$' "$N_BK_STEPS" "$ID_BUILDKIT" \
        "all $N_BK_STEPS RUN/COPY steps CACHED"
    run_check "$name" gfs-app:legacy
    [ "$BUILDKIT" = 1 ] && run_check "$name" gfs-app:buildkit
    return 0
}

# layer_only_in X ROOT_X VIEW_X Y VIEW_Y: the layer directory of the image
# gfs-other:X is in X's view, with the right content, and not in Y's.
layer_only_in() {
    local x=$1 root=$2 view=$3 y=$4 other=$5 up rel
    up=$(dk "$x" image inspect -f '{{.GraphDriver.Data.UpperDir}}' "gfs-other:$x")
    rel=${up#"$root/"}
    [ "$rel" != "$up" ] && [ -d "$view/$rel" ] || fail "the layer of gfs-other:$x is not under $view ($up)"
    [ ! -e "$other/$rel" ] || fail "the layer directory $rel of $x exists in $y's view"
    [ "$(cat "$view/$rel/app/only-here")" = "only in $x" ] || fail "layer content of gfs-other:$x is wrong"
}

# scenario_isolation A ROOT_A VIEW_A B ROOT_B VIEW_B: dockerds A and B run
# concurrently on sessions of the same generation; ROOT_x is the data-root
# as dockerd x names it, VIEW_x the session view on this host. An image
# built in each is unknown to the other dockerd, and its layer directory
# absent from the other view; B still has the promoted generation's images.
scenario_isolation() {
    local a=$1 root_a=$2 view_a=$3 b=$4 root_b=$5 view_b=$6 images
    build "$a" "gfs-other:$a" 0 "$WORK/ctx/Dockerfile.$a" "$WORK/logs/build-$a-other.log"
    build "$b" "gfs-other:$b" 0 "$WORK/ctx/Dockerfile.$b" "$WORK/logs/build-$b-other.log"
    [ "$(dk "$a" run --rm --network none "gfs-other:$a" cat /app/only-here)" = "only in $a" ] || fail "gfs-other:$a is wrong in $a"
    [ "$(dk "$b" run --rm --network none "gfs-other:$b" cat /app/only-here)" = "only in $b" ] || fail "gfs-other:$b is wrong in $b"
    if dk "$b" image inspect "gfs-other:$a" >/dev/null 2>&1; then fail "$b sees the image gfs-other:$a built in $a"; fi
    if dk "$a" image inspect "gfs-other:$b" >/dev/null 2>&1; then fail "$a sees the image gfs-other:$b built in $b"; fi
    # The new layer's directory is in one view only (paths relative to the data-root).
    layer_only_in "$a" "$root_a" "$view_a" "$b" "$view_b"
    layer_only_in "$b" "$root_b" "$view_b" "$a" "$view_a"
    run_check "$b" gfs-app:legacy
    images=$(dk "$b" images --format '{{.Repository}}:{{.Tag}}' | grep -v "^gfs-other:$b\$" | sort | tr '\n' ' ')
    [ "$images" = "$IMAGES_WARM" ] || fail "$b lists '$images' besides its own image (the promoted generation has '$IMAGES_WARM')"
    ok "each image and its layer directory is visible in its own session only; $b still has the promoted generation's images"
}

# docker_teardown_checks [PATH...]: once every dockerd has stopped, the
# goldenfs daemon is stopped (SIGTERM, must exit 0) and nothing of the run
# may be left: no mount, process, cgroup, nor any of the PATHs; the logs are
# kept if DOCKER_E2E_KEEP_LOGS is set; $WORK and the host directories this
# run created are removed.
docker_teardown_checks() {
    local left d status=0
    kill -TERM "$DAEMON_PID"
    wait "$DAEMON_PID" || status=$?
    [ "$status" = 0 ] || fail "the goldenfs daemon exited with status $status on SIGTERM"
    DAEMON_PID=""
    for d in "$@"; do [ ! -e "$d" ] || fail "$d is still there after the goldenfs daemon stopped"; done
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
        cp -rL "$WORK/logs/." "$LOG" "$DOCKER_E2E_KEEP_LOGS/"
        echo "    logs copied to $DOCKER_E2E_KEEP_LOGS"
    fi
    rm -rf "$WORK"
    [ ! -e "$WORK" ] || fail "$WORK is still there"
    # Created by this run's dockerds; still there only if another dockerd uses them.
    for d in "${CREATED_HOST_DIRS[@]+"${CREATED_HOST_DIRS[@]}"}"; do
        rmdir "$d" 2>/dev/null || [ ! -e "$d" ] || echo "    note: $d is in use by another dockerd; left in place"
    done
    ok "no mount, process, cgroup or directory of this run is left"
}
