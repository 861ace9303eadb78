#!/usr/bin/env bash
# Docker end to end through the volume plugin (issue 7): the scenario of
# docker-e2e.sh again, driven only with `docker volume` and `docker run
# --mount type=volume,...,volume-driver=goldenfs`. An outer dockerd on this
# host (plain data-root) uses the goldenfs volume plugin, served by the
# goldenfs daemon (`--docker-plugin`, default socket, found by dockerd in
# /run/docker/plugins); each session is a container running an inner dockerd
# whose /var/lib/docker is a goldenfs volume (Docker-in-Docker).
#
#  1. goldenfs daemon with the plugin, project created empty, outer dockerd,
#     the session image (an empty root; /usr is bind-mounted from the host);
#     `docker volume create -d goldenfs -o project=docker -o promote=true
#     warm` makes session warm.
#  2. Session container warm (inner dockerd on the volume, overlay2 on the
#     view): the builds and runs of docker-e2e.sh step 2 (whiteouts, opaque
#     and renamed directories, copy-up, links, 32 MiB file, setcap; legacy
#     builder and BuildKit).
#  3. Reference counting and promotion on the last unmount: a second
#     container mounts warm; the session container stops (inner dockerd
#     exits 0) and the volume stays mounted for the other one; once that one
#     is gone too, the volume is unmounted and promoted: `goldenfs
#     generations` shows generation 2 made from session warm.
#  4. Volume s1 (no promote) on generation 2: its inner dockerd lists the
#     images (same IDs), rebuilds take every step from the cache, the images
#     run, and /var/lib/docker/golden-version.json in the container says
#     generation 2, session warm.
#  5. Volume s2 concurrently: what s1's dockerd builds is invisible to s2's
#     (to dockerd and as files in the view) and the other way round.
#  6. The other ways out: s2's container exits and `goldenfs promote docker
#     s2` makes generation 3 (a container on a new volume s3 sees s2's layer
#     and not s1's); `docker volume rm` discards s1 (its session is gone from
#     `goldenfs session list`) and forgets the others.
#  7. Teardown checked: outer dockerd exits 0, goldenfs daemon exits 0; no
#     mount, process, cgroup, plugin socket or directory of the run left.
#
# Every step prints its wall time; any failed check exits non-zero. Cleanup
# (also on failure and Ctrl-C) stops every dockerd (the outer one stops the
# session containers), kills what is left in the run's cgroups, unmounts
# everything under the scratch dir, stops the goldenfs daemon and removes the
# plugin socket and the host directories the run created.
#
# Usage: scripts/docker-volume-e2e.sh
# Needs root and /dev/fuse, and no other goldenfs plugin on
# /run/docker/plugins/goldenfs.sock; installs docker.io and busybox-static
# if missing. Environment: GOLDENFS_BIN (skip the cargo build); DOCKER (the
# client, default /usr/bin/docker, docker.io's 20.10 client);
# DOCKER_E2E_KEEP_LOGS=DIR copies the logs to DIR before the teardown.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$(dirname "${BASH_SOURCE[0]}")/docker-lib.sh"
export LC_ALL=C

gfs_no_options "$@"

PLUGIN_SOCKET=/run/docker/plugins/goldenfs.sock
[ ! -e "$PLUGIN_SOCKET" ] ||
    die "$PLUGIN_SOCKET exists: another goldenfs daemon serves the Docker plugin (stop it; remove the file if it is stale)"
docker_init docker-volume-e2e
VOLUME_DIR="$WORK/volumes" # --docker-volume-dir: the plugin mounts volume NAME at VOLUME_DIR/NAME

