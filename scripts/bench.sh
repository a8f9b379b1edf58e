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
#   scripts/bench.sh examples  builds Kubefile-examples/{k3s,k0s,kubeadm} whose binaries
#                              were fetched (scripts/fetch-RUNTIME.sh): size, time, RSS
#
# Needs root, buildah, skopeo, docker-registry, zstd and GNU time (scripts/test.sh installs
# all but zstd: apt-get install zstd).
# `run` also needs the test hosts' base (scripts/test-hosts-base.sh) and rsync on
# this machine (apt-get install rsync); it copies rsync and its libraries into
# the peer hosts, whose base has none.
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

# start_registry NAME: an empty docker-registry on 127.0.0.1; sets $reg_host, $reg_pid.
start_registry() {
  local dir=$work/reg-$1
  mkdir -p "$dir/storage"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  cat > "$dir/config.yml" <<YML
version: 0.1
log: { level: error }
storage:
  filesystem: { rootdirectory: $dir/storage }
  delete: { enabled: true }
http: { addr: 127.0.0.1:$port }
YML
  /usr/bin/docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  reg_pid=$!
  reg_host=127.0.0.1:$port
  for _ in $(seq 1 100); do
    curl -fs "http://$reg_host/v2/" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "registry did not start"; cat "$dir/log"; exit 1
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

bench_run() {
  command -v rsync >/dev/null || { echo "rsync is needed on this machine: apt-get install rsync"; exit 1; }
  local ctx=$work/ctx
  echo "==> making the k3s-like context in $ctx"
  make_k3s_context "$ctx"
  # The 70 MB blob stays in the image, but not as the binary that runs: the
  # k3s stand-in does (the real k3s cannot be downloaded here).
  mv "$ctx/bin/k3s" "$ctx/bin/k3s-data"
  install -m 755 tests/fixtures/standins/k3s "$ctx/bin/k3s"
  ln -s k3s "$ctx/bin/kubectl"
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

case $what in
  build) bench_build ;;
  push) bench_push ;;
  examples) bench_examples ;;
  run) bench_run ;;
  *) echo "usage: $0 build|push|run|examples" >&2; exit 2 ;;
esac
