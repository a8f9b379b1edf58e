//! Image names, normalized the way docker does it.
//!
//! `nginx` means `docker.io/library/nginx:latest`; a first component with a
//! `.` or a `:`, or `localhost`, is a registry host. The local store keys every
//! image by the full normalized form, so `nginx`, `library/nginx` and
//! `docker.io/library/nginx:latest` all name the same image.

use std::fmt;

mod local;

pub use local::{parse_local, LocalRef};

pub const DEFAULT_REGISTRY: &str = "docker.io";
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<hex>`.
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("image name is empty")]
    Empty,
    #[error("invalid image name {input:?}: {reason}")]
    Invalid { input: String, reason: String },
}

impl Reference {
    /// Parses and normalizes `input`. A name with neither tag nor digest gets `:latest`.
    pub fn parse(input: &str) -> Result<Reference, ReferenceError> {
        let invalid = |reason: &str| ReferenceError::Invalid {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if input.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("it contains whitespace"));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, digest)) => {
                validate_digest(digest).map_err(|r| invalid(&r))?;
                (rest, Some(digest.to_string()))
            }
            None => (input, None),
        };
        // A tag is after the last ':' that comes after the last '/', so that
        // a registry port (`host:5000/app`) is not mistaken for a tag.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            None => (rest, None),
        };
        if let Some(tag) = &tag {
            validate_tag(tag).map_err(|r| invalid(&r))?;
        }
        if name.is_empty() {
            return Err(invalid("the repository name is empty"));
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, remainder))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                validate_registry(first).map_err(|r| invalid(&r))?;
                let registry = if first == "index.docker.io" {
                    DEFAULT_REGISTRY
                } else {
                    first
                };
                (registry.to_string(), remainder.to_string())
            }
            _ => (DEFAULT_REGISTRY.to_string(), name.to_string()),
        };
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        validate_repository(&repository).map_err(|r| invalid(&r))?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(invalid("the name is longer than 255 characters"));
        }
        let tag = match (tag, &digest) {
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (tag, _) => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

/// Normalizes a user-typed name to the key the store uses.
pub fn normalize(input: &str) -> Result<String, ReferenceError> {
    Reference::parse(input).map(|r| r.to_string())
}

fn validate_digest(digest: &str) -> Result<(), String> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format!("digest {digest:?} is not of the form sha256:<hex>"))?;
    let expected_len = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => return Err(format!("digest algorithm {algorithm:?} is not supported")),
    };
    if hex.len() != expected_len || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(format!(
            "digest {digest:?} must have {expected_len} lowercase hex characters"
        ));
    }
    Ok(())
}

fn validate_tag(tag: &str) -> Result<(), String> {
    let mut bytes = tag.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !first_ok || tag.len() > MAX_TAG_LEN || !tag.bytes().all(is_tag_byte) {
        return Err(format!(
            "tag {tag:?} must be 1-128 characters of letters, digits, '_', '.', '-', not starting with '.' or '-'"
        ));
    }
    Ok(())
}

fn is_tag_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn validate_registry(host: &str) -> Result<(), String> {
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(']') || name.starts_with('[') => (name, Some(port)),
        _ => (host, None),
    };
    if let Some(port) = port {
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err(format!(
                "registry port {port:?} is not a number from 1 to 65535"
            ));
        }
    }
    let is_ipv6 = name.starts_with('[') && name.ends_with(']');
    let ok = !name.is_empty()
        && (is_ipv6
            || name.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }));
    if !ok {
        return Err(format!("registry host {host:?} is not a valid host name"));
    }
    Ok(())
}

/// Path components: lowercase alphanumerics joined by `.`, `_`, `__` or runs of `-`.
fn validate_repository(repository: &str) -> Result<(), String> {
    if repository.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository {repository:?} must be lowercase"));
    }
    for component in repository.split('/') {
        if !is_valid_component(component) {
            return Err(format!(
                "path component {component:?} must be lowercase letters and digits, separated by '.', '_', '__' or '-'"
            ));
        }
    }
    Ok(())
}

fn is_valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        // A separator run: '.', '_', '__', or any number of '-'.
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|b| b == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        normalize(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn short_names_go_to_docker_hub_library_with_latest() {
        assert_eq!(norm("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(norm("library/nginx:1.25"), "docker.io/library/nginx:1.25");
        assert_eq!(norm("bitnami/redis"), "docker.io/bitnami/redis:latest");
        assert_eq!(norm("index.docker.io/x/y:2"), "docker.io/x/y:2");
    }

    #[test]
    fn registry_hosts_are_recognized_by_dot_colon_or_localhost() {
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(norm("127.0.0.1:5000/a/b:1"), "127.0.0.1:5000/a/b:1");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("myhost:5000/app"), "myhost:5000/app:latest");
    }

    #[test]
    fn digests_keep_or_drop_the_tag_as_written() {
        assert_eq!(
            norm(&format!("nginx@{DIGEST}")),
            format!("docker.io/library/nginx@{DIGEST}")
        );
        assert_eq!(
            norm(&format!("nginx:1@{DIGEST}")),
            format!("docker.io/library/nginx:1@{DIGEST}")
        );
        let r = Reference::parse(&format!("127.0.0.1:5000/x@{DIGEST}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(DIGEST));
    }

    #[test]
    fn bad_names_are_refused_with_a_reason() {
        for bad in [
            "",
            "Nginx",
            "nginx:",
            "nginx:-x",
            "a//b",
            "-a",
            "a-",
            "nginx@sha256:abc",
            "nginx@md5:0123",
            "host:0/app",
            "host:99999/app",
            "a b",
            "a..b",
            ":tag",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let err = Reference::parse("MyApp:1").unwrap_err().to_string();
        assert!(err.contains("lowercase"), "{err}");
    }

    #[test]
    fn separators_inside_components_follow_the_distribution_grammar() {
        for good in ["a_b", "a__b", "a.b", "a-b", "a---b", "a0"] {
            assert!(is_valid_component(good), "{good}");
        }
        for bad in ["a___b", "a._b", "_a", "a.", ""] {
            assert!(!is_valid_component(bad), "{bad}");
        }
    }

    #[test]
    fn long_tags_are_refused() {
        assert!(Reference::parse(&format!("a:{}", "x".repeat(128))).is_ok());
        assert!(Reference::parse(&format!("a:{}", "x".repeat(129))).is_err());
    }
}
