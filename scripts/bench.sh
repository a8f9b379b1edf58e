#!/usr/bin/env bash
# Benchmarks sealrs against its peers, measured in the same run on the same
# machine, and prints wall time, peak RSS and the ratios. Not a test: targets
# are read by people from the figures.
#
#   scripts/bench.sh build     k3s-like context: sealrs build vs buildah bud + push
#   scripts/bench.sh push      the same image: build+push pipeline vs buildah,
#                              push and pull vs skopeo, each push to an empty registry
#   scripts/bench.sh run       k3s-like image (k3s stand-in as bin/k3s, the 70 MB blob as
#                              bin/k3s-data) applied to 4 test hosts (1 server, 3 agents)
#                              vs 4 parallel scp -r and 4 parallel rsync of the same rootfs,
#                              then an unchanged re-apply (each RUNS=3 times, medians
#                              compared); then an upgrade of one small layer
#   scripts/bench.sh scale     the same k3s-like image pushed to a local docker-registry (TLS,
#                              a test CA given to hosts with --cert-dir) on the operator side
#                              of 16 test hosts' links, applied to 1+3 and to 1+15 hosts,
#                              alternating the direct route (image in the local store) and the
#                              registry route (`run REGISTRY/REPO:TAG` from an empty store: hosts
#                              pull the layers), `sealrs reset` between runs (RUNS, default 1);
#                              then, on the 16 hosts, a registry-route upgrade of one manifest
#                              (hosts hold the installer). Prints wall time, peak RSS, CPU time
#                              of sealrs, the registry and the hosts, the bytes that left this
#                              machine for the hosts (an nftables counter on its output through
#                              the hosts' links, the registry's replies left out: SSH, the direct
#                              stream, TLS and TCP/IP, as the kernel hands them to the link),
#                              sealrs's reported layer bytes, and issue 22's targets. Then the
#                              same four applies with each host held to a fixed CPU share of its
#                              own (SCALE_HOST_CPU cores, default 0.09: a cgroup per host), as a
#                              fleet's hosts each have their own CPUs: uncapped, 16 hosts here
#                              share the 2 cores that 4 hosts had, so their unpacking alone takes
#                              4x as long whatever the tool does. Each run's stderr is kept in
#                              $SCALE_LOGS (/var/tmp/sealrs-scale-logs)
#   scripts/bench.sh examples  builds Kubefile-examples/{k3s,k0s,kubeadm} whose binaries
#                              were fetched (scripts/fetch-RUNTIME.sh): size, time, RSS
#
# Needs root, buildah, skopeo, docker-registry, zstd and GNU time (scripts/test.sh installs
# all but zstd: apt-get install zstd).
# `run` and `scale` also need the test hosts' base (scripts/test-hosts-base.sh); `scale` nft
# and openssl; `run` rsync on this machine (apt-get install rsync): it copies rsync and its
# libraries into the peer hosts, whose base has none.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-build}
work=$(mktemp -d /var/tmp/sealrs-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
sealrs=$PWD/target/release/sealrs

# run LABEL CMD...: appends "LABEL seconds peak_kb" to $work/results
run() {
  local label=$1; shift
  local start end
  start=$(date +%s%N)
  /usr/bin/time -f "%M" -o "$work/time.out" "$@" >/dev/null 2>"$work/err.out" || {
    echo "failed: $*"; cat "$work/err.out"; exit 1; }
  end=$(date +%s%N)
  # GNU time's wall clock has 10 ms steps; nanoseconds from date are finer.
  echo "$label $(python3 -c "print(f'{($end - $start) / 1e9:.3f}')") $(cat "$work/time.out")" >> "$work/results"
}

# A context shaped like a k3s rootfs: a 70 MB binary that compresses about 2:1,
# a 400 MB airgap archive that does not compress at all, 200 small YAML files.
make_k3s_context() {
  local ctx=$1
  mkdir -p "$ctx/bin" "$ctx/images" "$ctx/manifests"
  # bin/k3s: an x86_64 ELF header, then half random, half text (so that the
  # build's checks see a program, and zstd gets about 2:1 out of it).
  python3 - "$ctx/bin/k3s" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.write(b"\x7fELF\x02\x01\x01" + bytes(11) + b"\x3e\x00" + bytes(44))
    words = [os.urandom(8).hex().encode() for _ in range(4096)]
    for i in range(70 * 16):                      # 70 MiB in 64 KiB chunks
        chunk = os.urandom(32 * 1024)             # half random ...
        text = b" ".join(words[(i * 7 + j) % 4096] for j in range(2000))[: 32 * 1024]
        f.write(chunk + text.ljust(32 * 1024, b"."))  # ... half text
PY
  chmod 755 "$ctx/bin/k3s"
  # The airgap archive: a docker-archive (manifest.json first) whose one
  # 400 MB layer is random, zstd-compressed as k3s ships it: incompressible.
  local air=$work/airgap
  mkdir -p "$air"
  printf '[{"Config":"config.json","RepoTags":["bench/airgap:1"],"Layers":["layer.tar"]}]' > "$air/manifest.json"
  printf '{"architecture":"amd64","os":"linux"}' > "$air/config.json"
  head -c 400M /dev/urandom > "$air/layer.tar"
  tar -C "$air" -cf - manifest.json config.json layer.tar | zstd -q -1 -T0 \
    > "$ctx/images/k3s-airgap-images-amd64.tar.zst"
  rm -rf "$air"
  for i in $(seq 1 200); do
    printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\ndata:\n  key: "value %d"\n' "$i" "$i" \
      > "$ctx/manifests/cm-$i.yaml"
  done
  cat > "$ctx/Kubefile" <<'KF'
FROM scratch
LABEL sealrs.io/type="rootfs" sealrs.io/runtime="k3s" sealrs.io/version="v1.30.2"
ENV PATH_PREFIX=/usr/local/bin
COPY bin ./bin
COPY images ./images
COPY manifests ./manifests
CMD ["scripts/init.sh"]
KF
}

ratio() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{a/b:.2f}x' if b>0 else 'inf')" "$1" "$2"; }
field() { awk -v l="$1" -v c="$2" '$1==l {print $c}' "$work/results"; }

bench_build() {
  local ctx=$work/ctx
  echo "==> making the k3s-like context in $ctx"
  make_k3s_context "$ctx"
  local b=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver vfs)

  echo "==> buildah: cold bud + push to an OCI layout"
  run buildah_bud "${b[@]}" bud --layers -t localhost/bench:1 -f "$ctx/Kubefile" "$ctx"
  run buildah_push "${b[@]}" push localhost/bench:1 "oci:$work/buildah-oci:bench"
  echo "==> buildah: unchanged rebuild (cached layers)"
  run buildah_rebuild "${b[@]}" bud --layers -t localhost/bench:1 -f "$ctx/Kubefile" "$ctx"

  echo "==> sealrs: cold build"
  run sealrs_build "$sealrs" --root "$work/sealrs" -q build -t bench:1 "$ctx"
  echo "==> sealrs: unchanged rebuild"
  run sealrs_rebuild "$sealrs" --root "$work/sealrs" -q build -t bench:1 "$ctx"

  local bb bp br sb sr
  bb=$(field buildah_bud 2); bp=$(field buildah_push 2); br=$(field buildah_rebuild 2)
  sb=$(field sealrs_build 2); sr=$(field sealrs_rebuild 2)
  local bcold
  bcold=$(python3 -c "print(round($bb + $bp, 2))")
  local bmem
  bmem=$(python3 -c "print(max($(field buildah_bud 3), $(field buildah_push 3)))")
  echo
  printf '%-34s %10s %14s\n' "build benchmark" "wall (s)" "peak RSS (MB)"
  printf '%-34s %10s %14s\n' "buildah bud + push (cold)" "$bcold" "$((bmem / 1024))"
  printf '%-34s %10s %14s\n' "sealrs build (cold)" "$sb" "$(( $(field sealrs_build 3) / 1024 ))"
  printf '%-34s %10s %14s\n' "buildah bud (unchanged, cached)" "$br" "$(( $(field buildah_rebuild 3) / 1024 ))"
  printf '%-34s %10s %14s\n' "sealrs build (unchanged)" "$sr" "$(( $(field sealrs_rebuild 3) / 1024 ))"
  echo
  echo "cold build:       sealrs is $(ratio "$bcold" "$sb") faster than buildah bud+push (target >= 4x)"
  echo "unchanged build:  sealrs is $(ratio "$br" "$sr") faster than buildah's cached rebuild (target >= 10x)"
  echo "peak RSS:         sealrs $(( $(field sealrs_build 3) / 1024 )) MB cold, $(( $(field sealrs_rebuild 3) / 1024 )) MB unchanged (target < 100 MB)"
  du -sh "$work/sealrs/oci" "$work/buildah-oci" | sed 's/^/store size: /'
}

