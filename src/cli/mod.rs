//! The command line: flags in, library calls, errors mapped to exit codes.
//!
//! This is the edge: library errors are typed, and here they get the context a
//! person needs (which image, which file) before they are printed.

/// `println!` that hands the error back instead of panicking, so that a reader
/// who went away (`sealrs images | head -1`) ends the command quietly in
/// [`main`]. Not SIGPIPE's default action: that would also kill the process
/// for a peer that closes an SSH channel or a pipe to a child.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` in the manner of [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

mod app_run_cmd;
mod args;
mod backup_cmd;
mod cert_cmd;
mod gen_cmd;
mod inspect_cmd;
mod installer_cmd;
mod lifecycle_cmd;
mod mask;
mod registry_cmds;
mod registry_image;
mod resolve;
mod result;
mod run_cmd;
mod store_cmds;
mod verify_cmd;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _, Result};
use clap::{CommandFactory as _, Parser};

pub use args::{parse_size, Cli, Command};

use crate::build::{self, BuildRequest, InstallerChoice, LayerOptions};
use crate::compression::Compression;
use crate::reference;
use crate::store::Store;

/// Parses the command line, runs it, and prints any error chain on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", chain_message(&err));
            // A command that failed after Ctrl-C (a step not started, a
            // backup's copy stopped) ends as a shell reports one SIGINT ended.
            if crate::apply::interrupt::interrupted()
                || err.chain().any(|c| {
                    c.downcast_ref::<crate::apply::ApplyError>()
                        .is_some_and(crate::apply::ApplyError::is_interrupted)
                })
            {
                return ExitCode::from(130);
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, joined by ": ", skipping a cause whose text the
/// message already holds (library errors often quote their source inline).
fn chain_message(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
    }
    message
}

/// A host command's result; when Ctrl-C stopped it, first says where each
/// host's state was saved and the command to run to go on (this one again:
/// each command picks up from the saved state).
fn interrupted_next<T>(
    root: &std::path::Path,
    cluster: &str,
    result: std::result::Result<T, crate::apply::ApplyError>,
) -> Result<T> {
    match result {
        Err(err) if err.is_interrupted() => {
            let argv: Vec<String> = std::env::args()
                .map(|a| {
                    let plain = !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "_./:,=@%+-".contains(c));
                    if plain {
                        a
                    } else {
                        crate::shell::sh_quote(&a)
                    }
                })
                .collect();
            eprintln!(
                "interrupted: each host's state is saved in {}; to go on, run the same command again:\n  {}",
                crate::apply::cluster_file(root, cluster).display(),
                argv.join(" ")
            );
            Err(err.into())
        }
        other => Ok(other?),
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

pub fn run(cli: Cli) -> Result<()> {
    // The installer runs on hosts: no store, no state directory.
    if let Command::Installer(args) = cli.command {
        return installer_cmd::run(args, cli.quiet);
    }
    if let Command::Completion(args) = &cli.command {
        let mut script = Vec::new();
        clap_complete::generate(args.shell, &mut completion_command(), "sealrs", &mut script);
        std::io::Write::write_all(&mut std::io::stdout().lock(), &script)?;
        return Ok(());
    }
    let root = match cli.root.clone() {
        Some(root) => root,
        None => default_root()?,
    };
    let progress = crate::progress::for_terminal(cli.quiet);
    let open_store = || {
        Store::open(&root).with_context(|| format!("opening the image store at {}", root.display()))
    };
    match cli.command {
        Command::Build(args) => {
            let fetcher = registry_cmds::RegistryBaseFetcher::new(
                &args.registry_flags,
                args.platform.clone(),
                progress.as_ref(),
            );
            let request = build_request(args)?;
            let store = open_store()?;
            let outcome = build::build(&store, &request, &fetcher, progress.as_ref())?;
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            if !cli.quiet {
                for note in &outcome.notes {
                    eprintln!("note: {note}");
                }
                let checked = match outcome.verdict.as_ref().and_then(|v| v.layout.as_ref()) {
                    Some(file) => format!("; holds {file}"),
                    None => String::new(),
                };
                eprintln!(
                    "built {} ({}, {} from cache{checked})",
                    request.tags.join(", "),
                    crate::progress::text::count(outcome.layers, "layer"),
                    outcome.cached_layers
                );
            }
            outln!("{}", outcome.manifest.digest())?;
            Ok(())
        }
        Command::Images(args) => store_cmds::images(&open_store()?, &args, cli.quiet),
        Command::Inspect(args) => inspect_cmd::inspect(&open_store()?, &args.images, args.format),
        Command::Tag(args) => {
            store_cmds::tag(&open_store()?, &args.source, &args.targets, cli.quiet)
        }
        Command::Rmi(args) => store_cmds::rmi(&open_store()?, &args, cli.quiet),
        Command::Prune => store_cmds::prune(&open_store()?),
        Command::Fsck => store_cmds::fsck(&open_store()?),
        Command::Save(args) => store_cmds::save(
            &open_store()?,
            &args.images,
            args.output.as_deref(),
            cli.quiet,
        ),
        Command::Load(args) => store_cmds::load(&open_store()?, args.input.as_deref()),
        Command::Login(args) => registry_cmds::login(&args),
        Command::Logout(args) => registry_cmds::logout(&args),
        Command::Push(args) => registry_cmds::push(&open_store()?, &args, progress.as_ref()),
        Command::Pull(args) => registry_cmds::pull(&open_store()?, &args, progress.as_ref()),
        Command::Run(args) => run_cmd::run(&open_store()?, &root, &args, progress.as_ref()),
        Command::Add(args) => lifecycle_cmd::add(&open_store()?, &root, &args, progress.as_ref()),
        Command::Delete(args) => {
            lifecycle_cmd::delete(&open_store()?, &root, &args, progress.as_ref())
        }
        Command::Upgrade(args) => {
            lifecycle_cmd::upgrade(&open_store()?, &root, &args, progress.as_ref())
        }
        Command::Reset(args) => {
            lifecycle_cmd::reset(&open_store()?, &root, &args, progress.as_ref())
        }
        Command::Gen(args) => gen_cmd::gen(&args),
        Command::Clusters(args) => lifecycle_cmd::clusters(&root, &args),
        Command::Kubeconfig(args) => lifecycle_cmd::kubeconfig(&root, &args),
        Command::Status(args) => lifecycle_cmd::status(&root, &args),
        Command::Verify(args) => verify_cmd::verify(&open_store()?, &root, &args),
        Command::Cert(command) => cert_cmd::run(&open_store()?, &root, &command, progress.as_ref()),
        Command::Backup(args) => backup_cmd::backup(&root, &args, progress.as_ref()),
        Command::Restore(args) => {
            backup_cmd::restore(&open_store()?, &root, &args, progress.as_ref())
        }
        Command::Installer(_) | Command::Completion(_) => unreachable!("handled above"),
    }
}

/// The command line without its hidden commands: clap_complete offers hidden
/// subcommands too, and the installer is for hosts, not for people.
fn completion_command() -> clap::Command {
    let full = Cli::command();
    clap::Command::new("sealrs")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// `/var/lib/sealrs` for root, else the XDG data directory.
fn default_root() -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    // The owner of /proc/self is this process's effective uid.
    if std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
        return Ok(PathBuf::from("/var/lib/sealrs"));
    }
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("sealrs"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/sealrs")),
        None => bail!("cannot tell where to keep images: set SEALRS_ROOT or HOME"),
    }
}

