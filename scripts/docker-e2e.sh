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
source "$(dirname "${BASH_SOURCE[0]}")/docker-lib.sh"
export LC_ALL=C

gfs_no_options "$@"

docker_init docker-e2e

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
docker_setup

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
scenario_builds warm
step_done

# ---------------------------------------------------------------- 3

step 3 "dockerd stopped cleanly, warm unmounted, promoted to generation 2"
dockerd_stop_checked warm "$WORK/warm"
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
scenario_cached s1
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
scenario_isolation s1 "$WORK/s1" "$WORK/s1" s2 "$WORK/s2" "$WORK/s2"
step_done

# ---------------------------------------------------------------- 6

step 6 "teardown; the same builds on a plain directory; build-time ratios"
for s in s1 s2; do
    dockerd_stop_checked "$s" "$WORK/$s"
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

docker_teardown_checks
step_done

say "Summary"
for i in 1 2 3 4 5 6; do printf '    step %s  %6s s  %s\n' "$i" "${STEP_TIMES[$i]}" "${STEP_TITLES[$i]}"; done
printf '    build ratio goldenfs/plain: legacy %s' "$(ratio "$T_GFS_LEGACY" "$T_PLAIN_LEGACY")"
[ "$BUILDKIT" = 1 ] && printf ', BuildKit %s' "$(ratio "$T_GFS_BUILDKIT" "$T_PLAIN_BUILDKIT")"
printf '\n    BuildKit: %s\n' "$([ "$BUILDKIT" = 1 ] && echo ran || echo 'did NOT run here')"
echo "docker-e2e: all checks passed"
