//! Mirrors and remapped locations from containers-registries.conf(5), the
//! file skopeo, podman and buildah read, so one file steers every tool.
//!
//! Pure: [`RegistriesConf::parse`] takes a file's text, [`RegistriesConf::merge`]
//! lays drop-ins over it (a `[[registry]]` with the same prefix replaces the
//! earlier one whole, as containers-registries.conf.d(5) says), and
//! [`RegistriesConf::sources`] turns an image name into the places to pull
//! it from: its mirrors in order, then its (possibly remapped) location.
//! Reading the files is the job of `sources::load`.
//!
//! Followed: containers-registries.conf(5) and containers-registries.conf.d(5)
//! as shipped with containers/image 5.23 (Debian bookworm): longest prefix
//! wins, `*.host` matches subdomains, `location` rewrites the prefix,
//! `insecure`, `blocked`, `mirror-by-digest-only`, per-mirror
//! `pull-from-mirror` (`all`, `digest-only`, `tag-only`), and the version 1
//! `[registries.insecure]`/`[registries.block]` lists. Search registries and
//! short-name aliases are not read: sealrs names images fully.

use serde::Deserialize;

use crate::reference::Reference;

/// A registries.conf that cannot be used; names the file and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MirrorsError {
    #[error("{file}: not a registries.conf (TOML, containers-registries.conf(5)): {reason}")]
    Parse { file: String, reason: String },
    #[error("{file}: [[registry]] {prefix:?}: {reason}")]
    Invalid {
        file: String,
        prefix: String,
        reason: String,
    },
    #[error("pulling {name} is blocked by the [[registry]] with prefix {prefix:?} in the registries.conf files (blocked = true)")]
    Blocked { name: String, prefix: String },
    #[error("{name} is blocked by the [[registry]] with prefix {prefix:?} in the registries.conf files (blocked = true): no push to it or login at it, as with skopeo and buildah")]
    BlockedDestination { name: String, prefix: String },
    #[error("the registries.conf [[registry]] with prefix {prefix:?} maps {name} to {location:?}, which is not an image name: {reason}")]
    Rewrite {
        name: String,
        prefix: String,
        location: String,
        reason: String,
    },
}

/// When a mirror may serve a pull (`pull-from-mirror`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PullFromMirror {
    #[default]
    All,
    DigestOnly,
    TagOnly,
}

/// One `[[registry.mirror]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub location: String,
    pub insecure: bool,
    pub pull_from: PullFromMirror,
}

/// One `[[registry]]` table after defaults (prefix = location) are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryEntry {
    pub prefix: String,
    /// Empty only for a wildcard prefix: names are then used as they are.
    pub location: String,
    pub insecure: bool,
    pub blocked: bool,
    pub mirrors: Vec<Mirror>,
}

/// The merged configuration: the main file and its drop-ins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub registries: Vec<RegistryEntry>,
}

/// A place to pull an image from: the reference as that place names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub reference: Reference,
    /// `insecure = true`: plain HTTP and unverified certificates allowed.
    pub insecure: bool,
    /// A mirror, not the image's own (possibly remapped) location.
    pub mirror: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    #[serde(default)]
    registry: Vec<RawRegistry>,
    /// Version 1: `[registries.insecure] registries = [...]`, `[registries.block]`.
    registries: Option<RawV1>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    #[serde(default)]
    insecure: bool,
    #[serde(default)]
    blocked: bool,
    #[serde(default)]
    mirror_by_digest_only: bool,
    #[serde(default)]
    mirror: Vec<RawMirror>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: String,
    #[serde(default)]
    insecure: bool,
    pull_from_mirror: Option<PullFromMirror>,
}

#[derive(Deserialize)]
struct RawV1 {
    insecure: Option<RawV1List>,
    block: Option<RawV1List>,
}

#[derive(Deserialize)]
struct RawV1List {
    #[serde(default)]
    registries: Vec<String>,
}