# Cleanup hook, after docker_cleanup (so after the outer dockerd has stopped
# and unmounted its volumes through the plugin): the goldenfs daemon, then
# the plugin socket and host directories a killed daemon would leave.
volume_cleanup() {
    local d
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID" 2>/dev/null
        for _ in $(seq 1 150); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$DAEMON_PID" 2>/dev/null
        wait "$DAEMON_PID" 2>/dev/null
    fi
    DAEMON_PID=""
    rm -f "$PLUGIN_SOCKET"
    for d in "${CREATED_HOST_DIRS[@]+"${CREATED_HOST_DIRS[@]}"}"; do rmdir "$d" 2>/dev/null; done
    return 0
}
gfs_on_cleanup volume_cleanup

# ---------------------------------------------------------------- helpers

# The session containers: Docker's default capabilities plus SYS_ADMIN
# (overlayfs, mounts) and NET_ADMIN (runc's network setup), no seccomp
# (keyctl) or AppArmor profile, the host's cgroup namespace and cgroup
# tree, writable (the inner dockerd makes its containers' cgroups there,
# below its --cgroup-parent; tried on cgroup v1), the host's /usr
# read-only (the image is an empty root: dockerd, containerd, runc and a
# shell come from docker.io on the host), and tini as PID 1 (`--init`:
# reaps, forwards SIGTERM, exits with dockerd's status). `--privileged` is
# not needed (and does not work here).
SESSION_ARGS=(--init --network none --cgroupns host
    --cap-add SYS_ADMIN --cap-add NET_ADMIN
    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
    -v /sys/fs/cgroup:/sys/fs/cgroup:rw -v /usr:/usr:ro)

# vol_mount NAME: the --mount option of goldenfs volume NAME at
# /var/lib/docker. Without volume-nocopy on purpose: the image has
# /var/lib/docker, so dockerd mounts and unmounts the volume once when it
# creates the container (to copy the image's directory into it), and a
# promote=true volume must not be promoted by that unchanged unmount.
vol_mount() { printf 'type=volume,source=%s,target=/var/lib/docker,volume-driver=goldenfs' "$1"; }

# vol_status VOLUME KEY: a field of the plugin's Status of the volume.
vol_status() { dk outer volume inspect -f "{{index .Status \"$2\"}}" "$1"; }

