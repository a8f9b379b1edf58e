#!/usr/bin/env bash
# Builds, once, the Debian base that test hosts boot from (tests/hosts.rs):
# bookworm with systemd, sshd, iproute2, dbus, and what a kubeadm host needs on
# PATH before kubeadm runs (iptables, conntrack; mount and nsenter are in the
# minimal base), made by debootstrap.
#
#   scripts/test-hosts-base.sh [BASE]     # default /var/cache/sealrs-test/base-bookworm-3
#
# The base is reused when its stamp file says it is complete; a half-built base
# (debootstrap killed midway) has no stamp and is rebuilt from scratch in a temp
# directory that replaces it only when done. SEALRS_TEST_BASE moves it (the tests
# read the same variable); SEALRS_TEST_MIRROR picks the Debian mirror, otherwise
# the one apt uses on this machine.
#
# sshd host keys are removed from the base: the harness generates a fresh set
# for each host it boots (ssh-keygen -A into the host's overlay), so no two hosts
# share a key and the tests know each host's key without trusting on first use.
set -euo pipefail

base=${1:-${SEALRS_TEST_BASE:-/var/cache/sealrs-test/base-bookworm-3}}
stamp="$base/.sealrs-base-complete"
version=3 # bump with the directory name (and tests/hosts.rs) when the package list or the post-processing below changes:
# a new name leaves the old base alone for hosts that still boot from it

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version" ]; then
  echo "==> test host base: $base (cached)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "test-hosts-base: must run as root (debootstrap, then overlay mounts in the tests)" >&2
  exit 1
fi
for tool in debootstrap systemd-nspawn ssh-keygen ip; do
  if ! command -v "$tool" >/dev/null; then
    echo "test-hosts-base: $tool not found; install debootstrap systemd-container openssh-client iproute2" >&2
    exit 1
  fi
done

mirror=${SEALRS_TEST_MIRROR:-}
if [ -z "$mirror" ]; then
  # The first Debian (non-security) mirror apt is configured with: deb822 .sources
  # files ("URIs: ...") or one-line sources.list entries ("deb URL bookworm main").
  mirror=$(
    { cat /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } | awk '$1 == "URIs:" { print $2 }'
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true; } |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }'
  )
  mirror=$(printf '%s\n' "$mirror" | grep -E '/debian/?$' | grep -v security | head -n1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
fi

parent=$(dirname "$base")
mkdir -p "$parent"
tmp=$(mktemp -d "$parent/.base-build.XXXXXX")
trap 'rm -rf --one-file-system "$tmp"' EXIT

echo "==> test host base: debootstrap bookworm from $mirror into $base (about a minute)"
start=$(date +%s)
if ! debootstrap --variant=minbase \
  --include=systemd,systemd-sysv,openssh-server,iproute2,dbus,ca-certificates,procps,iptables,conntrack \
  bookworm "$tmp/root" "$mirror" >"$tmp/debootstrap.log" 2>&1; then
  tail -n 30 "$tmp/debootstrap.log" >&2
  echo "test-hosts-base: debootstrap failed (log above)" >&2
  exit 1
fi
root="$tmp/root"
# Each host gets its own keys (see above) and its own machine id.
rm -f "$root"/etc/ssh/ssh_host_*
: >"$root/etc/machine-id"
# Root logs in with a key; PasswordAuthentication is turned on per host by the harness.
mkdir -p "$root/etc/ssh/sshd_config.d"
printf 'PermitRootLogin yes\nUseDNS no\n' >"$root/etc/ssh/sshd_config.d/10-sealrs-test.conf"
# No console getty fighting over nspawn's console; nothing waits for a network manager.
rm -f "$root"/etc/systemd/system/getty.target.wants/* 2>/dev/null || true
rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/lib/apt/lists/"* 2>/dev/null || true

rm -rf --one-file-system "$base"
mv "$root" "$base"
echo "$version" >"$stamp"
echo "==> test host base: done in $(($(date +%s) - start)) s ($(du -sh "$base" | cut -f1))"