/// `--label` and `--env` pairs; `--env KEY` alone takes KEY's value from
/// the environment (empty when unset), `--label KEY` alone is empty, as
/// buildah takes them.
fn config_flags(labels: &[String], env: &[String]) -> Result<crate::build::ConfigFlags> {
    let pair = |flag: &str, given: &String, alone: &dyn Fn(&str) -> String| {
        let (k, v) = match given.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (given.clone(), alone(given)),
        };
        if k.is_empty() {
            bail!("{flag} {given:?}: the name before '=' is empty; use {flag} KEY=VALUE");
        }
        Ok((k, v))
    };
    Ok(crate::build::ConfigFlags {
        labels: labels
            .iter()
            .map(|l| pair("--label", l, &|_| String::new()))
            .collect::<Result<_>>()?,
        env: env
            .iter()
            .map(|e| pair("--env", e, &|k| std::env::var(k).unwrap_or_default()))
            .collect::<Result<_>>()?,
    })
}

/// Turns raw build flags into a request; everything here is checked before any file is opened.
fn build_request(args: args::BuildArgs) -> Result<BuildRequest> {
    let mut tags = Vec::new();
    for tag in &args.tags {
        let name = reference::normalize(tag).with_context(|| format!("-t {tag}"))?;
        if tags.contains(&name) {
            bail!("-t {tag}: the image name {name} is given twice; give each name once");
        }
        tags.push(name);
    }
    let mut build_args = BTreeMap::new();
    for arg in &args.build_args {
        let (key, value) = match arg.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => match std::env::var(arg) {
                Ok(v) => (arg.clone(), v),
                // Docker drops a bare KEY whose variable is unset, so the ARG default applies.
                Err(_) => continue,
            },
        };
        if key.is_empty() {
            bail!("--build-arg {arg:?}: the name before '=' is empty; use --build-arg KEY=VALUE");
        }
        build_args.insert(key, value);
    }
    let config_flags = config_flags(&args.labels, &args.env)?;
    let (target_os, target_arch) = match &args.platform {
        Some(p) => {
            let (os, arch) = p
                .split_once('/')
                .filter(|(os, arch)| !os.is_empty() && !arch.is_empty() && !arch.contains('/'))
                .with_context(|| {
                    format!("--platform {p:?}: expected OS/ARCH, for example linux/arm64")
                })?;
            (os.to_string(), arch.to_string())
        }
        None => ("linux".to_string(), crate::arch::host().to_string()),
    };
    let source_date_epoch = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) if !v.is_empty() => v
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH={v:?} is not a number of seconds"))?,
        _ => 0,
    };
    Ok(BuildRequest {
        config_flags,
        context: args.context,
        kubefile: args.file,
        tags,
        build_args,
        target_os,
        target_arch,
        no_cache: args.no_cache,
        skip_validation: args.skip_validation,
        installer: match (args.no_installer, args.installer) {
            (true, _) => InstallerChoice::None,
            (false, Some(path)) => InstallerChoice::Binary(path),
            (false, None) => InstallerChoice::CurrentExe,
        },
        harvest: (!args.no_images).then(|| {
            let mut options = registry_cmds::options(&args.registry_flags);
            options.platform = args.platform.clone();
            options
        }),
        layers: LayerOptions {
            compression: match args.compression {
                args::CompressionArg::Zstd => Compression::Zstd,
                args::CompressionArg::Gzip => Compression::Gzip,
                args::CompressionArg::None => Compression::None,
            },
            split_threshold: args.split_threshold,
            source_date_epoch,
        },
    })
}
