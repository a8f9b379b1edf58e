//! `login`, `logout`, `push`, `pull`, and pulling a missing FROM image.

use std::io::{IsTerminal, Read};

use anyhow::{bail, Context as _, Result};

use super::args::{LoginArgs, LogoutArgs, PullArgs, PushArgs, RegistryFlags};
use crate::build::BaseFetcher;
use crate::progress::Progress;
use crate::reference::Reference;
use crate::registry::{self, RegistryOptions};
use crate::store::Store;

pub(super) fn options(flags: &RegistryFlags) -> RegistryOptions {
    RegistryOptions {
        tls_verify: flags.tls_verify,
        cert_dir: flags.cert_dir.clone(),
        auth_file: flags.authfile.clone(),
        ..RegistryOptions::default()
    }
}

/// Two workers: transfers are I/O-bound, and this keeps threads few on small hosts.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn parse_reference(name: &str) -> Result<Reference> {
    Reference::parse(name).map_err(anyhow::Error::from)
}

pub fn login(args: &LoginArgs) -> Result<()> {
    if !args.password_stdin {
        bail!("pass the password on standard input with --password-stdin (a password in argv is visible to every user of the machine)");
    }
    if std::io::stdin().is_terminal() {
        eprint!("Password: ");
    }
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from standard input")?;
    let password = password.strip_suffix('\n').unwrap_or(&password);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("the password on standard input is empty");
    }
    let opts = options(&args.registry_flags);
    runtime()?.block_on(registry::login(
        &args.registry,
        &args.username,
        password,
        &opts,
    ))?;
    eprintln!("Login succeeded: {}", args.registry);
    Ok(())
}

pub fn logout(args: &LogoutArgs) -> Result<()> {
    registry::logout(&args.registry, &options(&args.registry_flags))?;
    eprintln!("Removed the credentials of {}", args.registry);
    Ok(())
}

pub fn push(store: &Store, args: &PushArgs, progress: &dyn Progress) -> Result<()> {
    let source = parse_reference(&args.image)?.to_string();
    let dest = parse_reference(args.destination.as_deref().unwrap_or(&args.image))?;
    if store.lookup(&source)?.is_none() {
        bail!("image {source} is not in the local store (see `sealrs images`)");
    }
    let mut opts = options(&args.registry_flags);
    opts.max_concurrent = usize::from(args.jobs);
    let digest = runtime()?.block_on(registry::push(store, &source, &dest, &opts, progress))?;
    println!("{digest}");
    Ok(())
}

pub fn pull(store: &Store, args: &PullArgs, progress: &dyn Progress) -> Result<()> {
    let reference = parse_reference(&args.image)?;
    let mut opts = options(&args.registry_flags);
    opts.platform = args.platform.clone();
    opts.max_concurrent = usize::from(args.jobs);
    let descriptor = runtime()?.block_on(registry::pull(store, &reference, &opts, progress))?;
    println!("{}", descriptor.digest());
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
