//! Pulling through mirrors: the registries.conf files read from disk, and
//! one pull's sources tried in order (mirrors, then the origin).
//!
//! A source that cannot be opened (down, TLS, refused) is skipped for the
//! rest of the pull. Anything a mirror fails at (after its retries), a
//! missing blob, an error status, or bytes that do not hash to their digest,
//! sends that request to the next source; the origin's own failure is the
//! pull's error. Bytes are checked before they are kept whichever source
//! sent them, so a mirror can make a pull slower, never wrong.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::sync::OnceCell;

use super::auth;
use super::client::{retry, Access, Session};
use super::error::RegistryError;
use super::mirrors::{Endpoint, RegistriesConf};
use super::RegistryOptions;
use crate::progress::Progress;
use crate::reference::Reference;

const SYSTEM_CONF: &str = "/etc/containers/registries.conf";
const SYSTEM_CONF_DIR: &str = "/etc/containers/registries.conf.d";

/// The registries.conf files as containers/image 5.23 finds them
/// (`pkg/sysregistriesv2/system_registries_v2.go`, newConfigWrapperWithHomeDir):
/// the main file is `--registries-conf` (skopeo 1.9's hidden flag of that
/// name sets the same path), else `$CONTAINERS_REGISTRIES_CONF` (as buildah
/// and podman read it), else `~/.config/containers/registries.conf` when it exists (then only
/// the drop-ins of `~/.config/containers/registries.conf.d`), else
/// `/etc/containers/registries.conf`; then the `*.conf` drop-ins of
/// `/etc/containers/registries.conf.d` and `~/.config/…/registries.conf.d`
/// in name order. A main file that was named and is missing is an error;
/// the default ones may be absent.
pub fn load(opts: &RegistryOptions) -> Result<RegistriesConf, RegistryError> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from);
    let user_conf = home
        .as_ref()
        .map(|h| h.join(".config/containers/registries.conf"));
    let user_dir = home
        .as_ref()
        .map(|h| h.join(".config/containers/registries.conf.d"));
    let named = opts.registries_conf.clone().or_else(|| {
        std::env::var_os("CONTAINERS_REGISTRIES_CONF")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    let system_dir = Some(PathBuf::from(SYSTEM_CONF_DIR));
    let (main, required, dirs) = match (named, user_conf) {
        (Some(path), _) => (path, true, [system_dir, user_dir]),
        (None, Some(user)) if user.is_file() => (user, false, [user_dir, None]),
        (None, _) => (PathBuf::from(SYSTEM_CONF), false, [system_dir, user_dir]),
    };
    load_files(main, required, &dirs)
}

/// `main` (which must exist when `required`), then the `*.conf` files of
/// each of `dirs` in name order, each laid over what came before.
fn load_files(
    main: PathBuf,
    required: bool,
    dirs: &[Option<PathBuf>],
) -> Result<RegistriesConf, RegistryError> {
    let mut conf = match read(&main)? {
        Some(conf) => conf,
        None if required => {
            return Err(RegistryError::RegistriesConf {
                path: main,
                reason: "no such file (named by --registries-conf or $CONTAINERS_REGISTRIES_CONF)"
                    .into(),
            })
        }
        None => RegistriesConf::default(),
    };
    for dir in dirs.iter().flatten() {
        for file in conf_files(dir)? {
            if let Some(more) = read(&file)? {
                conf = conf.merge(more);
            }
        }
    }
    Ok(conf)
}

/// A file's configuration; `None` when it does not exist.
fn read(path: &Path) -> Result<Option<RegistriesConf>, RegistryError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RegistryError::RegistriesConf {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    Ok(Some(RegistriesConf::parse(
        &path.display().to_string(),
        &text,
    )?))
}

/// The `*.conf` files of a drop-in directory in name order (none if it is missing).
fn conf_files(dir: &Path) -> Result<Vec<PathBuf>, RegistryError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(RegistryError::RegistriesConf {
                path: dir.to_path_buf(),
                reason: e.to_string(),
            })
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "conf") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// The options for talking to `endpoint`: `insecure = true` acts as
/// `--tls-verify=false` unless the user chose a value.
pub fn endpoint_options(endpoint: &Endpoint, opts: &RegistryOptions) -> RegistryOptions {
    insecure_options(endpoint.insecure, opts)
}