# start_registry NAME [IP]: an empty docker-registry on 127.0.0.1; sets $reg_host, $reg_pid.
# Given IP (where test hosts reach this machine), it listens there with TLS, as
# tests/registry_server.rs does: a test CA signs its certificate, and $reg_certs
# is the directory with that CA's ca.crt, for --cert-dir.
start_registry() {
  local dir=$work/reg-$1 ip=${2:-127.0.0.1}
  mkdir -p "$dir/storage"
  local port tls="" scheme=http
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ -n "${2:-}" ]; then
    make_test_ca "$dir" "$ip"
    tls=", tls: { certificate: $dir/server.crt, key: $dir/server.key }"
    scheme=https reg_certs=$dir/certs.d
  fi
  cat > "$dir/config.yml" <<YML
version: 0.1
log: { level: error }
storage:
  filesystem: { rootdirectory: $dir/storage }
  delete: { enabled: true }
http: { addr: "$ip:$port"$tls }
YML
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  reg_pid=$!
  reg_host=$ip:$port
  for _ in $(seq 1 100); do
    curl -fs --cacert "$dir/certs.d/ca.crt" "$scheme://$reg_host/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "registry did not start"; cat "$dir/log"; exit 1
}
# make_test_ca DIR IP: ca.crt, and server.crt/.key it signs for IP (rustls
# refuses a self-signed CA certificate used directly as a server's); DIR/certs.d/ca.crt.
make_test_ca() {
  local dir=$1 ip=$2
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sealrs bench CA" \
      -keyout ca.key -out ca.crt
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$ip" -keyout server.key -out server.csr
    printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$ip" > ext.cnf
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
      -extfile ext.cnf -out server.crt
    mkdir -p certs.d && cp ca.crt certs.d/ca.crt
  ) >/dev/null 2>&1
}
stop_registry() { kill "$reg_pid" 2>/dev/null; wait "$reg_pid" 2>/dev/null || true; }

