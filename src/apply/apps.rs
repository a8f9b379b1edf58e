//! Phase "apply applications": the images after the rootfs one in `sealrs run ROOTFS
//! APP...`, applied on the first master once the cluster is up.
//!
//! For each application image, in order: its layer blobs go to the first
//! master's content-addressed cache (the same cache and the same
//! "sent once" rule as the rootfs image's), the rootfs installer unpacks them
//! under `/var/lib/sealrs-host/apps/<digest-hex>/`, and the image's command runs on
//! the first master in that directory with the cluster env as its process
//! environment. Rerunning applies again (`kubectl apply` is idempotent); the
//! blobs are not sent again.
//!
//! # The command, and how `$(VAR)` values reach it
//!
//! - ENTRYPOINT set: exec form. argv = ENTRYPOINT ++ CMD; in each word,
//!   `$(NAME)` for a NAME of the env is replaced by its value. No shell ever
//!   sees the words (a fixed `cd` wrapper `exec`s them as argv), so the value
//!   arrives byte for byte.
//! - No ENTRYPOINT: sealos form. Each CMD element is a shell command line
//!   (`kubectl apply -n $(NAMESPACE) -f manifests/`), run with `sh -c` one
//!   after the other, stopping at the first failure. Before that, every
//!   `$(NAME)` whose NAME is in the env is rewritten to a *parameter
//!   expansion* of that variable: `"${NAME}"` outside quotes, `${NAME}` inside
//!   double quotes, `'"${NAME}"'` inside single quotes. The shell then expands
//!   the variable once, as data: the value is never parsed as shell text, so
//!   `$`, backticks, quotes and spaces in it stay what they are, and it is one
//!   word. `$(NAME)` for a name that is not in the env is left alone (it is a
//!   command substitution the image's author wrote).
//!
//! The env is the image's `ENV` (defaults, without `PATH`, so the host's
//! `PATH` finds `kubectl`) overridden by the cluster's env (`-e K=V`). It is
//! the process environment of the command: the transport sends it on stdin,
//! never in an argv or a command string.

use std::collections::BTreeMap;

use super::context::RunContext;
use super::distribute::{deliver, direct_server, on_host, Unpack};
use super::image::AppliedImage;
use super::ApplyError;
use crate::cluster::{Cluster, Host, InstalledImage};
use crate::host_paths::HOST_DIR;
use crate::store::Store;
use crate::transport::Transport;

/// Where an application image's rootfs is unpacked on the first master.
pub fn host_app_dir(image: &AppliedImage) -> String {
    format!("{HOST_DIR}/apps/{}", image.hex())
}

/// What an application image runs, resolved from its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppCommand {
    /// Each element one command to run, in order.
    pub argvs: Vec<Vec<String>>,
    /// The process environment.
    pub env: Vec<(String, String)>,
}

/// Applies `apps` (the images after the rootfs one) on the cluster's first
/// master, in order; stops at the first that fails, naming the image, the
/// host, the exit code and the last lines of its output.
pub(super) fn apply_apps(ctx: &mut RunContext, cluster: &mut Cluster) -> Result<(), ApplyError> {
    let (store, progress, rootfs, apps) = (ctx.store, ctx.progress, &ctx.image, &ctx.apps);
    if apps.is_empty() {
        return Ok(());
    }
    let first = cluster.first_master().ok_or(ApplyError::NoMaster)?.clone();
    let transport = ctx.connection(&first)?;
    let installer = rootfs.installer_on_host()?;
    let server = direct_server([transport], progress);
    let mut sent_to_first = 0;
    for app in apps {
        let command = app_command(store, app, &cluster.env)?;
        progress.message(&format!(
            "{}: sending application image {}",
            first.key(),
            app.name
        ));
        let dir = host_app_dir(app);
        let sent = deliver(
            store,
            transport,
            app,
            Unpack {
                installer: &installer,
                dest: &dir,
                server: server.as_ref(),
            },
            on_host(transport, app, &dir)?,
            progress,
        )?;
        sent_to_first += sent;
        super::hub::merge_app_tree(transport, &first, &dir)?;

        for argv in &command.argvs {
            progress.message(&format!(
                "{}: application {}: running {}",
                first.key(),
                app.name,
                argv.join(" ")
            ));
            let output = run_app_step(transport, &first, app, &in_dir(&dir, argv), &command.env)?;
            let tail = output.tail(5);
            progress.message(&format!(
                "{}: application {} applied ({}){}",
                first.key(),
                app.name,
                output.status_text(),
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(":\n{tail}")
                }
            ));
        }
        if command.argvs.is_empty() {
            progress.message(&format!(
                "{}: application {} unpacked in {dir}; it has no CMD or ENTRYPOINT to run",
                first.key(),
                app.name
            ));
        }
        record_app(cluster, &first, app);
    }
    *ctx.report.bytes_sent.entry(first.key()).or_default() += sent_to_first;
    Ok(())
}