impl RegistriesConf {
    /// Parses one file's `text`; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<RegistriesConf, MirrorsError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| MirrorsError::Parse {
            file: file.to_string(),
            reason: e.to_string().trim().to_string(),
        })?;
        let invalid = |prefix: &str, reason: &str| MirrorsError::Invalid {
            file: file.to_string(),
            prefix: prefix.to_string(),
            reason: reason.to_string(),
        };
        if raw.registries.is_some() && !raw.registry.is_empty() {
            return Err(MirrorsError::Parse {
                file: file.to_string(),
                reason: "it mixes the version 1 [registries.*] tables with version 2 [[registry]] tables; write it in one format".into(),
            });
        }
        let mut registries: Vec<RegistryEntry> = Vec::new();
        for r in raw.registry {
            let location = r.location.map(|l| trim_location(&l)).unwrap_or_default();
            let prefix = r.prefix.map(|p| trim_location(&p));
            let prefix = match prefix.filter(|p| !p.is_empty()) {
                Some(p) => p,
                None if location.is_empty() => {
                    return Err(invalid("", "it has neither prefix nor location"))
                }
                None => location.clone(),
            };
            if location.is_empty() && !prefix.starts_with("*.") {
                return Err(invalid(
                    &prefix,
                    "location is empty (only a *.domain prefix may leave it out)",
                ));
            }
            if prefix.starts_with("*.") && prefix.contains(['/', ':', '@']) {
                return Err(invalid(
                    &prefix,
                    "a wildcard prefix is a bare *.domain, with no port, path, tag or digest",
                ));
            }
            for l in std::iter::once(&location).chain(r.mirror.iter().map(|m| &m.location)) {
                if l.contains("://") {
                    return Err(invalid(&prefix, &format!("location {l:?} has a URL scheme; write host[:port][/namespace] and use insecure = true for plain HTTP")));
                }
            }
            if r.mirror_by_digest_only && r.mirror.iter().any(|m| m.pull_from_mirror.is_some()) {
                return Err(invalid(&prefix, "pull-from-mirror cannot be set on a mirror of a registry with mirror-by-digest-only"));
            }
            if registries.iter().any(|e| e.prefix == prefix) {
                return Err(invalid(&prefix, "this prefix is defined twice in the file"));
            }
            let mirrors = r
                .mirror
                .into_iter()
                .map(|m| Mirror {
                    location: trim_location(&m.location),
                    insecure: m.insecure,
                    pull_from: match m.pull_from_mirror {
                        Some(p) => p,
                        None if r.mirror_by_digest_only => PullFromMirror::DigestOnly,
                        None => PullFromMirror::All,
                    },
                })
                .collect::<Vec<_>>();
            if let Some(m) = mirrors.iter().find(|m| m.location.is_empty()) {
                return Err(invalid(
                    &prefix,
                    &format!("a [[registry.mirror]] has an empty location ({m:?})"),
                ));
            }
            registries.push(RegistryEntry {
                prefix,
                location,
                insecure: r.insecure,
                blocked: r.blocked,
                mirrors,
            });
        }
        if let Some(v1) = raw.registries {
            let lists = [(v1.insecure, true), (v1.block, false)];
            for (list, insecure) in lists {
                for host in list.map(|l| l.registries).unwrap_or_default() {
                    let host = trim_location(&host);
                    let entry = match registries.iter_mut().position(|e| e.prefix == host) {
                        Some(i) => &mut registries[i],
                        None => {
                            registries.push(RegistryEntry {
                                prefix: host.clone(),
                                location: host,
                                insecure: false,
                                blocked: false,
                                mirrors: Vec::new(),
                            });
                            registries.last_mut().expect("just pushed")
                        }
                    };
                    if insecure {
                        entry.insecure = true;
                    } else {
                        entry.blocked = true;
                    }
                }
            }
        }
        Ok(RegistriesConf { registries })
    }

    /// Lays `later` (a drop-in) over `self`: its tables replace those with
    /// the same prefix and add the others.
    pub fn merge(mut self, later: RegistriesConf) -> RegistriesConf {
        for entry in later.registries {
            match self
                .registries
                .iter_mut()
                .find(|e| e.prefix == entry.prefix)
            {
                Some(old) => *old = entry,
                None => self.registries.push(entry),
            }
        }
        self
    }

    /// The `[[registry]]` whose prefix is the longest match for `name`
    /// (`host[:port]/repo` with `:tag` or `@digest`), with the match length.
    fn entry_for(&self, name: &str) -> Option<&RegistryEntry> {
        self.registries
            .iter()
            .filter_map(|e| matched_len(name, &e.prefix).map(|n| (n, e)))
            // Longest wins; on a tie the exact prefix beats the wildcard.
            .max_by_key(|(n, e)| (*n, !e.prefix.starts_with("*.")))
            .map(|(_, e)| e)
    }

    /// Whether a push to `name` (`host[:port]/repo`) or a login at it (a
    /// bare `host[:port]`) may use plain HTTP and unverified certificates:
    /// its `[[registry]]`'s `insecure`, which applies whatever the operation;
    /// mirrors and `location` are for pulls only. A blocked one is refused
    /// (containers/image 5.23, `docker/docker_client.go` newDockerClient).
    pub fn destination_insecure(&self, name: &str) -> Result<bool, MirrorsError> {
        match self.entry_for(name) {
            Some(e) if e.blocked => Err(MirrorsError::BlockedDestination {
                name: name.to_string(),
                prefix: e.prefix.clone(),
            }),
            Some(e) => Ok(e.insecure),
            None => Ok(false),
        }
    }

    /// Where to pull `reference` from, in order: the mirrors its
    /// `[[registry]]` allows for a pull by tag or by digest, then its own
    /// location. An image no table matches is pulled where its name says.
    pub fn sources(&self, reference: &Reference) -> Result<Vec<Endpoint>, MirrorsError> {
        self.endpoints(reference, reference.digest.is_some())
    }

    /// Where to pull blobs of `repository` of `registry` from, for a host
    /// that fetches them by digest (the operator already resolved the tag):
    /// the endpoints of a pull by digest, without tag or digest.
    pub fn repository_sources(
        &self,
        registry: &str,
        repository: &str,
    ) -> Result<Vec<Endpoint>, MirrorsError> {
        let bare = Reference {
            registry: registry.to_string(),
            repository: repository.to_string(),
            tag: None,
            digest: None,
        };
        let mut out = self.endpoints(&bare, true)?;
        for e in &mut out {
            e.reference.tag = None;
        }
        Ok(out)
    }

    fn endpoints(
        &self,
        reference: &Reference,
        by_digest: bool,
    ) -> Result<Vec<Endpoint>, MirrorsError> {
        let name = reference.to_string();
        let Some(entry) = self.entry_for(&name) else {
            return Ok(vec![Endpoint {
                reference: reference.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(MirrorsError::Blocked {
                name,
                prefix: entry.prefix.clone(),
            });
        }
        let mut out = Vec::new();
        for m in &entry.mirrors {
            let allowed = match m.pull_from {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if allowed {
                out.push(Endpoint {
                    reference: rewrite(&name, entry, &m.location)?,
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        out.push(Endpoint {
            reference: if entry.location.is_empty() {
                reference.clone()
            } else {
                rewrite(&name, entry, &entry.location)?
            },
            insecure: entry.insecure,
            mirror: false,
        });
        Ok(out)
    }
}

/// Locations are compared without a trailing slash.
fn trim_location(s: &str) -> String {
    s.trim().trim_end_matches('/').to_string()
}

/// How much of `name` `prefix` matches: all of it, up to a `/`, `:` or `@`
/// (`host` matches `host/app` but not `hostile/app`); a `*.domain` prefix
/// matches the host part of any subdomain of it.
fn matched_len(name: &str, prefix: &str) -> Option<usize> {
    if let Some(domain) = prefix.strip_prefix('*') {
        let host_end = name.find('/').unwrap_or(name.len());
        let host = &name[..host_end];
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        return (host.len() > domain.len() && host.ends_with(domain)).then_some(host_end);
    }
    let rest = name.strip_prefix(prefix)?;
    // After a bare host, `:` would start a port, not a tag.
    let tag_allowed = prefix.contains('/');
    let fits =
        rest.is_empty() || rest.starts_with(['/', '@']) || (tag_allowed && rest.starts_with(':'));
    fits.then_some(prefix.len())
}

/// `name` with `entry`'s prefix replaced by `location`.
fn rewrite(name: &str, entry: &RegistryEntry, location: &str) -> Result<Reference, MirrorsError> {
    let fail = |reason: String| MirrorsError::Rewrite {
        name: name.to_string(),
        prefix: entry.prefix.clone(),
        location: location.to_string(),
        reason,
    };
    let rewritten = if entry.prefix.starts_with("*.") {
        // A wildcard maps only the host: the location takes its place.
        let host_end = name.find('/').unwrap_or(name.len());
        format!("{location}{}", &name[host_end..])
    } else {
        format!("{location}{}", &name[entry.prefix.len()..])
    };
    let parsed = Reference::parse(&rewritten).map_err(|e| fail(e.to_string()))?;
    // Without a host part, Reference::parse would read a bare location as
    // a Docker Hub repository: a mirror location always names its host.
    if !rewritten.starts_with(&format!("{}/", parsed.registry)) {
        return Err(fail(format!(
            "{rewritten} does not start with a registry host[:port]"
        )));
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
