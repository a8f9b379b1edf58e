#!/usr/bin/env bash
# Downloads the k0s binary and its airgap image bundle for one release and
# architecture into Kubefile-examples/k0s/bin and images/, checking each file
# against the sha256sums.txt that the release publishes.
#
#   scripts/fetch-k0s.sh VERSION ARCH [DEST]
#   scripts/fetch-k0s.sh v1.30.2+k0s.0 amd64
#
# ARCH: amd64, arm64 or arm. DEST defaults to Kubefile-examples/k0s.
# Needs curl and sha256sum, and access to github.com (not available on the
# offline development machines: tests use stand-ins, see tests/fixtures/standins).
# Release page: https://github.com/k0sproject/k0s/releases
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
version=$1 arch=$2
dest=${3:-"$(dirname "$0")/../Kubefile-examples/k0s"}
case "$version" in v[0-9]*+k0s.[0-9]*) ;; *) echo "VERSION must look like v1.30.2+k0s.0, got $version" >&2; exit 2 ;; esac
case "$arch" in amd64|arm64|arm) ;; *) echo "ARCH must be amd64, arm64 or arm, got $arch" >&2; exit 2 ;; esac

base="https://github.com/k0sproject/k0s/releases/download/${version//+/%2B}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() {
  echo "==> $base/$1"
  curl -fsSL --retry 3 -o "$work/$1" "$base/$1"
}

verify() {
  local name=$1 expected
  expected=$(awk -v n="$name" '$2 == n || $2 == "*"n { print $1 }' "$work/sha256sums.txt")
  [ -n "$expected" ] || { echo "no checksum for $name in sha256sums.txt" >&2; exit 1; }
  echo "$expected  $work/$name" | sha256sum -c --quiet - || { echo "checksum mismatch: $name" >&2; exit 1; }
}

fetch sha256sums.txt
binary="k0s-$version-$arch"
bundle="k0s-airgap-bundle-$version-$arch"
for name in "$binary" "$bundle"; do
  fetch "$name"
  verify "$name"
done

mkdir -p "$dest/bin" "$dest/images"
install -m 0755 "$work/$binary" "$dest/bin/k0s"
# k0s imports uncompressed OCI archives from /var/lib/k0s/images; the name needs .tar for the layout.
install -m 0644 "$work/$bundle" "$dest/images/$bundle.tar"
echo "k0s $version ($arch) is in $dest/bin and $dest/images; build with:"
echo "  sealrs build -t k0s:${version//+/-} --build-arg VERSION=$version --platform linux/$arch $dest"
