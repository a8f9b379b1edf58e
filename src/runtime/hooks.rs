//! Lifecycle hooks that a rootfs image carries as labels, run as sealos runs them.
//!
//! sealos (labring/sealos v5, `lifecycle/pkg/constants/bash.go` and
//! `lifecycle/pkg/bootstrap/{bootstrap,registry,cri}.go`) reads seven labels
//! of the cluster's images: `check`, `init-registry`, `init-cri`, `init`,
//! `clean`, `clean-registry`, `clean-cri`. It runs each as the shell command
//! `bash LABEL` in the rootfs' `scripts/` (`LABEL init="init-cri.sh
//! \$registryDomain && bash init.sh"` runs `init-cri.sh` with bash), and when a
//! label is absent it runs `bash check.sh`, `bash init-registry.sh`, `bash
//! init.sh`, `bash clean.sh` and `bash clean-registry.sh` (no default for the
//! two CRI hooks). Its order: `check` on every host first; then
//! `init-registry` on the registry host, `init-cri`, and `init`; `clean-registry`,
//! `clean-cri` and `clean` on the way out. The image's files are made
//! executable before (`rootfs_default.go`, `chmod -R 0755`). We do the same,
//! as plan steps:
//!
//! - The env is the image's `ENV` overlaid by the cluster env (and the host's
//!   `hosts[].env`), the process environment of the hook, so
//!   `$registryDomain` is expanded by the host's shell from it: the label text
//!   and the env values stay data all the way to the host.
//! - `sealrs.io/<hook>` labels win over the sealos names and run as `bash -c
//!   TEXT` (sealrs's own form); set to blank, any label switches the hook off.
//! - Default hooks only for an image with sealos labels (`sealos.io.*`,
//!   `apps.sealos.io/*`), and only where the script is there: sealos fails on
//!   a missing one, sealrs's images never had that convention.
//! - The scripts are made executable (`scripts/` only) by replacing each file
//!   that is not with an executable copy: the rootfs shares inodes with the
//!   layer directories, which must keep the layer's bytes and modes.
//! - `check` only observes: it always runs, never counts as a change, and a
//!   failure stops the plan with its output.
//! - An init hook runs once per (rootfs, text, env): a marker named by their
//!   hash records it, so a rerun changes nothing, and a new image (a new
//!   rootfs digest) or a changed env runs it again, as sealos does on upgrade.
//!   `init-registry` and `clean-registry` run on the first master, the host
//!   sealos serves its registry from.
//! - The clean hooks run only on a host where a plan got as far as the hooks
//!   (the hook marker directory, made just before the init hooks, says so);
//!   uninstall removes the markers afterwards, so a second uninstall has
//!   nothing to do.
//!
//! Each host runs its own hooks in its plan: `check` on a node runs when the
//! node joins, not before the first master's `init` as in sealos.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::HostContext;
pub use crate::host_paths::HOOK_MARKER_DIR;
use crate::plan::{Check, FileContent, Plan, Step};

/// The hooks, in the order sealos runs them (init side, then clean side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HookKind {
    Check,
    InitRegistry,
    InitCri,
    Init,
    CleanRegistry,
    CleanCri,
    Clean,
}

impl HookKind {
    pub const ALL: [HookKind; 7] = [
        HookKind::Check,
        HookKind::InitRegistry,
        HookKind::InitCri,
        HookKind::Init,
        HookKind::CleanRegistry,
        HookKind::CleanCri,
        HookKind::Clean,
    ];

    /// The sealos label, and the step id's suffix.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Check => "check",
            HookKind::InitRegistry => "init-registry",
            HookKind::InitCri => "init-cri",
            HookKind::Init => "init",
            HookKind::CleanRegistry => "clean-registry",
            HookKind::CleanCri => "clean-cri",
            HookKind::Clean => "clean",
        }
    }

    /// Label keys, the one that wins first: ours (`bash -c`), then sealos's.
    pub fn label_keys(self) -> [String; 2] {
        [
            format!("sealrs.io/{}", self.name()),
            self.name().to_string(),
        ]
    }

    /// sealos's script when the label is absent (`bash NAME.sh`).
    fn default_script(self) -> Option<String> {
        match self {
            HookKind::InitCri | HookKind::CleanCri => None,
            other => Some(format!("{}.sh", other.name())),
        }
    }

    /// Hooks that run on the registry host only (the first master).
    fn registry_only(self) -> bool {
        matches!(self, HookKind::InitRegistry | HookKind::CleanRegistry)
    }
}

/// One hook: what it runs, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// `sealrs.io/<hook>`: bash runs the text.
    Ours(String),
    /// A sealos label: the shell command `bash TEXT`.
    Sealos(String),
    /// sealos's default script, run when it is there (from the rootfs,
    /// which has no `scripts/` when the image carries no scripts).
    Default(String),
}

impl Hook {
    /// The bash text the hook step runs (`bash -c TEXT`).
    pub fn script(&self) -> String {
        match self {
            Hook::Ours(text) => text.clone(),
            Hook::Sealos(text) => format!("bash {text}"),
            Hook::Default(script) => {
                format!("if [ -e scripts/{script} ]; then cd scripts && bash {script}; fi")
            }
        }
    }
}

/// The hooks an image's labels declare.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    hooks: BTreeMap<HookKind, Hook>,
}