# is_mounted PATH: PATH is a mount point.
is_mounted() { awk -v p="$1" '$5 == p { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# session_start NAME: session container NAME on volume NAME, its inner
# dockerd listening on $RUN_DIR/NAME/docker.sock (so `dk NAME` reaches it)
# and logging to $RUN_DIR/NAME/dockerd.log; waits until it answers.
session_start() {
    local name=$1 i
    mkdir -p "$RUN_DIR/$name"
    ln -sfn "$name/docker.sock" "$RUN_DIR/$name.sock"
    ln -sfn "$RUN_DIR/$name/dockerd.log" "$WORK/logs/dockerd-$name.log"
    dk outer run -d --name "$name" "${SESSION_ARGS[@]}" \
        --mount "$(vol_mount "$name")" -v "$RUN_DIR/$name:/run/gfs" \
        gfs-session:1 sh -c "exec dockerd -H unix:///run/gfs/docker.sock \
            --iptables=false --ip-forward=false --ip-masq=false --bridge=none \
            --storage-driver overlay2 --cgroup-parent $CGROUP_PARENT/inner-$name \
            --shutdown-timeout 5 >/run/gfs/dockerd.log 2>&1" >/dev/null ||
        fail "docker run of session container $name failed"
    for i in $(seq 1 600); do
        if dk "$name" version >/dev/null 2>&1; then return 0; fi
        [ "$(dk outer inspect -f '{{.State.Running}}' "$name")" = true ] || {
            dk outer logs "$name" 2>&1 | tail -n 5 >&2
            tail -n 20 "$RUN_DIR/$name/dockerd.log" >&2 2>/dev/null
            fail "session container $name exited during start-up"
        }
        sleep 0.1
    done
    fail "the inner dockerd of $name does not answer after 60 s"
}

# session_stop NAME: stops session container NAME (SIGTERM to the inner
# dockerd through tini); it must exit 0 within 30 s; removes it.
session_stop() {
    local name=$1 code
    dk outer stop -t 30 "$name" >/dev/null
    code=$(dk outer inspect -f '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || fail "the inner dockerd of $name exited with status $code (log: logs/dockerd-$name.log)"
    check_dockerd_log "$name"
    dk outer rm "$name" >/dev/null
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.1 s.
wait_until() {
    local secs=$1 what=$2 i
    shift 2
    for i in $(seq 1 $((secs * 10))); do
        "$@" && return 0
        sleep 0.1
    done
    fail "after $secs s: $what"
}

# session_listed NAME: `goldenfs session list` lists session NAME.
session_listed() {
    local list
    list=$("$BIN" session list --json | tr -d ' \n')
    [[ $list == *"\"session\":\"$1\""* ]]
}

current_generation() {
    "$BIN" generations docker --json >"$WORK/logs/generations.json"
    json_num "$WORK/logs/generations.json" current
}

# generation_session N: session_id of generation N (from `generations --json`).
generation_session() {
    "$BIN" generations docker --json | tr -d ' \n' | grep -o "{[^{}]*\"generation\":$1[,}][^{}]*}" |
        sed -n 's/.*"session_id":"\([^"]*\)".*/\1/p'
}

# version_in NAME: golden-version.json read in container NAME, as "GEN SESSION".
version_in() {
    local f="$WORK/logs/version-in-$1.json"
    dk outer exec "$1" cat /var/lib/docker/golden-version.json >"$f" ||
        fail "cannot read /var/lib/docker/golden-version.json in $1"
    echo "$(json_num "$f" generation) $(json_str "$f" session_id)"
}

# ---------------------------------------------------------------- setup

say "Setup: packages, goldenfs, build context, session image"
docker_setup
"$BIN" daemon --help | grep -q -- --docker-plugin || die "$BIN has no 'daemon --docker-plugin' (the Docker volume plugin)"
# The session image: an empty root whose /bin, /lib, /lib64 lead to the
# host's /usr, bind-mounted read-only (SESSION_ARGS). /sbin is a directory:
# Docker bind-mounts tini at /sbin/docker-init.
R="$WORK/session-rootfs"
mkdir -p "$R"/usr "$R"/sbin "$R"/etc "$R"/root "$R"/proc "$R"/sys "$R"/dev "$R"/tmp "$R"/run "$R"/var/lib/docker
chmod 1777 "$R/tmp"
for d in bin lib lib64; do
    if [ -L "/$d" ]; then
        ln -s "$(readlink "/$d")" "$R/$d"
    elif [ -d "/$d" ]; then
        mkdir -p "$R/$d"
        SESSION_ARGS+=(-v "/$d:/$d:ro")
    fi
done
echo 'root:x:0:0:root:/root:/bin/sh' >"$R/etc/passwd"
echo 'root:x:0:' >"$R/etc/group"
tar -C "$R" --numeric-owner -cf "$WORK/session.tar" .

# ---------------------------------------------------------------- 1

step 1 "goldenfs daemon with the Docker plugin, outer dockerd, volume warm (promote=true)"
gfs_start_daemon --docker-plugin --docker-volume-dir "$VOLUME_DIR"
[ -S "$PLUGIN_SOCKET" ] || fail "the daemon runs with --docker-plugin but $PLUGIN_SOCKET is not a socket"
ok "plugin socket $PLUGIN_SOCKET"
"$BIN" project create docker >/dev/null
mkdir -p "$WORK/outer-root"
dockerd_start outer "$WORK/outer-root"
dk outer import "$WORK/session.tar" gfs-session:1 >/dev/null
dk outer volume create -d goldenfs -o project=docker -o promote=true warm >/dev/null ||
    fail "docker volume create -d goldenfs -o project=docker -o promote=true warm failed"
[ "$(dk outer volume inspect -f '{{.Driver}}' warm)" = goldenfs ] || fail "volume warm does not have the goldenfs driver"
session_listed warm || fail "goldenfs session list does not list warm"
ok "volume warm created (driver goldenfs); session warm listed, state $(vol_status warm state)"
step_done

# ---------------------------------------------------------------- 2

step 2 "session container warm: inner dockerd on the volume, builds and runs"
session_start warm
WARM_VIEW=$(dk outer volume inspect -f '{{.Mountpoint}}' warm)
[ "$WARM_VIEW" = "$VOLUME_DIR/warm" ] && is_mounted "$WARM_VIEW" ||
    fail "volume warm: mountpoint '$WARM_VIEW' is not a mount (expected $VOLUME_DIR/warm)"
driver=$(dk warm info -f '{{.Driver}}')
backing=$(dk warm info -f '{{range .DriverStatus}}{{if eq (index . 0) "Backing Filesystem"}}{{index . 1}}{{end}}{{end}}')
[ "$driver" = overlay2 ] && [ "$backing" = fuse ] ||
    fail "the inner dockerd of warm reports storage driver '$driver' on '$backing', not overlay2 on fuse"
ok "volume mounted at $WARM_VIEW; inner dockerd: storage driver $driver, backing filesystem $backing"
scenario_builds warm
step_done

# ---------------------------------------------------------------- 3

step 3 "reference counting; inner dockerd stopped; promotion on the last unmount"
dk outer run -d --name warm-peer "${SESSION_ARGS[@]}" --mount "$(vol_mount warm)" gfs-session:1 sleep 600 >/dev/null ||
    fail "a second container mounting volume warm failed to start"
[ "$(vol_status warm mounts)" = 2 ] || fail "volume warm: $(vol_status warm mounts) users, not 2"
ok "a second container mounts warm too (2 users)"
session_stop warm
is_mounted "$WARM_VIEW" || fail "volume warm was unmounted while warm-peer still uses it"
[ "$(vol_status warm mounts)" = 1 ] || fail "volume warm: $(vol_status warm mounts) users after warm exited, not 1"
dk outer exec warm-peer test -d /var/lib/docker/image/overlay2/imagedb || fail "warm-peer no longer sees the image store"
[ "$(current_generation)" = 1 ] || fail "promoted while warm-peer still uses the volume"
ok "inner dockerd exited 0; volume still mounted for warm-peer (1 user), not promoted yet"
dk outer rm -f warm-peer >/dev/null
promoted() { [ "$(current_generation)" = 2 ]; }
wait_until 30 "project docker is not at generation 2 after the last user of warm left" promoted
! is_mounted "$WARM_VIEW" || fail "volume warm is still mounted after its last user left"
sid=$(generation_session 2)
[ "$sid" = warm ] || fail "generation 2 was made from session '$sid', not warm"
[ "$(vol_status warm state)" = promoted ] || fail "volume warm: state '$(vol_status warm state)', not promoted"
ok "last unmount: view unmounted, promoted to generation 2 (session_id warm); volume state promoted"
step_done

# ---------------------------------------------------------------- 4

step 4 "volume s1 on generation 2: images listed, cached rebuild, run, version file"
dk outer volume create -d goldenfs -o project=docker s1 >/dev/null
session_start s1
scenario_cached s1
read -r vgen vsession <<<"$(version_in s1)"
[ "$vgen" = 2 ] && [ "$vsession" = warm ] ||
    fail "/var/lib/docker/golden-version.json in s1: generation '$vgen', session_id '$vsession' (want 2, warm)"
ok "/var/lib/docker/golden-version.json in the container: generation $vgen, session_id \"$vsession\""
step_done

# ---------------------------------------------------------------- 5

step 5 "volume s2 concurrently on generation 2: what s1 builds is invisible in s2"
dk outer volume create -d goldenfs -o project=docker s2 >/dev/null
session_start s2
scenario_isolation s1 /var/lib/docker "$VOLUME_DIR/s1" s2 /var/lib/docker "$VOLUME_DIR/s2"
step_done

# ---------------------------------------------------------------- 6

step 6 "goldenfs promote after the container exits; docker volume rm discards"
S2_LAYER=$(dk s2 image inspect -f '{{.GraphDriver.Data.UpperDir}}' gfs-other:s2)
S1_LAYER=$(dk s1 image inspect -f '{{.GraphDriver.Data.UpperDir}}' gfs-other:s1)
session_stop s2
unmounted() { ! is_mounted "$VOLUME_DIR/s2"; }
wait_until 30 "volume s2 is still mounted after its container exited" unmounted
[ "$(current_generation)" = 2 ] || fail "volume s2 (promote=false) was promoted when its container exited"
"$BIN" promote docker s2 --json >"$WORK/logs/promote-s2.json" || fail "goldenfs promote docker s2 failed"
[ "$(json_num "$WORK/logs/promote-s2.json" generation)" = 3 ] || fail "goldenfs promote docker s2 did not make generation 3"
[ "$(generation_session 3)" = s2 ] || fail "generation 3 was not made from session s2"
[ "$(vol_status s2 state)" = promoted ] || fail "volume s2: state '$(vol_status s2 state)' after goldenfs promote, not promoted"
dk outer volume create -d goldenfs -o project=docker s3 >/dev/null
dk outer run --rm "${SESSION_ARGS[@]}" --mount "$(vol_mount s3)" gfs-session:1 \
    sh -c "cat /var/lib/docker/golden-version.json; test -d $S2_LAYER && echo has-s2; test -e $S1_LAYER || echo no-s1" \
    >"$WORK/logs/s3.txt" || fail "a container on volume s3 failed"
grep -q '"generation": 3' "$WORK/logs/s3.txt" && grep -qx has-s2 "$WORK/logs/s3.txt" && grep -qx no-s1 "$WORK/logs/s3.txt" ||
    { cat "$WORK/logs/s3.txt" >&2; fail "volume s3 does not show generation 3 with s2's layer and without s1's"; }
ok "s2's container exited, its volume unmounted, not promoted; goldenfs promote made generation 3 (session_id s2), which a new volume s3 sees"
session_stop s1
[ "$(vol_status s1 state)" = unmounted ] || fail "volume s1: state '$(vol_status s1 state)' after its container exited, not unmounted"
session_listed s1 || fail "session s1 vanished before docker volume rm"
dk outer volume rm s1 >/dev/null || fail "docker volume rm s1 failed"
! session_listed s1 || fail "session s1 is still listed after docker volume rm s1"
[ "$(current_generation)" = 3 ] || fail "docker volume rm s1 changed the current generation"
for v in warm s2 s3; do dk outer volume rm "$v" >/dev/null || fail "docker volume rm $v failed"; done
left=$(dk outer volume ls -q | tr '\n' ' ')
[ -z "$left" ] || fail "volumes left after docker volume rm: $left"
left=$(for v in warm s1 s2 s3; do session_listed "$v" && echo "$v"; done | tr '\n' ' ' || true)
[ -z "$left" ] || fail "sessions left after docker volume rm: $left"
ok "docker volume rm s1 discarded session s1; every volume removed, no session left"
step_done

# ---------------------------------------------------------------- 7

step 7 "teardown: outer dockerd, goldenfs daemon; nothing left"
dockerd_stop_checked outer "$WORK"
ok "outer dockerd exited 0"
docker_teardown_checks "$PLUGIN_SOCKET"
step_done

say "Summary"
for i in 1 2 3 4 5 6 7; do printf '    step %s  %6s s  %s\n' "$i" "${STEP_TIMES[$i]}" "${STEP_TITLES[$i]}"; done
printf '    BuildKit: %s\n' "$([ "$BUILDKIT" = 1 ] && echo ran || echo 'did NOT run here')"
echo "docker-volume-e2e: all checks passed"
