//! The dry-run form of a plan: what a person reads before anything changes.
//!
//! Values are shown exactly. An argv element or env value that is not plainly
//! safe is single-quoted the POSIX way (`'` becomes `'\''`), and control
//! characters use the `$'\n'` form, so `$`, backquotes and spaces appear as
//! they are, never expanded, and two different values never print the same.

use std::fmt::Write as _;

use super::{Action, Check, FileContent, Plan};
use crate::shell::sh_quote;

/// Characters that never need quoting.
fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c)
}

/// One value, quoted so that a POSIX shell would read back exactly it.
pub fn quote(value: &str) -> String {
    if !value.is_empty() && value.chars().all(is_plain) {
        return value.to_string();
    }
    if value.chars().any(|c| c.is_control()) {
        // ANSI-C form: everything escaped, nothing left to interpretation.
        let mut out = String::from("$'");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => {
                    let _ = write!(out, "\\u{:04x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('\'');
        return out;
    }
    sh_quote(value)
}

/// `KEY=value` with the value quoted.
pub fn quote_env(key: &str, value: &str) -> String {
    format!("{key}={}", quote(value))
}

fn mode(m: u32) -> String {
    format!("{m:04o}")
}

fn size(n: usize) -> String {
    if n == 1 {
        "1 byte".to_string()
    } else {
        format!("{n} bytes")
    }
}

fn check_text(check: &Check) -> String {
    match check {
        Check::FileMatches => "skipped when content and mode already match".into(),
        Check::DirExists => "skipped when the directory exists".into(),
        Check::LinkMatches => "skipped when the link already points there".into(),
        Check::Absent => "skipped when already absent".into(),
        Check::Creates { path } => format!("skipped when {path} exists"),
        Check::IfExists { path } => format!("runs only when {path} exists"),
        Check::FileContains { path, text } => {
            format!("skipped when {path} contains {}", quote(text))
        }
        Check::UnitEnabled { unit } => format!("skipped when {unit} is enabled"),
        Check::UnitDisabled { unit } => format!("skipped when {unit} is disabled"),
        Check::UnitActive { unit } => format!("skipped when {unit} is active"),
        Check::UnitInactive { unit } => format!("skipped when {unit} is inactive"),
        Check::IfChanged { steps, unit_active } => {
            let mut s = format!("runs only when {} changed", steps.join(", "));
            if let Some(u) = unit_active {
                let _ = write!(s, " and {u} is active");
            }
            s
        }
        Check::IfOutput { argv } => format!(
            "runs only when `{}` prints something",
            argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        ),
        Check::IfExistsAndFails {
            path,
            unless_exists,
            argv,
        } => format!(
            "runs only when {path} exists{} and `{}` fails",
            unless_exists
                .as_ref()
                .map(|m| format!(", {m} does not"))
                .unwrap_or_default(),
            argv.iter().map(|a| quote(a)).collect::<Vec<_>>().join(" ")
        ),
        Check::ReadOnly => "read-only, always runs".into(),
    }
}

impl Plan {
    /// Every step, readable, with argv and env values shown exactly.
    /// Secrets (sensitive files, redacted argv elements) show only their size.
    pub fn render_dry_run(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "plan: {} {} on {} ({})",
            self.runtime,
            self.action,
            self.host,
            crate::progress::text::count(self.steps.len(), "step")
        );
        if !self.env.is_empty() {
            let _ = writeln!(out, "env (for templates):");
            for (k, v) in &self.env {
                let _ = writeln!(out, "  {}", quote_env(k, v));
            }
        }
        for (n, step) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "{:>2}. [{}] {}", n + 1, step.id, step.title);
            for line in action_lines(&step.action) {
                let _ = writeln!(out, "      {line}");
            }
            let _ = writeln!(out, "      idempotent: {}", check_text(&step.check));
        }
        out
    }
}

