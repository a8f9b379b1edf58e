#!/usr/bin/env bash
# Downloads what a kubeadm node runs, for one Kubernetes release and
# architecture, into Kubefile-examples/kubeadm/bin, each file checked against
# the checksum its upstream publishes:
#   kubeadm, kubelet, kubectl   https://dl.k8s.io/release/VERSION/bin/linux/ARCH/ (+ .sha256)
#   crictl                      https://github.com/kubernetes-sigs/cri-tools/releases
#   containerd, shim, ctr       https://github.com/containerd/containerd/releases
#   runc                        https://github.com/opencontainers/runc/releases
#   CNI plugins (bin/cni/)      https://github.com/containernetworking/plugins/releases
# and writes images/shim/kubeadm-images (`kubeadm config images list`) when the
# downloaded kubeadm runs on this machine, for image harvesting at build time.
#
#   scripts/fetch-kubeadm.sh VERSION ARCH [DEST]
#   scripts/fetch-kubeadm.sh v1.30.2 amd64
#
# ARCH: amd64 or arm64. DEST defaults to Kubefile-examples/kubeadm. Companion
# versions can be overridden: CRICTL_VERSION, CONTAINERD_VERSION, RUNC_VERSION,
# CNI_VERSION. Needs curl, sha256sum and tar, and network access (not available
# on the offline development machines: tests use tests/fixtures/standins).
set -euo pipefail

usage() { sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] && [ $# -le 3 ] || usage
version=$1 arch=$2
dest=${3:-"$(dirname "$0")/../Kubefile-examples/kubeadm"}
case "$version" in v[0-9]*.[0-9]*.[0-9]*) ;; *) echo "VERSION must look like v1.30.2, got $version" >&2; exit 2 ;; esac
case "$arch" in amd64|arm64) ;; *) echo "ARCH must be amd64 or arm64, got $arch" >&2; exit 2 ;; esac
crictl_version=${CRICTL_VERSION:-v1.30.0}
containerd_version=${CONTAINERD_VERSION:-1.7.18}
runc_version=${RUNC_VERSION:-v1.1.13}
cni_version=${CNI_VERSION:-v1.5.1}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # fetch URL NAME
  echo "==> $1"
  curl -fsSL --retry 3 -o "$work/$2" "$1"
}

# check NAME SHA256: fails loudly on a mismatch or an empty checksum.
check() {
  [ -n "$2" ] || { echo "no checksum for $1" >&2; exit 1; }
  echo "$2  $work/$1" | sha256sum -c --quiet - || { echo "checksum mismatch: $1" >&2; exit 1; }
}

# fetch_checked URL NAME SUMURL: the checksum file's first field is the hash.
fetch_checked() {
  fetch "$1" "$2"
  fetch "$3" "$2.sum"
  check "$2" "$(awk '{ print $1; exit }' "$work/$2.sum")"
}

mkdir -p "$dest/bin/cni" "$dest/images/shim"

k8s="https://dl.k8s.io/release/$version/bin/linux/$arch"
for b in kubeadm kubelet kubectl; do
  fetch_checked "$k8s/$b" "$b" "$k8s/$b.sha256"
  install -m 0755 "$work/$b" "$dest/bin/$b"
done

crictl="crictl-$crictl_version-linux-$arch.tar.gz"
url="https://github.com/kubernetes-sigs/cri-tools/releases/download/$crictl_version/$crictl"
fetch_checked "$url" "$crictl" "$url.sha256"
tar -C "$work" -xzf "$work/$crictl" crictl
install -m 0755 "$work/crictl" "$dest/bin/crictl"

containerd="containerd-$containerd_version-linux-$arch.tar.gz"
url="https://github.com/containerd/containerd/releases/download/v$containerd_version/$containerd"
fetch_checked "$url" "$containerd" "$url.sha256sum"
tar -C "$work" -xzf "$work/$containerd" bin/containerd bin/containerd-shim-runc-v2 bin/ctr
for b in containerd containerd-shim-runc-v2 ctr; do
  install -m 0755 "$work/bin/$b" "$dest/bin/$b"
done

url="https://github.com/opencontainers/runc/releases/download/$runc_version"
fetch "$url/runc.$arch" "runc.$arch"
fetch "$url/runc.sha256sum" runc.sha256sum
check "runc.$arch" "$(awk -v n="runc.$arch" '$2 == n || $2 == "*"n { print $1 }' "$work/runc.sha256sum")"
install -m 0755 "$work/runc.$arch" "$dest/bin/runc"

cni="cni-plugins-linux-$arch-$cni_version.tgz"
url="https://github.com/containernetworking/plugins/releases/download/$cni_version/$cni"
fetch_checked "$url" "$cni" "$url.sha256"
mkdir -p "$work/cni"
tar -C "$work/cni" -xzf "$work/$cni"
for p in "$work"/cni/*; do
  [ -f "$p" ] && [ -x "$p" ] && install -m 0755 "$p" "$dest/bin/cni/$(basename "$p")"
done

if "$dest/bin/kubeadm" version >/dev/null 2>&1; then
  "$dest/bin/kubeadm" config images list --kubernetes-version "$version" >"$dest/images/shim/kubeadm-images"
  echo "wrote $dest/images/shim/kubeadm-images"
  # containerd must start pod sandboxes with this version's pause image (the
  # one just listed, harvested at build): sealrs's host check refuses another.
  pause=$(grep '/pause:' "$dest/images/shim/kubeadm-images" | head -n1)
  if [ -n "$pause" ] && [ -f "$dest/etc/containerd/config.toml" ]; then
    sed -i "s|^\( *sandbox_image *= *\)\".*\"|\1\"$pause\"|" "$dest/etc/containerd/config.toml"
    echo "set sandbox_image = \"$pause\" in $dest/etc/containerd/config.toml"
  fi
else
  echo "note: bin/kubeadm does not run on this machine ($arch); write images/shim/kubeadm-images with" >&2
  echo "      kubeadm config images list --kubernetes-version $version" >&2
  touch "$dest/images/shim/kubeadm-images"
fi
echo "kubeadm $version ($arch) is in $dest/bin; build with:"
echo "  sealrs build -t kubeadm:$version --build-arg VERSION=$version --platform linux/$arch $dest"