/// `argv` run in `dir`: a fixed wrapper changes directory and `exec`s the
/// words it got as arguments (the transport quotes each one).
fn in_dir(dir: &str, argv: &[String]) -> Vec<String> {
    let mut out = vec![
        "sh".to_string(),
        "-c".to_string(),
        r#"cd -- "$1" || exit 1; shift; exec "$@""#.to_string(),
        "sealrs-app".to_string(),
        dir.to_string(),
    ];
    out.extend(argv.iter().cloned());
    out
}

fn run_app_step(
    transport: &dyn Transport,
    host: &Host,
    app: &AppliedImage,
    argv: &[String],
    env: &[(String, String)],
) -> Result<crate::transport::Output, ApplyError> {
    let output = transport
        .run(argv, env, None)
        .map_err(ApplyError::transport(host.key()))?;
    if output.success() {
        Ok(output)
    } else {
        Err(ApplyError::App {
            image: app.name.clone(),
            host: host.key(),
            command: shown(argv),
            status: output.status_text(),
            tail: output.tail(20),
        })
    }
}

/// The command as a person reads it: the wrapper's own words left out.
fn shown(argv: &[String]) -> String {
    let words = match argv {
        [sh, c, _, name, _, rest @ ..] if sh == "sh" && c == "-c" && name == "sealrs-app" => rest,
        all => all,
    };
    words.join(" ")
}

fn record_app(cluster: &mut Cluster, first: &Host, app: &AppliedImage) {
    let status = cluster.status.hosts.entry(first.key()).or_default();
    status.images.retain(|i| i.name != app.name);
    status.images.push(InstalledImage {
        name: app.name.clone(),
        digest: app.digest.clone(),
    });
}

/// The commands and env of an application image, from its config.
pub fn app_command(
    store: &Store,
    app: &AppliedImage,
    cluster_env: &BTreeMap<String, String>,
) -> Result<AppCommand, ApplyError> {
    let stored = store.image(&app.name).map_err(|source| ApplyError::Image {
        name: app.name.clone(),
        source: Box::new(source),
    })?;
    let config = stored.config.config().clone().unwrap_or_default();
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for pair in config.env().clone().unwrap_or_default() {
        if let Some((k, v)) = pair.split_once('=') {
            if k != "PATH" && is_name(k) {
                env.insert(k.to_string(), v.to_string());
            }
        }
    }
    env.extend(cluster_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    let entrypoint = config.entrypoint().clone().unwrap_or_default();
    let cmd = config.cmd().clone().unwrap_or_default();
    Ok(AppCommand {
        argvs: commands(&entrypoint, &cmd, &env),
        env: env.into_iter().collect(),
    })
}

/// See the module docs: exec form with ENTRYPOINT, sealos shell form without.
pub fn commands(
    entrypoint: &[String],
    cmd: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<Vec<String>> {
    if !entrypoint.is_empty() {
        let argv = entrypoint
            .iter()
            .chain(cmd)
            .map(|word| substitute_value(word, env))
            .collect();
        return vec![argv];
    }
    cmd.iter()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            vec![
                "sh".to_string(),
                "-c".to_string(),
                rewrite_for_shell(line, env),
            ]
        })
        .collect()
}

