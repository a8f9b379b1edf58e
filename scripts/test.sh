#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine: installs the peer tools the
# tests talk to (skopeo, umoci, buildah, ...) and what the test hosts need
# (debootstrap, systemd-container, openssh-server), builds the hosts' Debian
# base once (scripts/test-hosts-base.sh, cached), then runs the project's checks.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(skopeo umoci buildah docker-registry apache2-utils openssl openssh-client iproute2
  debootstrap systemd-container openssh-server util-linux
  # strace: tests watch which syscalls and argv an installer or a host sshd makes
  strace
  # the real containerd, runc and etcd that tests copy into images and hosts
  containerd runc etcd-server etcd-client)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Test hosts (tests/hosts.rs) boot from this base; a failure here fails the run
# rather than letting host tests fail one by one.
scripts/test-hosts-base.sh

echo "==> cargo fmt --check"
cargo fmt --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --all-targets 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite, summed over the test binaries.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
