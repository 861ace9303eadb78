#!/usr/bin/env bash
# Runs every check of goldenfs: formatting, clippy, and all unit and
# integration tests (the integration tests start real daemons and real FUSE
# mounts: they need root and /dev/fuse, and FAIL without them).
#
# Every step runs even if an earlier one failed; the script exits non-zero if
# any step failed. Extra suites (e.g. pjdfstest) are added as executable
# scripts in scripts/test.d/ (run in name order, from the repository root,
# with GOLDENFS_BIN set to the release binary) or as another `step` below.
#
# Environment: TEST_THREADS (default 4) for `cargo test -- --test-threads`.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

TEST_THREADS=${TEST_THREADS:-4}
failed=()
passed=()

step() { # step NAME COMMAND...
    local name=$1; shift
    printf '\n\033[1m==> %s\033[0m\n    $ %s\n' "$name" "$*"
    if "$@"; then
        passed+=("$name")
    else
        printf '\033[31m==> FAILED: %s (exit %d)\033[0m\n' "$name" "$?"
        failed+=("$name")
    fi
}

if [ "$(id -u)" -ne 0 ] || [ ! -c /dev/fuse ]; then
    echo "test.sh: note: the integration tests need root and /dev/fuse; they will fail here" >&2
fi

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --all-targets -- -D warnings
TEST_LOG=$(mktemp /var/tmp/goldenfs-test-log.XXXXXX)
trap 'rm -f "$TEST_LOG"' EXIT
cargo_test() { cargo test --no-fail-fast -- --test-threads="$TEST_THREADS" 2>&1 | tee "$TEST_LOG"; }
step "cargo test (unit, integration with real mounts, doc)" cargo_test

if [ -d scripts/test.d ]; then
    step "cargo build --release (for scripts/test.d)" cargo build --release
    export GOLDENFS_BIN="$PWD/target/release/goldenfs"
    for t in scripts/test.d/*; do
        [ -x "$t" ] && [ -f "$t" ] || continue
        step "$t" "$t"
    done
fi

# Totals over every `test result:` line of cargo test.
read -r t_passed t_failed < <(awk '/^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i) ~ /^passed;?$/) p += $(i - 1)
            if ($(i) ~ /^failed;?$/) f += $(i - 1)
        }
    } END { print p + 0, f + 0 }' "$TEST_LOG")

echo
echo "==> Summary"
for s in "${passed[@]}"; do echo "    passed: $s"; done
for s in "${failed[@]+"${failed[@]}"}"; do echo "    FAILED: $s"; done
if [ "${#failed[@]}" -ne 0 ]; then
    echo "test.sh: ${#failed[@]} step(s) failed" >&2
    # A step can fail without a failing test (fmt, clippy, a build error).
    [ "$t_failed" -gt 0 ] || t_failed=1
    echo "cargo-tests: $t_passed passed, $t_failed failed"
    exit 1
fi
echo "test.sh: all steps passed"
echo "cargo-tests: $t_passed passed, $t_failed failed"
