//! `login`, `logout`, `push`, `pull`, and pulling a missing FROM image.

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context as _, Result};

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryFlags};
use crate::build::BaseFetcher;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{self, RegistryOptions};
use crate::secret::Secret;
use crate::store::Store;

pub(super) fn options(flags: &RegistryFlags) -> RegistryOptions {
    RegistryOptions {
        tls_verify: flags.tls_verify,
        cert_dir: flags.cert_dir.clone(),
        auth_file: flags.authfile.clone(),
        registries_conf: flags.registries_conf.clone(),
        ..RegistryOptions::default()
    }
}

/// Two workers: transfers are I/O-bound, and this keeps threads few on small hosts.
pub(super) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_reference(name: &str) -> Result<Reference> {
    Reference::parse(name).map_err(anyhow::Error::from)
}

/// Logs in with the password from standard input (`--password-stdin`, for
/// scripts), else by asking on the terminal with echo off, as docker does.
pub fn login(args: &LoginArgs) -> Result<()> {
    let (username, password) = if args.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .context("reading the password from standard input")?;
        let username = args
            .username
            .clone()
            .expect("clap requires -u with --password-stdin");
        let password = password.strip_suffix('\n').unwrap_or(&password);
        let password = password.strip_suffix('\r').unwrap_or(password);
        (username, Secret::new(password))
    } else {
        ask_on_terminal(args.username.as_deref())?
    };
    if password.expose().is_empty() {
        bail!("the password is empty");
    }
    let opts = options(&args.registry_flags);
    runtime()?.block_on(registry::login(
        &args.registry,
        &username,
        password.expose(),
        &opts,
    ))?;
    eprintln!("Login succeeded: {}", args.registry);
    Ok(())
}

/// Asks for what `-u` did not give and for the password (never echoed).
fn ask_on_terminal(username: Option<&str>) -> Result<(String, Secret)> {
    if !std::io::stdin().is_terminal() {
        bail!("standard input is not a terminal, so there is no one to ask for the password: pipe it with -u USER --password-stdin (a password in argv is visible to every user of the machine)");
    }
    let username = match username {
        Some(name) => name.to_string(),
        None => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the user name")?;
            let name = line.trim().to_string();
            if name.is_empty() {
                bail!("the user name is empty");
            }
            name
        }
    };
    let password = rpassword::prompt_password("Password: ").context("reading the password")?;
    Ok((username, Secret::new(password)))
}

pub fn logout(args: &LogoutArgs) -> Result<()> {
    registry::logout(&args.registry, &options(&args.registry_flags))?;
    eprintln!("Removed the credentials of {}", args.registry);
    Ok(())
}

pub fn push(store: &Store, args: &PushArgs, progress: &dyn Progress) -> Result<()> {
    let found = super::resolve::resolve(store, &args.image)?;
    let source = found.names[0].clone();
    let dest = match &args.destination {
        Some(dest) => parse_reference(dest)?,
        None if found.by_id => bail!(
            "{} is an IMAGE ID or digest, not a place in a registry: give the destination, `sealrs push {} REGISTRY/REPO:TAG`",
            args.image,
            args.image
        ),
        None => parse_reference(&source)?,
    };
    let mut opts = options(&args.registry_flags);
    opts.max_concurrent = usize::from(args.jobs);
    let digest = runtime()?.block_on(registry::push(store, &source, &dest, &opts, progress))?;
    outln!("{digest}")?;
    Ok(())
}

pub fn pull(store: &Store, args: &PullArgs, progress: &dyn Progress) -> Result<()> {
    let reference = parse_reference(&args.image)?;
    let mut opts = options(&args.registry_flags);
    opts.platform = args.platform.clone();
    opts.max_concurrent = usize::from(args.jobs);
    let descriptor = runtime()?.block_on(registry::pull(store, &reference, &opts, progress))?;
    outln!("{}", descriptor.digest())?;
    Ok(())
}

/// Pulls a FROM image that the store lacks, with the build's registry flags.
pub struct RegistryBaseFetcher<'a> {
    pub options: RegistryOptions,
    pub progress: &'a dyn Progress,
}

impl<'a> RegistryBaseFetcher<'a> {
    pub fn new(
        flags: &RegistryFlags,
        platform: Option<String>,
        progress: &'a dyn Progress,
    ) -> Self {
        let mut options = options(flags);
        options.platform = platform;
        RegistryBaseFetcher { options, progress }
    }
}

impl BaseFetcher for RegistryBaseFetcher<'_> {
    fn fetch(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let reference = Reference::parse(name)?;
        let runtime = runtime().map_err(|e| e.to_string())?;
        runtime.block_on(registry::pull(
            store,
            &reference,
            &self.options,
            self.progress,
        ))?;
        Ok(())
    }
}