fn is_name(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Finds `$(NAME)` at `i` for a NAME in `env`; returns NAME and the length.
fn reference_at<'a>(
    s: &'a str,
    i: usize,
    env: &BTreeMap<String, String>,
) -> Option<(&'a str, usize)> {
    let rest = s[i..].strip_prefix("$(")?;
    let end = rest.find(')')?;
    let name = &rest[..end];
    (is_name(name) && env.contains_key(name)).then_some((name, end + 3))
}

/// Exec form: `$(NAME)` replaced by the value itself (no shell follows).
pub fn substitute_value(word: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut i = 0;
    while i < word.len() {
        if let Some((name, len)) = reference_at(word, i, env) {
            out.push_str(&env[name]);
            i += len;
        } else {
            let c = word[i..].chars().next().expect("in bounds");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Shell form: `$(NAME)` for a NAME in `env` becomes a quoted parameter
/// expansion, fitting the quoting context it stands in.
pub fn rewrite_for_shell(line: &str, env: &BTreeMap<String, String>) -> String {
    #[derive(PartialEq)]
    enum Quote {
        None,
        Single,
        Double,
    }
    let mut quote = Quote::None;
    let mut out = String::with_capacity(line.len() + 16);
    let mut i = 0;
    while i < line.len() {
        if let Some((name, len)) = reference_at(line, i, env) {
            match quote {
                Quote::None => out.push_str(&format!("\"${{{name}}}\"")),
                Quote::Double => out.push_str(&format!("${{{name}}}")),
                Quote::Single => out.push_str(&format!("'\"${{{name}}}\"'")),
            }
            i += len;
            continue;
        }
        let c = line[i..].chars().next().expect("in bounds");
        out.push(c);
        i += c.len_utf8();
        match (&quote, c) {
            // A backslash outside single quotes keeps the next character as is.
            (Quote::None | Quote::Double, '\\') => {
                if let Some(next) = line[i..].chars().next() {
                    out.push(next);
                    i += next.len_utf8();
                }
            }
            (Quote::None, '\'') => quote = Quote::Single,
            (Quote::Single, '\'') => quote = Quote::None,
            (Quote::None, '"') => quote = Quote::Double,
            (Quote::Double, '"') => quote = Quote::None,
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sh(script: &str, env: &BTreeMap<String, String>) -> Vec<String> {
        // Runs the rewritten line with a recorder for argv, as the host would.
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "rec() {{ for a; do printf '%s\\0' \"$a\"; done; }}; {script}"
            ))
            .env_clear()
            .envs(env)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(String::from)
            .collect()
    }

    #[test]
    fn shell_form_values_are_expanded_once_as_data() {
        let value = "pa$$w0rd\"`x' $(id) *";
        let e = env(&[("NAMESPACE", value)]);
        let line = rewrite_for_shell("rec apply -n $(NAMESPACE) -f manifests/", &e);
        assert_eq!(line, "rec apply -n \"${NAMESPACE}\" -f manifests/");
        assert_eq!(sh(&line, &e), ["apply", "-n", value, "-f", "manifests/"]);
        let line = rewrite_for_shell("rec \"--ns=$(NAMESPACE)!\" '$(NAMESPACE)x'", &e);
        assert_eq!(
            sh(&line, &e),
            [format!("--ns={value}!"), format!("{value}x")]
        );
    }

    #[test]
    fn unknown_names_and_escapes_are_left_alone() {
        let e = env(&[("A", "1")]);
        assert_eq!(
            rewrite_for_shell("echo $(B) \\$(A)", &e),
            "echo $(B) \\$(A)"
        );
        assert_eq!(rewrite_for_shell("echo $(A", &e), "echo $(A");
    }

    #[test]
    fn exec_form_substitutes_values_verbatim_and_shell_form_splits_cmd() {
        let e = env(&[("NS", "a b$`\"")]);
        let argvs = commands(&["/bin/x".into()], &["-n".into(), "$(NS)".into()], &e);
        assert_eq!(argvs, vec![vec!["/bin/x", "-n", "a b$`\""]]);
        let argvs = commands(&[], &["one".into(), " ".into(), "two $(NS)".into()], &e);
        assert_eq!(argvs.len(), 2);
        assert_eq!(argvs[1], ["sh", "-c", "two \"${NS}\""]);
    }
}