median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.3f}')" "$@"; }
maxof() { python3 -c "import sys; print(max(map(int, sys.argv[1:])))" "$@"; }
col() { awk -v l="$1" -v c="$2" '$1==l {print $c}' "$work/results"; }

bench_push() {
  local runs=${RUNS:-3}
  local ctx=$work/ctx
  echo "==> making the k3s-like context in $ctx"
  make_k3s_context "$ctx"
  local b=(buildah --root "$work/buildah/root" --runroot "$work/buildah/run" --storage-driver vfs)
  local store=$work/sealrs
  "$sealrs" --root "$store" -q build -t bench:1 "$ctx" >/dev/null
  local layout=$store/oci
  for i in $(seq 1 "$runs"); do
    echo "==> run $i/$runs"
    # (1) the release pipeline, each into an empty registry of its own.
    start_registry "bp$i"
    run buildah_pipeline bash -c "${b[*]} bud -q -t localhost/p$i:1 -f $ctx/Kubefile $ctx >/dev/null && ${b[*]} push --tls-verify=false localhost/p$i:1 docker://$reg_host/bench/app:1"
    stop_registry
    start_registry "sp$i"
    run sealrs_pipeline bash -c "$sealrs --root $work/pipe$i -q build --no-cache -t $reg_host/bench/app:1 $ctx && $sealrs --root $work/pipe$i -q push $reg_host/bench/app:1"
    stop_registry
    rm -rf "$work/pipe$i"
    # (2) push alone, the same image.
    start_registry "kp$i"
    run skopeo_push skopeo copy -q --dest-tls-verify=false "oci:$layout:docker.io/library/bench:1" "docker://$reg_host/bench/app:1"
    stop_registry
    start_registry "ss$i"
    run sealrs_push "$sealrs" --root "$store" -q push bench:1 "$reg_host/bench/app:1"
    # (3) pull alone, from the registry sealrs just filled.
    rm -rf "$work/skopeo-pull" "$work/sealrs-pull"
    run skopeo_pull skopeo copy -q --src-tls-verify=false "docker://$reg_host/bench/app:1" "oci:$work/skopeo-pull:bench"
    run sealrs_pull "$sealrs" --root "$work/sealrs-pull" -q pull "$reg_host/bench/app:1"
    stop_registry
    rm -rf "$work"/reg-* "$work/skopeo-pull" "$work/sealrs-pull"
  done
  echo
  printf '%-30s %12s %14s\n' "push benchmark ($runs runs)" "median (s)" "peak RSS (MB)"
  for l in buildah_pipeline sealrs_pipeline skopeo_push sealrs_push skopeo_pull sealrs_pull; do
    # shellcheck disable=SC2046
    printf '%-30s %12s %14s\n' "$l" "$(median $(col $l 2))" "$(( $(maxof $(col $l 3)) / 1024 ))"
  done
  echo
  # shellcheck disable=SC2046
  {
  echo "pipeline: sealrs build+push is $(ratio "$(median $(col buildah_pipeline 2))" "$(median $(col sealrs_pipeline 2))") faster than buildah bud+push (target >= 3x)"
  echo "push:     sealrs is $(ratio "$(median $(col skopeo_push 2))" "$(median $(col sealrs_push 2))") as fast as skopeo copy (target >= 1x)"
  echo "pull:     sealrs is $(ratio "$(median $(col skopeo_pull 2))" "$(median $(col sealrs_pull 2))") as fast as skopeo copy (target >= 1x)"
  echo "peak RSS: sealrs push $(( $(maxof $(col sealrs_push 3)) / 1024 )) MB, pull $(( $(maxof $(col sealrs_pull 3)) / 1024 )) MB (target < 100 MB)"
  }
}

