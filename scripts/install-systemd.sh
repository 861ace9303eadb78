#!/usr/bin/env bash
# Installs goldenfs as a systemd service: the release binary in
# /usr/local/bin, contrib/goldenfs.service in /etc/systemd/system, then
# enables and starts it (store in /var/lib/goldenfs, socket
# /run/goldenfs/goldenfs.sock). Build first: `cargo build --release`.
# After an upgrade, `systemctl restart goldenfs` runs the new binary (it
# unmounts every view; mount the sessions again afterwards).
#
# Needs root. Usage: sudo ./scripts/install-systemd.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { printf 'install-systemd.sh: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -x target/release/goldenfs ] || die "target/release/goldenfs is missing; run \`cargo build --release\` first"
command -v systemctl >/dev/null || die "systemctl not found: this machine does not run systemd"

set -x
install -m 0755 target/release/goldenfs /usr/local/bin/
install -m 0644 contrib/goldenfs.service /etc/systemd/system/
systemctl daemon-reload
systemctl enable --now goldenfs