fn action_lines(action: &Action) -> Vec<String> {
    match action {
        Action::PlaceRootfs { role, .. } => vec![format!("place rootfs: layout for {role}")],
        Action::RemoveRootfs { role } => vec![format!("remove rootfs: layout for {role}")],
        Action::WriteFile {
            path,
            content,
            mode: m,
            sensitive,
            ..
        } => {
            let mut lines = Vec::new();
            match content {
                FileContent::Bytes { bytes } => {
                    lines.push(format!(
                        "file: {path} mode {} ({})",
                        mode(*m),
                        size(bytes.len())
                    ));
                    if !*sensitive {
                        match std::str::from_utf8(bytes) {
                            Ok(text) => {
                                lines.extend(text.lines().map(|l| format!("| {l}")));
                            }
                            Err(_) => lines.push("(binary content)".into()),
                        }
                    } else {
                        lines.push("(secret content not shown)".into());
                    }
                }
                FileContent::Template { template } => {
                    lines.push(format!(
                        "file: {path} mode {} (template, {})",
                        mode(*m),
                        size(template.len())
                    ));
                    if !*sensitive {
                        lines.extend(template.lines().map(|l| format!("| {l}")));
                    }
                }
                FileContent::YamlMerge {
                    base,
                    base_is_template,
                    overlay,
                    keep,
                } => {
                    let base = match base {
                        Some(b) if *base_is_template => format!("{b} (rendered)"),
                        Some(b) => b.clone(),
                        None => "nothing".into(),
                    };
                    let kept = keep
                        .as_ref()
                        .map(|keys| format!(" with only {} keys kept,", keys.len()))
                        .unwrap_or_default();
                    lines.push(format!(
                        "file: {path} mode {} (YAML: {base}{kept} merged with {})",
                        mode(*m),
                        size(overlay.len())
                    ));
                    if !*sensitive {
                        lines.extend(overlay.lines().map(|l| format!("| {l}")));
                    }
                }
            }
            lines
        }
        Action::EnsureDir { path, mode: m } => vec![format!("dir: {path} mode {}", mode(*m))],
        Action::Run {
            argv,
            env,
            cwd,
            capture,
            redact,
            allow_failure,
        } => {
            let shown: Vec<String> = argv
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    if redact.contains(&i) {
                        format!("<redacted {}>", size(a.len()))
                    } else {
                        quote(a)
                    }
                })
                .collect();
            let mut lines = vec![format!("run: {}", shown.join(" "))];
            for (k, v) in env {
                lines.push(format!("env: {}", quote_env(k, v)));
            }
            if let Some(dir) = cwd {
                lines.push(format!("cwd: {}", quote(dir)));
            }
            if let Some(c) = capture {
                lines.push(format!("captures stdout as {}", capture_name(c)));
            }
            if *allow_failure {
                lines.push("a failure is reported and ignored".into());
            }
            lines
        }
        Action::Symlink { target, link } => vec![format!("symlink: {link} -> {target}")],
        Action::Remove { path, recursive } => vec![format!(
            "remove: {path}{}",
            if *recursive { " (recursive)" } else { "" }
        )],
        Action::RemoveLink { link, target } => {
            vec![format!("remove link: {link} if it points at {target}")]
        }
        Action::InstallUnit { name, content } => {
            let mut lines = vec![format!(
                "unit: /etc/systemd/system/{name} ({}), daemon-reload when changed",
                size(content.len())
            )];
            lines.extend(content.lines().map(|l| format!("| {l}")));
            lines
        }
        Action::DaemonReload => vec!["run: systemctl daemon-reload".into()],
        Action::Service { unit, op } => {
            vec![format!("run: systemctl {} {unit}", op.args().join(" "))]
        }
        Action::WaitFile { path, timeout_secs } => {
            vec![format!("wait: {path} exists (up to {timeout_secs}s)")]
        }
        Action::WaitPort {
            host,
            port,
            timeout_secs,
        } => vec![format!("wait: tcp {host}:{port} (up to {timeout_secs}s)")],
        Action::ReadFile { path, capture } => {
            vec![format!("read: {path} as {}", capture_name(capture))]
        }
        Action::KillProcessTrees { under, name_prefix } => vec![format!(
            "kill: processes running {under}/**/{name_prefix}*, with their children (SIGKILL)"
        )],
        Action::UnmountUnder { prefix } => vec![format!(
            "unmount: every mount point starting with {}, deepest first, then remove it",
            quote(prefix)
        )],
        Action::DeleteLinks { names } => vec![format!(
            "run: ip link delete, for each of {} present (and what is enslaved to it)",
            names.join(", ")
        )],
        Action::StripIptables {
            tools,
            contains,
            contains_ignore_case,
        } => tools
            .iter()
            .map(|tool| {
                let mut drop: Vec<String> = contains.iter().map(|c| quote(c)).collect();
                drop.extend(
                    contains_ignore_case
                        .iter()
                        .map(|c| format!("{} (any case)", quote(c))),
                );
                format!(
                    "run: {tool}-save, without the lines containing {}, into {tool}-restore",
                    drop.join(" or ")
                )
            })
            .collect(),
    }
}

fn capture_name(c: &super::Capture) -> String {
    if c.sensitive {
        format!("{} (secret)", c.key)
    } else {
        c.key.clone()
    }
}