# Builds each example whose real release files are in place; the stand-ins that
# tests use are shell scripts, and figures from them would mean nothing.
bench_examples() {
  printf '%-10s %-14s %12s %10s %14s\n' example "image size" "build (s)" "layers" "peak RSS (MB)"
  for ex in k3s k0s kubeadm; do
    local dir=Kubefile-examples/$ex marker
    marker=$(ls "$dir"/bin/{k3s,k0s,kubeadm} 2>/dev/null | head -1 || true)
    if [ -z "$marker" ] || ! head -c4 "$marker" | grep -q 'ELF'; then
      printf '%-10s skipped: run scripts/fetch-%s.sh VERSION ARCH first\n' "$ex" "$ex"
      continue
    fi
    run "example_$ex" "$sealrs" --root "$work/ex-$ex" -q build -t "bench/$ex:1" "$dir"
    local size layers
    size=$("$sealrs" --root "$work/ex-$ex" images --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["size"])')
    layers=$("$sealrs" --root "$work/ex-$ex" inspect "bench/$ex:1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["manifest"]["layers"]))')
    printf '%-10s %-14s %12s %10s %14s\n' "$ex" "$((size / 1000000)) MB" "$(field "example_$ex" 2)" "$layers" "$(( $(field "example_$ex" 3) / 1024 ))"
  done
}


# Test hosts for `run`: the integration tests' harness (tests/hosts.rs), started
# through its #[ignore]d entry run_apps::bench_hosts, which boots them, writes
# $hdir/hosts ("IP ROOT" lines) and $hdir/ssh.env, and tears them down (by the
# pids, mounts and namespaces it recorded) when $hdir/stop appears or it is killed.
hosts_up() {
  hdir=$work/hosts; mkdir -p "$hdir"
  # The test binary itself, so that no cargo lock is held while the hosts run.
  local exe
  exe=$(cargo test --quiet --test integration --no-run --message-format=json | python3 -c '
import json, sys
for m in map(json.loads, sys.stdin):
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "integration":
        print(m["executable"])')
  SEALRS_BENCH_DIR=$hdir SEALRS_BENCH_HOSTS=$1 "$exe" --ignored --exact run_apps::bench_hosts \
    >"$hdir/log" 2>&1 &
  hosts_pid=$!
  for _ in $(seq 1 1800); do
    [ -e "$hdir/ready" ] && break
    kill -0 "$hosts_pid" 2>/dev/null || { echo "test hosts did not come up:"; cat "$hdir/log"; exit 1; }
    sleep 0.2
  done
  [ -e "$hdir/ready" ] || { echo "test hosts: timed out"; cat "$hdir/log"; exit 1; }
  # shellcheck disable=SC1091
  . "$hdir/ssh.env"
}
hosts_down() {
  [ -n "${hosts_pid:-}" ] || return 0
  touch "$hdir/stop"; wait "$hosts_pid" 2>/dev/null || true; hosts_pid=
}

# put_rsync ROOT: rsync and the libraries it links, into a host's overlay root.
put_rsync() {
  local root=$1 lib
  install -D -m 755 "$(command -v rsync)" "$root/usr/bin/rsync"
  for lib in $(ldd "$(command -v rsync)" | awk '$3 ~ /^\// {print $3}'); do
    [ -e "$root$lib" ] || install -D -m 644 "$lib" "$root$lib"
  done
}

# bytes_sent: the bytes of layers the last `run` sent to all hosts, exactly, from
# the `--format json` result its command wrote to $work/result.json (the summary
# line on stderr rounds them for people): such a run line is
# `run LABEL bash -c 'exec "$@" --format json >"$0"' "$work/result.json" "$sealrs" ...`.
bytes_sent() {
  python3 -c 'import json, sys; print(sum(h["bytesSent"] or 0 for h in json.load(open(sys.argv[1]))["hosts"]))' "$work/result.json"
}

# make_k3s_run_context CTX: the k3s-like context of `run` and `scale`. The 70 MB
# blob stays in the image, but not as the binary that runs: the k3s stand-in
# does (the real k3s cannot be downloaded here).
make_k3s_run_context() {
  local ctx=$1
  echo "==> making the k3s-like context in $ctx"
  make_k3s_context "$ctx"
  mv "$ctx/bin/k3s" "$ctx/bin/k3s-data"
  install -m 755 tests/fixtures/standins/k3s "$ctx/bin/k3s"
  ln -s k3s "$ctx/bin/kubectl"
}

bench_run() {
  command -v rsync >/dev/null || { echo "rsync is needed on this machine: apt-get install rsync"; exit 1; }
  local ctx=$work/ctx
  make_k3s_run_context "$ctx"
  local store=$work/sealrs
  "$sealrs" --root "$store" -q build -t bench:1 "$ctx" >/dev/null
  local size
  size=$("$sealrs" --root "$store" images --format json | python3 -c 'import json,sys; print(sum(i["size"] for i in json.load(sys.stdin)))')
  echo "==> image bench:1: $size bytes"

  echo "==> booting 8 test hosts (4 for sealrs, 4 for scp/rsync)"
  hosts_up 8
  trap 'hosts_down; rm -rf "$work"' EXIT
  mapfile -t ips < <(awk '{print $1}' "$hdir/hosts")
  mapfile -t roots < <(awk '{print $2}' "$hdir/hosts")
  local s_ips=("${ips[@]:0:4}") p_ips=("${ips[@]:4:4}") r
  for r in "${roots[@]:4:4}"; do put_rsync "$r"; done
  local sshopts=(-i "$KEY" -o UserKnownHostsFile="$KNOWN_HOSTS" -o StrictHostKeyChecking=yes -o BatchMode=yes)
  local pscp="" prsync="" ip
  for ip in "${p_ips[@]}"; do
    pscp+="scp -q -r ${sshopts[*]} $ctx root@$ip:/opt/rootfs-scp & "
    prsync+="rsync -a -e 'ssh ${sshopts[*]}' $ctx/ root@$ip:/opt/rootfs-rsync/ & "
  done
  local flags=(--masters "${s_ips[0]}" --nodes "${s_ips[1]},${s_ips[2]},${s_ips[3]}" --ssh-key "$KEY" --known-hosts "$KNOWN_HOSTS")
  # Each measurement RUNS times, alternating, and the median of each is
  # compared: one run of anything on this machine varies by +-15%. Before
  # each, what earlier ones wrote (and freed) is flushed: their writeback
  # and discards must not run during it. Between runs, `sealrs reset` puts
  # the hosts back as they were before the first apply.
  local runs=${RUNS:-3} i first_sent again_sent
  for i in $(seq 1 "$runs"); do
    echo "==> run $i/$runs: 4 parallel scp -r of the rootfs"
    sync
    run scp_4 bash -c "$pscp wait"
    for ip in "${p_ips[@]}"; do ssh "${sshopts[@]}" "root@$ip" rm -rf /opt/rootfs-scp; done
    echo "==> run $i/$runs: 4 parallel rsync of the rootfs (into empty directories)"
    sync
    run rsync_4 bash -c "$prsync wait"
    for ip in "${p_ips[@]}"; do ssh "${sshopts[@]}" "root@$ip" rm -rf /opt/rootfs-rsync; done
    echo "==> run $i/$runs: sealrs run, first apply to 4 hosts"
    sync
    run sealrs_first bash -c 'exec "$@" --format json >"$0"' "$work/result.json" \
      "$sealrs" --root "$store" -q run bench:1 "${flags[@]}"
    first_sent=$(bytes_sent)
    echo "==> run $i/$runs: sealrs run, unchanged re-apply"
    sync
    run sealrs_again bash -c 'exec "$@" --format json >"$0"' "$work/result.json" \
      "$sealrs" --root "$store" -q run bench:1 "${flags[@]}"
    again_sent=$(bytes_sent)
    if [ "$i" -lt "$runs" ]; then
      "$sealrs" --root "$store" -q reset --yes --known-hosts "$KNOWN_HOSTS" >/dev/null
    fi
  done
  echo "==> sealrs run: upgrade, one manifest changed"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-1\ndata:\n  key: "value 1, changed"\n' > "$ctx/manifests/cm-1.yaml"
  "$sealrs" --root "$store" -q build -t bench:2 "$ctx" >/dev/null
  sync
  run sealrs_upgrade bash -c 'exec "$@" --format json >"$0"' "$work/result.json" \
      "$sealrs" --root "$store" -q run bench:2 "${flags[@]}"
  local up_sent; up_sent=$(bytes_sent)

  echo
  # shellcheck disable=SC2046
  local scp rsync first again
  scp=$(median $(col scp_4 2)); rsync=$(median $(col rsync_4 2))
  first=$(median $(col sealrs_first 2)); again=$(median $(col sealrs_again 2))
  printf '%-40s %12s %14s %16s   %s\n' "apply benchmark (4 hosts, $runs runs)" "median (s)" "peak RSS (MB)" "bytes sent" "each run (s)"
  # shellcheck disable=SC2046
  {
  printf '%-40s %12s %14s %16s   %s\n' "scp -r x4 in parallel" "$scp" "-" "-" "$(col scp_4 2 | xargs)"
  printf '%-40s %12s %14s %16s   %s\n' "rsync -a x4 in parallel" "$rsync" "-" "-" "$(col rsync_4 2 | xargs)"
  printf '%-40s %12s %14s %16s   %s\n' "sealrs run (first apply)" "$first" "$(( $(maxof $(col sealrs_first 3)) / 1024 ))" "$first_sent" "$(col sealrs_first 2 | xargs)"
  printf '%-40s %12s %14s %16s   %s\n' "sealrs run (unchanged re-apply)" "$again" "$(( $(maxof $(col sealrs_again 3)) / 1024 ))" "$again_sent" "$(col sealrs_again 2 | xargs)"
  }
  printf '%-40s %12s %14s %16s\n' "sealrs run (upgrade, 1 small layer)" "$(field sealrs_upgrade 2)" "$(( $(field sealrs_upgrade 3) / 1024 ))" "$up_sent"
  echo
  echo "first apply: sealrs is $(ratio "$scp" "$first") faster than 4 parallel scp -r (target >= 2x), $(ratio "$rsync" "$first") than rsync (medians)"
  echo "re-apply:    $(ratio "$first" "$again") faster than the first apply (target >= 20x, medians)"
  echo "upgrade:     $up_sent bytes sent to 4 hosts = $(python3 -c "print(f'{100 * $up_sent / (4 * $size):.4f}')")% of 4 x the image's $size bytes (target < 1%)"
  hosts_down
}

# The operator's bytes to the test hosts, counted by the kernel rather than
# by sealrs: an nftables counter on this machine's output (not what it
# forwards between hosts) through the hosts' links, vsX-* (tests/hosts.rs),
# less the registry's replies, as the registry stands for another machine.
# Everything sealrs sends is in it: SSH, the direct TLS stream, TCP/IP headers
# (per packet as the stack hands it to the link, before segmentation: a real
# wire's per-frame headers, about 3%, are not).
opcount_up() {
  nft_table=sealrs_bench_$$
  nft -f - <<NFT
table inet $nft_table {
  counter sent { }
  chain out {
    type filter hook output priority 0; policy accept;
    oifname "$1" tcp sport $2 accept
    oifname "$1" counter name "sent"
  }
}
NFT
}
opcount() { nft list counter inet "$nft_table" sent | awk '{for (i = 1; i < NF; i++) if ($i == "bytes") print $(i + 1)}'; }
opcount_down() { [ -z "${nft_table:-}" ] || nft delete table inet "$nft_table" 2>/dev/null || true; nft_table=; }

# scale_apply LABEL ROOT IMAGE N [FLAGS...]: `sealrs run IMAGE` on the first N
# hosts (1 master, N-1 nodes) with store ROOT, recorded by `run` (wall time,
# peak RSS), and in $work/sent: the counted bytes, sealrs's own, its CPU seconds.
scale_apply() {
  local label=$1 root=$2 image=$3 n=$4; shift 4
  local nodes before after
  nodes=$(IFS=,; echo "${ips[*]:1:$((n - 1))}")
  sync
  before=$(opcount)
  local cpu_before cpu_after
  cpu_before=$(cpu_seconds "$x" "$reg_pid")
  run "$label" bash -c 'exec "$@" --format json >"$0"' "$work/result.json" \
    /usr/bin/time -f "%U %S" -o "$work/cpu.out" "$sealrs" --root "$root" run "$image" \
    --masters "${ips[0]}" --nodes "$nodes" --ssh-key "$KEY" --known-hosts "$KNOWN_HOSTS" "$@"
  after=$(opcount)
  cpu_after=$(cpu_seconds "$x" "$reg_pid")
  cp "$work/err.out" "$logs/$label-$(grep -c "^$label " "$work/results")"
  local cpu
  cpu=$(python3 -c 'import sys; o, a, b = sys.argv[1].split(), sys.argv[2].split(), sys.argv[3].split()
print(f"{float(o[0]) + float(o[1]):.2f} {float(b[0]) - float(a[0]):.2f} {float(b[1]) - float(a[1]):.2f}")' \
    "$(cat "$work/cpu.out")" "$cpu_before" "$cpu_after")
  # The layer phase: its slowest host, from the per-host lines ("… in 17.0s").
  local slowest
  slowest=$(sed -n 's/.*layers \(pulled from the registry\|sent directly\|sent over SSH\) .* in \([0-9.]*\)s$/\2/p' "$work/err.out" | sort -g | tail -1)
  echo "$label $((after - before)) $(bytes_sent) $cpu ${slowest:-0}" >> "$work/sent"
  echo "    $(tail -1 "$work/results" | awk '{print $2}') s, $((after - before)) bytes counted, $(bytes_sent) reported; CPU s (sealrs, registry, hosts): $cpu"
}

# scale_reset ROOT: `sealrs reset` of the cluster saved in ROOT; its plan and
# messages are shown only when it fails.
scale_reset() {
  "$sealrs" --root "$1" -q reset --yes --known-hosts "$KNOWN_HOSTS" >"$work/reset.out" 2>&1 || {
    echo "reset failed:"; cat "$work/reset.out"; exit 1; }
}
sent_col() { awk -v l="$1" -v c="$2" '$1==l {print $c}' "$work/sent"; }

# Each test host of subnet X in a cgroup of its own in the (v1) cpu hierarchy,
# $cpu_root/HOST: every process in the host's network namespace (its init,
# sshd, journald) is moved there, and what they start later (an SSH
# session, the installer, k3s) starts there.
cpu_groups_up() {
  cpu_root=/sys/fs/cgroup/cpu/sealrs-bench-$$
  mkdir -p "$cpu_root"
  python3 - "$x" "$cpu_root" <<'PY'
import glob, os, sys
x, root = sys.argv[1:]
nets = {os.stat(p).st_ino: os.path.basename(p) for p in glob.glob(f"/run/netns/sealrs-{x}-*")}
moved = 0
for d in glob.glob("/proc/[0-9]*"):
    try:
        host = nets.get(os.stat(f"{d}/ns/net").st_ino)
        if host is None:
            continue
        os.makedirs(f"{root}/{host}", exist_ok=True)
        with open(f"{root}/{host}/cgroup.procs", "w") as f:
            f.write(d[6:])
        moved += 1
    except OSError:
        pass
groups = [e for e in os.listdir(root) if os.path.isdir(f"{root}/{e}")]
if len(groups) < len(nets):
    sys.exit(f"processes of only {len(groups)} of {len(nets)} hosts found ({moved} moved)")
PY
}
# cpu_cap CORES: each host's CPU held to CORES (a CFS quota per 100 ms); "" lifts it.
cpu_cap() {
  local quota=-1 g
  [ -z "$1" ] || quota=$(python3 -c "print(round(float('$1') * 100000))")
  for g in "$cpu_root"/*/; do
    echo 100000 > "$g/cpu.cfs_period_us"
    echo "$quota" > "$g/cpu.cfs_quota_us"
  done
}
# After hosts_down: the groups are empty then.
cpu_groups_down() { [ -z "${cpu_root:-}" ] || { rmdir "$cpu_root"/*/ "$cpu_root" 2>/dev/null || true; }; }

# cpu_seconds X REGISTRY_PID: CPU seconds used so far by the registry and by
# the hosts of subnet X: each host's sshd listener with its reaped sessions,
# which hold the installers' and the hosts' sshd's own (k3s's is left out).
cpu_seconds() {
  python3 - "$@" <<'PY'
import glob, os, sys
x, reg = sys.argv[1], sys.argv[2]
tick = os.sysconf("SC_CLK_TCK")
nets = {os.stat(p).st_ino for p in glob.glob(f"/run/netns/sealrs-{x}-*")}
def stat(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    comm = text[text.index("(") + 1 : text.rindex(")")]
    rest = text[text.rindex(")") + 2 :].split()
    return comm, int(rest[1]), sum(map(int, rest[11:15]))
hosts = 0
for d in glob.glob("/proc/[0-9]*"):
    pid = d[6:]
    try:
        if os.stat(f"{d}/ns/net").st_ino not in nets:
            continue
        comm, ppid, used = stat(pid)
        if comm == "sshd" and stat(ppid)[0] != "sshd":
            hosts += used
    except (OSError, ValueError):
        pass
print(f"{stat(reg)[2] / tick:.2f} {hosts / tick:.2f}")
PY
}

bench_scale() {
  local runs=${RUNS:-1}
  local ctx=$work/ctx
  # Each run's stderr is kept here for a look afterwards.
  logs=${SCALE_LOGS:-/var/tmp/sealrs-scale-logs}
  mkdir -p "$logs"
  make_k3s_run_context "$ctx"
  local store=$work/sealrs
  "$sealrs" --root "$store" -q build -t bench:1 "$ctx" >/dev/null
  echo "==> booting 16 test hosts"
  hosts_up 16
  trap 'opcount_down; hosts_down; rm -rf "$work"' EXIT
  mapfile -t ips < <(awk '{print $1}' "$hdir/hosts")
  local subnet=${ips[0]%.*}
  x=${subnet##*.}
  echo "==> a registry with TLS on ${subnet}.1, the operator side of the hosts' links"
  start_registry scale "${subnet}.1"
  trap 'stop_registry; opcount_down; hosts_down; cpu_groups_down; rm -rf "$work"' EXIT
  cpu_groups_up
  local cap=${SCALE_HOST_CPU:-0.09}
  local name=$reg_host/bench/k3s certs=(--cert-dir "$reg_certs")
  "$sealrs" --root "$store" -q push bench:1 "$name:1" "${certs[@]}" >/dev/null
  local size installer
  size=$("$sealrs" --root "$store" images --format json | python3 -c 'import json,sys; print(sum(i["size"] for i in json.load(sys.stdin)))')
  # The installer's layer, as the registry serves it: its annotation marks it.
  installer=$(curl -fs --cacert "$reg_certs/ca.crt" -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
    "https://$reg_host/v2/bench/k3s/manifests/1" | python3 -c '
import json, sys
print(sum(l["size"] for l in json.load(sys.stdin)["layers"] if "installer" in str(l.get("annotations", {}))))')
  echo "==> image $name:1: $size bytes, its installer layer $installer bytes"
  opcount_up "vs$x-*" "${reg_host##*:}"

  # Alternating, each route RUNS times for 4 and for 16 hosts; a registry run
  # starts from an empty store (the operator holds nothing of the image), and
  # `sealrs reset` puts hosts back as before (it removes the installer too).
  # First with every host sharing this machine's CPUs, then (rows *_own) with
  # each held to its own share, as in a fleet: 16 hosts then have 4 times the
  # CPU of 4 hosts, as real ones do.
  local i n root own
  for own in "" _own; do
    [ -z "$own" ] || cpu_cap "$cap"
    for i in $(seq 1 "$runs"); do
      for n in 4 16; do
        echo "==> run $i/$runs: $n hosts${own:+ of $cap cores each}, direct route (bench:1 in the local store)"
        scale_apply "direct_$n$own" "$store" bench:1 "$n"
        scale_reset "$store"
        echo "==> run $i/$runs: $n hosts${own:+ of $cap cores each}, registry route ($name:1, an empty store)"
        root=$work/op-$n-$i$own
        scale_apply "registry_$n$own" "$root" "$name:1" "$n" "${certs[@]}"
        if [ -z "$own" ] && [ "$n" = 16 ] && [ "$i" = "$runs" ]; then
          echo "==> 16 hosts holding the installer: registry-route upgrade to $name:2, one manifest changed"
          printf 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-1\ndata:\n  key: "value 1, changed"\n' > "$ctx/manifests/cm-1.yaml"
          "$sealrs" --root "$store" -q build -t bench:2 "$ctx" >/dev/null
          "$sealrs" --root "$store" -q push bench:2 "$name:2" "${certs[@]}" >/dev/null
          scale_apply registry_held "$root" "$name:2" 16 "${certs[@]}" --layers-from-registry
        fi
        scale_reset "$root"
        rm -rf "$root"
      done
    done
  done
  cpu_cap ""

  echo
  echo "scale benchmark: image $size bytes, installer layer $installer bytes, $runs run(s) each, medians."
  echo "The hosts share this machine's CPUs and disk with sealrs, the registry and other work: a host's"
  echo "unpacking (TLS, digests, decompression, writes) costs the same CPUs as the others', which real"
  echo "hosts would not; the CPU columns show where the time went. Rows *_own: each host held to $cap"
  echo "cores of its own (its cgroup's CPU quota), so that 16 hosts have 4x the CPU of 4, as a fleet has."
  echo "The layers column is the layer phase (its slowest host), MB/s what all hosts took in it together."
  printf '%-16s %9s %9s %9s %9s %9s %9s %7s %14s %12s %14s\n' "" "wall (s)" "RSS (MB)" \
    "CPU sealrs" "registry" "hosts" "layers" "MB/s" "bytes counted" "per host" "reported"
  local l h layers
  # shellcheck disable=SC2046
  for l in direct_4 registry_4 direct_16 registry_16 registry_held \
    direct_4_own registry_4_own direct_16_own registry_16_own; do
    h=${l#*_}; h=${h%%_*}; [ "$h" = held ] && h=16
    layers=$(median $(sent_col "$l" 7))
    printf '%-16s %9s %9s %9s %9s %9s %9s %7s %14s %12s %14s\n' "$l" "$(median $(col "$l" 2))" \
      "$(( $(maxof $(col "$l" 3)) / 1024 ))" "$(median $(sent_col "$l" 4))" \
      "$(median $(sent_col "$l" 5))" "$(median $(sent_col "$l" 6))" "$layers" \
      "$(python3 -c "import sys; t = float(sys.argv[1]); print(f'{$h * ($size - $installer) / t / 1e6:.0f}' if t > 0 and '$l' != 'registry_held' else '-')" "$layers")" \
      "$(median $(sent_col "$l" 2) | cut -d. -f1)" "$(( $(median $(sent_col "$l" 2) | cut -d. -f1) / h ))" \
      "$(median $(sent_col "$l" 3) | cut -d. -f1)"
  done
  echo
  # shellcheck disable=SC2046
  scale_targets "$size" "$installer" \
    "$(median $(sent_col registry_4 2))" "$(median $(sent_col registry_16 2))" "$(median $(sent_col registry_held 2))" \
    "$(median $(sent_col registry_4 3))" "$(median $(sent_col registry_16 3))" \
    "$(median $(col registry_4 2))" "$(median $(col registry_16 2))" \
    "$(median $(col direct_4 2))" "$(median $(col direct_16 2))" \
    "$(median $(sent_col registry_4 7))" "$(median $(sent_col registry_16 7))" \
    "$(median $(col registry_4_own 2))" "$(median $(col registry_16_own 2))" \
    "$(median $(col direct_4_own 2))" "$(median $(col direct_16_own 2))" "$cap"
  echo "each run's stderr: $logs"
}

# scale_targets SIZE INSTALLER COUNTED4 COUNTED16 COUNTED_HELD REPORTED4 REPORTED16
#   T_REGISTRY4 T_REGISTRY16 T_DIRECT4 T_DIRECT16 LAYERS4 LAYERS16 T_REGISTRY4_OWN
#   T_REGISTRY16_OWN T_DIRECT4_OWN T_DIRECT16_OWN CAP: issue 22's targets, met or
#   not, and the registry route's time split at its layer phase.
scale_targets() {
  python3 - "$@" <<'PY'
import sys
size, inst, c4, c16, held, r4, r16, tr4, tr16, td4, td16, l4, l16, to4, to16, tdo4, tdo16, cap = map(
    float, sys.argv[1:])
met = lambda ok: "met" if ok else "MISSED"
for n, counted, reported in ((4, c4, r4), (16, c16, r16)):
    print(f"registry, {n} hosts lacking the installer: layer bytes {reported / n:,.0f} per host = "
          f"{reported / n / inst:.3f} x the installer layer ({inst:,.0f}): {met(reported / n <= inst)} "
          f"(<= the installer layer per host); on the links {counted / n:,.0f} per host, the layer and "
          f"{(counted - reported) / n:,.0f} of SSH, TLS and TCP/IP")
print(f"registry, 16 hosts holding the installer (an upgrade of one manifest): {held:,.0f} bytes on "
      f"the links in all = {held / size:.4f} x the image: {met(held <= 1.2 * size)} (<= 1.2 x the image)")
for n, counted in ((4, c4), (16, c16)):
    print(f"registry, {n} hosts, judged from the first apply less {n} installer layers: "
          f"{counted - n * inst:,.0f} bytes = {(counted - n * inst) / size:.4f} x the image: "
          f"{met(counted - n * inst <= 1.2 * size)} (<= 1.2 x the image)")
print(f"time, registry route, each host {cap:g} cores of its own: 16 hosts {to16:.1f} s = "
      f"{to16 / to4:.2f} x 4 hosts' {to4:.1f} s: {met(to16 <= 2 * to4)} (<= 2x)")
print(f"time, direct route,   each host {cap:g} cores of its own: 16 hosts {tdo16:.1f} s = "
      f"{tdo16 / tdo4:.2f} x 4 hosts' {tdo4:.1f} s (for comparison: links here are not an uplink)")
print(f"time, registry route, all hosts sharing this machine's CPUs: 16 hosts {tr16:.1f} s = "
      f"{tr16 / tr4:.2f} x 4 hosts' {tr4:.1f} s: {met(tr16 <= 2 * tr4)} (<= 2x; 16 hosts unpack 4x the bytes on the same cores)")
print(f"time, direct route,   all hosts sharing this machine's CPUs: 16 hosts {td16:.1f} s = "
      f"{td16 / td4:.2f} x 4 hosts' {td4:.1f} s (for comparison)")
if l4 > 0 and l16 > 0:
    mbs = lambda n, t: n * (size - inst) / t / 1e6
    print(f"  registry route, the layer phase: 16 hosts {l16:.1f} s = {l16 / l4:.2f} x 4 hosts' {l4:.1f} s; "
          f"all hosts together took {mbs(4, l4):.0f} MB/s with 4, {mbs(16, l16):.0f} MB/s with 16 hosts"
          + (" (about the same rate: this machine, whose CPUs and disk every host shares, sets it)"
             if mbs(16, l16) < 1.5 * mbs(4, l4) else ""))
    print(f"  registry route, the rest (image check, connect, installer, install, join): "
          f"16 hosts {tr16 - l16:.1f} s = {(tr16 - l16) / (tr4 - l4):.2f} x 4 hosts' {tr4 - l4:.1f} s")
PY
}

case $what in
  build) bench_build ;;
  push) bench_push ;;
  examples) bench_examples ;;
  run) bench_run ;;
  scale) bench_scale ;;
  *) echo "usage: $0 build|push|run|scale|examples" >&2; exit 2 ;;
esac
