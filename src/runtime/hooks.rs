//! Lifecycle hooks that a rootfs image carries as labels, run as sealos runs them.
//!
//! sealos rootfs images say what to run on each host in three labels, e.g.
//! `LABEL init="init-cri.sh \$registryDomain && bash init.sh" clean="bash clean.sh"
//! check="check.sh"`. sealos runs each with bash from the rootfs' `scripts/`
//! directory with the cluster env exported, so `$registryDomain` is expanded
//! by the host's shell from the env: the label text and the env values stay
//! data all the way to the host. We do the same, as plan steps:
//!
//! - `check`, then `init`, before the runtime's own install, join or upgrade
//!   steps; `clean` on uninstall, after the services stop and before files
//!   are removed. `sealrs.io/check`, `sealrs.io/init` and `sealrs.io/clean`
//!   win over the sealos names; set to blank, they switch an inherited hook off.
//! - Each runs as the argv `["bash", "-c", LABEL]`, cwd `<rootfs>/scripts`,
//!   with the image's `ENV` overlaid by the cluster env as its environment.
//! - `check` only observes: it always runs, never counts as a change, and a
//!   failure stops the plan with its output.
//! - `init` runs once per (rootfs, label text, env): a marker named by their
//!   hash records it, so a rerun changes nothing, and a new image (a new
//!   rootfs digest) or a changed env runs it again, as sealos does on upgrade.
//! - `clean` runs only on a host where a plan got as far as the hooks (the
//!   hook marker directory, made just before `init`, says so); uninstall
//!   removes the markers afterwards, so a second uninstall has nothing to do.

use std::collections::BTreeMap;

use sha2::{Digest as _, Sha256};

use super::HostContext;
pub use crate::host_paths::HOOK_MARKER_DIR;
use crate::plan::{Check, FileContent, Plan, Step};

/// The three hooks, with the label keys that carry each (ours first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    Check,
    Init,
    Clean,
}

impl HookKind {
    pub fn name(self) -> &'static str {
        match self {
            HookKind::Check => "check",
            HookKind::Init => "init",
            HookKind::Clean => "clean",
        }
    }

    /// Label keys, the one that wins first.
    pub fn label_keys(self) -> [&'static str; 2] {
        match self {
            HookKind::Check => ["sealrs.io/check", "check"],
            HookKind::Init => ["sealrs.io/init", "init"],
            HookKind::Clean => ["sealrs.io/clean", "clean"],
        }
    }
}

/// The hooks an image's labels declare (the bash text of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hooks {
    pub check: Option<String>,
    pub init: Option<String>,
    pub clean: Option<String>,
}

impl Hooks {
    /// Reads the hook labels; the first key of [`HookKind::label_keys`] that is
    /// set decides, and a blank text means no hook.
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Hooks {
        let get = |kind: HookKind| {
            kind.label_keys()
                .iter()
                .find_map(|k| labels.get(*k))
                .filter(|text| !text.trim().is_empty())
                .cloned()
        };
        Hooks {
            check: get(HookKind::Check),
            init: get(HookKind::Init),
            clean: get(HookKind::Clean),
        }
    }

    pub fn get(&self, kind: HookKind) -> Option<&str> {
        match kind {
            HookKind::Check => self.check.as_deref(),
            HookKind::Init => self.init.as_deref(),
            HookKind::Clean => self.clean.as_deref(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.check.is_none() && self.init.is_none() && self.clean.is_none()
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

/// `<MARKER>/init-<sha256>` of the rootfs, the label text and the env, each
/// length-prefixed so that no two inputs hash alike.
pub fn init_marker(rootfs: &str, text: &str, env: &[(String, String)]) -> String {
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
    format!("{HOOK_MARKER_DIR}/init-{}", hex::encode(h.finalize()))
}

fn hook_step(ctx: &HostContext, kind: HookKind, text: &str, check: Check) -> Step {
    Step::run(
        &format!("hook-{}", kind.name()),
        format!("run the image's {} hook (label)", kind.name()),
        &["bash", "-c", text],
        check,
    )
    .with_env(hook_env(ctx))
    .with_cwd(&format!("{}/scripts", ctx.rootfs))
}

/// Pushes the image's `check` and `init` hooks: what install, join and upgrade
/// plans start with.
pub(super) fn push_setup(ctx: &HostContext, plan: &mut Plan) {
    let hooks = ctx.image.hooks();
    if let Some(text) = &hooks.check {
        plan.push(hook_step(ctx, HookKind::Check, text, Check::ReadOnly));
    }
    if hooks.init.is_none() && hooks.clean.is_none() {
        return;
    }
    // From here on the host may hold what `clean` undoes.
    plan.push(
        Step::ensure_dir("hook-markers", HOOK_MARKER_DIR, 0o700)
            .titled("record that the image's hooks ran here"),
    );
    if let Some(text) = &hooks.init {
        let marker = init_marker(&ctx.rootfs, text, &hook_env(ctx));
        plan.push(hook_step(
            ctx,
            HookKind::Init,
            text,
            Check::Creates {
                path: marker.clone(),
            },
        ));
        plan.push(
            Step::write_file(
                "hook-init-marker",
                &marker,
                FileContent::text(format!("{text}\n")),
                0o600,
            )
            .titled("record that this init hook ran"),
        );
    }
}

/// Pushes the image's `clean` hook: uninstall plans call it after the services
/// stop and before files are removed, and remove [`MARKER_DIR`] later.
pub(super) fn push_clean(ctx: &HostContext, plan: &mut Plan) {
    let hooks = ctx.image.hooks();
    if let Some(text) = &hooks.clean {
        plan.push(hook_step(
            ctx,
            HookKind::Clean,
            text,
            Check::IfExists {
                path: HOOK_MARKER_DIR.into(),
            },
        ));
    }
}
