#!/usr/bin/env bash
# Downloads the k3s binary and its airgap image archive for one release and
# architecture into Kubefile-examples/k3s/bin and images/, checking each file
# against the sha256sum-ARCH.txt that the release publishes.
#
#   scripts/fetch-k3s.sh VERSION ARCH [DEST]
#   scripts/fetch-k3s.sh v1.30.2+k3s1 amd64
#
# ARCH: amd64, arm64 or arm. DEST defaults to Kubefile-examples/k3s.
# Needs curl and sha256sum, and access to github.com (not available on the
# offline development machines: tests use stand-ins, see tests/fixtures/standins).
# Release page: https://github.com/k3s-io/k3s/releases
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
version=$1 arch=$2
dest=${3:-"$(dirname "$0")/../Kubefile-examples/k3s"}
case "$version" in v[0-9]*+k3s[0-9]*) ;; *) echo "VERSION must look like v1.30.2+k3s1, got $version" >&2; exit 2 ;; esac
case "$arch" in
  amd64) binary=k3s ;;
  arm64) binary=k3s-arm64 ;;
  arm) binary=k3s-armhf ;;
  *) echo "ARCH must be amd64, arm64 or arm, got $arch" >&2; exit 2 ;;
esac

base="https://github.com/k3s-io/k3s/releases/download/${version//+/%2B}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # fetch NAME: downloads into $work, failing on HTTP errors
  echo "==> $base/$1"
  curl -fsSL --retry 3 -o "$work/$1" "$base/$1"
}

# Checks $work/NAME against the release's checksum list.
verify() {
  local name=$1 expected
  expected=$(awk -v n="$name" '$2 == n || $2 == "*"n { print $1 }' "$work/sha256sum-$arch.txt")
  [ -n "$expected" ] || { echo "no checksum for $name in sha256sum-$arch.txt" >&2; exit 1; }
  echo "$expected  $work/$name" | sha256sum -c --quiet - || { echo "checksum mismatch: $name" >&2; exit 1; }
}

fetch "sha256sum-$arch.txt"
airgap="k3s-airgap-images-$arch.tar.zst"
for name in "$binary" "$airgap"; do
  fetch "$name"
  verify "$name"
done

mkdir -p "$dest/bin" "$dest/images"
install -m 0755 "$work/$binary" "$dest/bin/k3s"
ln -sf k3s "$dest/bin/kubectl"
install -m 0644 "$work/$airgap" "$dest/images/$airgap"
echo "k3s $version ($arch) is in $dest/bin and $dest/images; build with:"
echo "  sealrs build -t k3s:${version//+/-} --build-arg VERSION=$version --platform linux/$arch $dest"