impl Hooks {
    /// Reads the hook labels (see the module docs for which wins and the
    /// defaults); a blank text means no hook.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Hooks {
        let sealos = labels
            .keys()
            .any(|k| k.starts_with("sealos.io.") || k.starts_with("apps.sealos.io/"));
        let mut hooks = BTreeMap::new();
        for kind in HookKind::ALL {
            let [ours, theirs] = kind.label_keys();
            let hook = match (labels.get(&ours), labels.get(&theirs)) {
                (Some(text), _) => Some(Hook::Ours(text.clone())),
                (None, Some(text)) => Some(Hook::Sealos(text.clone())),
                (None, None) if sealos => kind.default_script().map(Hook::Default),
                (None, None) => None,
            };
            match hook {
                Some(Hook::Ours(t) | Hook::Sealos(t)) if t.trim().is_empty() => {}
                Some(hook) => {
                    hooks.insert(kind, hook);
                }
                None => {}
            }
        }
        Hooks { hooks }
    }

    pub fn get(&self, kind: HookKind) -> Option<&Hook> {
        self.hooks.get(&kind)
    }

    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// The hooks of `kinds` that run on `ctx`'s host, in that order.
    fn on(&self, ctx: &HostContext, kinds: &[HookKind]) -> Vec<(HookKind, &Hook)> {
        kinds
            .iter()
            .filter(|k| !k.registry_only() || ctx.is_first_master())
            .filter_map(|k| self.get(*k).map(|h| (*k, h)))
            .collect()
    }
}

/// The environment hooks get: the image's `ENV`, overridden by the cluster env.
pub fn hook_env(ctx: &HostContext) -> Vec<(String, String)> {
    let mut env: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in ctx.image.env.iter().chain(&ctx.env) {
        env.insert(k, v);
    }
    env.into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `<MARKER>/<kind>-<sha256>` of the rootfs, the hook's text and the env,
/// each length-prefixed so that no two inputs hash alike.
pub fn init_marker(kind: HookKind, rootfs: &str, text: &str, env: &[(String, String)]) -> String {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    field(rootfs.as_bytes());
    field(text.as_bytes());
    for (k, v) in env {
        field(k.as_bytes());
        field(v.as_bytes());
    }
    format!(
        "{HOOK_MARKER_DIR}/{}-{}",
        kind.name(),
        hex::encode(h.finalize())
    )
}

fn hook_step(ctx: &HostContext, kind: HookKind, hook: &Hook, check: Check) -> Step {
    Step::run(
        &format!("hook-{}", kind.name()),
        format!("run the image's {} hook (label)", kind.name()),
        &["bash", "-c", &hook.script()],
        check,
    )
    .with_env(hook_env(ctx))
    .with_cwd(&match hook {
        Hook::Default(_) => ctx.rootfs.clone(),
        _ => format!("{}/scripts", ctx.rootfs),
    })
}

/// Makes the rootfs' scripts executable (sealos runs them so) by replacing
/// each one that is not with an executable copy. It counts as no change (a
/// check runs no query in the rootfs): it only finishes what the image meant.
fn scripts_executable(ctx: &HostContext) -> Step {
    let fix = r#"[ ! -d scripts ] || find scripts -type f ! -perm -u+x -exec sh -c 'for f; do cp -p -- "$f" "$f.sealrs-x" && chmod 0755 -- "$f.sealrs-x" && mv -f -- "$f.sealrs-x" "$f" || exit 1; done' sh {} +"#;
    Step::run(
        "hook-scripts",
        "make the image's scripts executable".to_string(),
        &["sh", "-c", fix],
        Check::ReadOnly,
    )
    .with_cwd(&ctx.rootfs)
}

/// Pushes the image's `check` and init hooks: what install, join and upgrade
/// plans start with.
pub(super) fn push_setup(ctx: &HostContext, plan: &mut Plan) {
    let hooks = ctx.image.hooks();
    if hooks.is_empty() {
        return;
    }
    plan.push(scripts_executable(ctx));
    if let Some(hook) = hooks.get(HookKind::Check) {
        plan.push(hook_step(ctx, HookKind::Check, hook, Check::ReadOnly));
    }
    let inits = [HookKind::InitRegistry, HookKind::InitCri, HookKind::Init];
    let cleans = [HookKind::CleanRegistry, HookKind::CleanCri, HookKind::Clean];
    if hooks.on(ctx, &inits).is_empty() && hooks.on(ctx, &cleans).is_empty() {
        return;
    }
    // From here on the host may hold what the clean hooks undo.
    plan.push(
        Step::ensure_dir("hook-markers", HOOK_MARKER_DIR, 0o700)
            .titled("record that the image's hooks ran here"),
    );
    for (kind, hook) in hooks.on(ctx, &inits) {
        let script = hook.script();
        let marker = init_marker(kind, &ctx.rootfs, &script, &hook_env(ctx));
        plan.push(hook_step(
            ctx,
            kind,
            hook,
            Check::Creates {
                path: marker.clone(),
            },
        ));
        plan.push(
            Step::write_file(
                &format!("hook-{}-marker", kind.name()),
                &marker,
                FileContent::text(format!("{script}\n")),
                0o600,
            )
            .titled(format!("record that this {} hook ran", kind.name())),
        );
    }
}

/// Pushes the image's clean hooks: uninstall plans call it after the services
/// stop and before files are removed, and remove [`HOOK_MARKER_DIR`] later.
pub(super) fn push_clean(ctx: &HostContext, plan: &mut Plan) {
    let hooks = ctx.image.hooks();
    let cleans = [HookKind::CleanRegistry, HookKind::CleanCri, HookKind::Clean];
    for (kind, hook) in hooks.on(ctx, &cleans) {
        plan.push(hook_step(
            ctx,
            kind,
            hook,
            Check::IfExists {
                path: HOOK_MARKER_DIR.into(),
            },
        ));
    }
}
