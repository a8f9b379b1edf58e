//! Integration tests: the real `sealrs` binary, in a fresh temp directory each,
//! checked with real peer tools (skopeo, umoci, buildah).

mod common; // helpers, no tests: a temp dir with its own SEALRS_ROOT, running the binary
mod hosts; // helpers, no tests: real Debian test hosts booted with systemd-nspawn

mod backup; // sealrs backup/restore on real hosts: real etcd under kubeadm, k3s SQLite, bad files refused
mod bad_input; // bad input to build and store commands: a named error, the store untouched
mod build; // `sealrs build`: what lands in the store, as skopeo and umoci see it
mod buildah_diff; // the image config we write equals buildah's for each tests/data/kubefiles case
mod certs; // sealrs cert check and cert renew on real hosts: real x509 certificates the stand-ins make, renewed master by master
mod cluster_docs; // run --help lists each runtime's -e keys (each changes its plans); gen writes a Clusterfile run -f reads
mod day2; // a cluster's second day: reset keeps the operator's store, locks, confirmation, dry runs, membership, digests
mod dead_hosts; // sealrs status, delete --force of a host that is down, masters replaced one at a time
mod fleet; // --max-parallel refused when no positive number; node joins failing within run/add --max-failed, reported, rerun
mod fleet_progress; // on a terminal: a failed host's line says so, the count line turns, a fleet gets few lines
mod harvest; // images harvested into a rootfs from a real registry, and by `build`
mod hook_logs; // a hook's and an application's whole output kept in 0600 logs whose paths the run prints; the last 20 runs kept
mod hub; // the in-cluster registry sealos.hub:5000 on real hosts: real docker-registry and containerd, k3s registries.yaml
mod image_hooks; // an image's check/init/clean labels run on a real host, values byte for byte
mod installer; // `sealrs installer` on a temp host root, and the installer layer build embeds
mod integrity; // what the installer keeps on a host: complete under its name when killed, synced first, leftovers removed, damage named by verify and repaired
mod interrupt; // an operator killed or interrupted during a first run: saved before hosts change, waits, converges on a rerun
mod k0s_hosts; // k0s (stand-in) on real hosts: etcd leave, tokens, endpoint, kubectl, bad input
mod labels; // one label reading: build, inspect and run --dry-run agree on runtime and version
mod layout; // rootfs layouts at build: examples hold theirs, broken ones refused, inspect
mod lifecycle; // add, delete, upgrade and reset of a saved cluster on real hosts
mod messages; // what people read: singular counts, one unit for sizes, short digests, said once, secrets masked
mod readme; // README.md, the examples' READMEs and docs/*.md: their commands run as written
mod registry; // push, pull and login through the library against a real registry
mod registry_cli; // the binary against a real registry: push, pull, remote FROM, login
mod registry_hosts; // run with an image only in a registry: checked with its manifest and config first, an image in neither place named
mod registry_mirrors; // pull-through mirrors from registries.conf: sealrs pull and skopeo through a real cache, a mirror down or serving wrong bytes passed over
mod registry_retries; // transient failures through the binary: 429 with Retry-After waited for, a reset retried, a bound on both
mod registry_server; // helpers, no tests: a real docker-registry (TLS, auth), a counting proxy
mod results; // --format json of run (and add, delete, upgrade, reset): per host changed, failed step and message, bytes sent
mod robustness; // concurrent and killed builds leave a readable store
mod rollback; // an upgrade failing on a host returns it to the image before; a killed upgrade is never undone by an older image
mod run; // `sealrs run --dry-run`: each runtime's plans, no host touched
mod run_apps; // `sealrs run ROOTFS APP...`: application images on the first master
mod run_hosts; // `sealrs run` on real hosts: kubeadm, k0s, hosts down, failures, Clusterfiles
mod sealos_apps; // application and patch images built the sealos way (helm, calico with HELM_OPTS, cni-plugins), run as sealos runs them
mod sealos_files; // sealos multi-document Clusterfiles (Config, kubeadm documents) and *.tmpl rendered per host: dry run, hosts, bad input
mod secrets; // --env-file, and no token or env value in any argv on hosts during a run
mod store_cmds; // images, inspect, tag, rmi, prune, save, load, fsck, checked with skopeo
mod transport; // Local and Ssh against this machine and real hosts: bytes, keys, logins