/// The options for a push to `name` (`host[:port]/repo`) or a login at it
/// (`host[:port]`): its registries.conf `insecure` counts as for a pull.
pub fn destination_options(
    name: &str,
    opts: &RegistryOptions,
) -> Result<RegistryOptions, RegistryError> {
    let insecure = load(opts)?.destination_insecure(name)?;
    Ok(insecure_options(insecure, opts))
}

fn insecure_options(insecure: bool, opts: &RegistryOptions) -> RegistryOptions {
    let mut opts = opts.clone();
    if insecure && opts.tls_verify.is_none() {
        opts.tls_verify = Some(false);
    }
    opts
}

/// One source of a pull: where, and its session once opened (`None`: it
/// could not be opened and is skipped).
struct Source {
    endpoint: Endpoint,
    session: OnceCell<Option<Session>>,
    /// Requests it served.
    served: Mutex<u32>,
}

/// The places one pull may take its manifest and blobs from, in order.
pub struct Sources<'a> {
    list: Vec<Source>,
    opts: &'a RegistryOptions,
    progress: &'a dyn Progress,
    /// The mirrors noted as passed over, in order.
    passed_over: Mutex<Vec<String>>,
}

impl<'a> Sources<'a> {
    /// The sources of `reference` under the registries.conf files `opts`
    /// names, but for the mirrors it says to skip.
    pub fn new(
        reference: &Reference,
        opts: &'a RegistryOptions,
        progress: &'a dyn Progress,
    ) -> Result<Sources<'a>, RegistryError> {
        let endpoints = load(opts)?.sources(reference)?;
        Ok(Sources {
            list: endpoints
                .into_iter()
                .filter(|e| !(e.mirror && opts.skip_mirrors.contains(&e.reference.registry)))
                .map(|endpoint| Source {
                    endpoint,
                    session: OnceCell::new(),
                    served: Mutex::new(0),
                })
                .collect(),
            opts,
            progress,
            passed_over: Mutex::new(Vec::new()),
        })
    }

    /// The mirrors passed over so far, each once, in order.
    pub fn passed_over(&self) -> Vec<String> {
        self.passed_over
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The session of source `i`; a mirror that cannot be opened is noted
    /// and `None`, the origin's failure is the error.
    async fn session(&self, i: usize) -> Result<Option<&Session>, RegistryError> {
        let source = &self.list[i];
        let open = || async {
            let r = &source.endpoint.reference;
            let opts = endpoint_options(&source.endpoint, self.opts);
            let creds = auth::lookup(&r.registry, &r.repository, &opts)?;
            Session::open(&r.registry, &r.repository, Access::Pull, creds, &opts).await
        };
        if !source.endpoint.mirror {
            return source
                .session
                .get_or_try_init(|| async { open().await.map(Some) })
                .await
                .map(Option::as_ref);
        }
        let session = source
            .session
            .get_or_init(|| async {
                open()
                    .await
                    .inspect_err(|e| self.note(i, "be reached", e))
                    .ok()
            })
            .await;
        Ok(session.as_ref())
    }

    fn note(&self, i: usize, what: &str, error: &RegistryError) {
        let mirror = &self.list[i].endpoint.reference.registry;
        self.progress.message(&format!(
            "mirror {mirror} could not {what}: {error}; trying the next source"
        ));
        let mut passed = self.passed_over.lock().unwrap_or_else(|e| e.into_inner());
        if !passed.contains(mirror) {
            passed.push(mirror.clone());
        }
    }

    /// Runs `op` (retried on transient failures) against each source from
    /// `from` on until one succeeds; returns that source's index with the
    /// result. `what` names the request in notes.
    pub async fn first<T>(
        &self,
        from: usize,
        what: &str,
        op: impl AsyncFn(&Session, &Reference) -> Result<T, RegistryError>,
    ) -> Result<(usize, T), RegistryError> {
        let last = self.list.len() - 1;
        for i in from.min(last)..=last {
            let Some(session) = self.session(i).await? else {
                continue;
            };
            let reference = &self.list[i].endpoint.reference;
            match retry(session.retries, || op(session, reference)).await {
                Ok(v) => {
                    *self.list[i]
                        .served
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) += 1;
                    return Ok((i, v));
                }
                Err(e) if i < last && !matches!(e, RegistryError::Store(_)) => {
                    self.note(i, what, &e)
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the origin is the last source and returns")
    }

    /// Where the pull's requests went, for the line that ends it: empty
    /// without mirrors, else e.g. "through mirror 10.0.0.2:5001" or
    /// "from mirror 10.0.0.2:5001 (3 requests) and the origin 10.0.0.1:5000 (1 request)".
    pub fn summary(&self) -> String {
        if self.list.len() == 1 {
            return String::new();
        }
        let name = |s: &Source| {
            let kind = if s.endpoint.mirror {
                "mirror "
            } else {
                "the origin "
            };
            format!("{kind}{}", s.endpoint.reference.registry)
        };
        let used: Vec<(&Source, u32)> = self
            .list
            .iter()
            .map(|s| (s, *s.served.lock().unwrap_or_else(|e| e.into_inner())))
            .filter(|(_, n)| *n > 0)
            .collect();
        match used.as_slice() {
            [(s, _)] if s.endpoint.mirror => format!("through {}", name(s)),
            [(s, _)] => format!("from {}", name(s)),
            _ => format!(
                "from {}",
                used.iter()
                    .map(|(s, n)| match n {
                        1 => format!("{} (1 request)", name(s)),
                        n => format!("{} ({n} requests)", name(s)),
                    })
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(conf: &RegistriesConf, image: &str) -> Vec<String> {
        conf.sources(&Reference::parse(image).unwrap())
            .unwrap()
            .iter()
            .map(|e| e.reference.registry.clone())
            .collect()
    }

    #[test]
    fn drop_ins_are_laid_over_the_main_file_in_name_order_and_only_conf_files_count() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("registries.conf");
        std::fs::write(
            &main,
            "[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"main.local\"\n",
        )
        .unwrap();
        let d = dir.path().join("registries.conf.d");
        std::fs::create_dir(&d).unwrap();
        std::fs::write(
            d.join("20-b.conf"),
            "[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"b.local\"\n",
        )
        .unwrap();
        std::fs::write(
            d.join("10-a.conf"),
            "[[registry]]\nlocation = \"r.io\"\n[[registry.mirror]]\nlocation = \"a.local\"\n",
        )
        .unwrap();
        std::fs::write(d.join("30-c.conf.bak"), "not toml [").unwrap();
        let conf = load_files(main.clone(), true, &[Some(d), None]).unwrap();
        assert_eq!(names(&conf, "r.io/app:1"), ["b.local", "r.io"]);
        let conf = load_files(main, true, &[Some(dir.path().join("none"))]).unwrap();
        assert_eq!(names(&conf, "r.io/app:1"), ["main.local", "r.io"]);
    }

    #[test]
    fn a_named_file_must_exist_and_a_bad_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.conf");
        let err = load_files(missing.clone(), true, &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nope.conf") && err.contains("no such file"),
            "{err}"
        );
        assert_eq!(
            load_files(missing, false, &[]).unwrap(),
            RegistriesConf::default()
        );
        let bad = dir.path().join("bad.conf");
        std::fs::write(&bad, "[[registry]]\nlocation = \"http://r.io\"\n").unwrap();
        let err = load_files(bad, true, &[]).unwrap_err().to_string();
        assert!(
            err.contains("bad.conf") && err.contains("URL scheme"),
            "{err}"
        );
    }
}
