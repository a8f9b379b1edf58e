//! What a person may type to name an image of the local store, as docker and
//! podman allow: a name (also `docker://NAME` or `NAME@sha256:…`), the IMAGE
//! ID that `images` prints (or its start), or a manifest or config digest.
//! Other tools' transports (`oci:DIR:REF`, …) are refused with the way in.

use super::{Reference, ReferenceError};

/// An image of the local store as the user named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LocalRef {
    /// A name, normalized; `NAME@sha256:…` carries the digest.
    Name(Reference),
    /// A whole `sha256:<64 hex>`: the manifest's digest or the config's (the full IMAGE ID).
    Digest(String),
    /// Hex that may start an IMAGE ID. When it is also a valid name, that
    /// name is looked up first, as docker does.
    IdPrefix {
        prefix: String,
        name: Option<Reference>,
    },
}

/// Transports of skopeo and podman that name images outside the store, and how
/// to bring such an image in.
const TRANSPORTS: [(&str, &str); 5] = [
    (
        "oci",
        "copy it into an archive and load that: `skopeo copy oci:DIR:REF oci-archive:image.tar` then `sealrs load -i image.tar`",
    ),
    ("oci-archive", "load the archive: `sealrs load -i FILE`"),
    ("docker-archive", "load the archive: `sealrs load -i FILE`"),
    (
        "containers-storage",
        "`podman save --format oci-archive -o image.tar IMAGE` then `sealrs load -i image.tar`",
    ),
    (
        "docker-daemon",
        "`docker save -o image.tar IMAGE` then `sealrs load -i image.tar`",
    ),
];

/// Parses what a local command (inspect, tag, rmi, save, push, run) was given.
pub fn parse_local(input: &str) -> Result<LocalRef, ReferenceError> {
    if let Some(name) = input.strip_prefix("docker://") {
        // skopeo's spelling of a registry name: the name itself.
        return Reference::parse(name).map(LocalRef::Name);
    }
    if let Some(hint) = transport_hint(input) {
        return Err(ReferenceError::Invalid {
            input: input.to_string(),
            reason: format!("it names an image outside the sealrs store; {hint}"),
        });
    }
    let hex = input.strip_prefix("sha256:").unwrap_or(input);
    let is_hex = !hex.is_empty()
        && hex.len() <= 64
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match (is_hex, hex.len()) {
        (true, 64) => Ok(LocalRef::Digest(format!("sha256:{hex}"))),
        (true, _) => Ok(LocalRef::IdPrefix {
            prefix: hex.to_string(),
            name: Reference::parse(input).ok(),
        }),
        (false, _) => Reference::parse(input).map(LocalRef::Name),
    }
}

/// The fix for `TRANSPORT:WHERE`, when `input` is one. `oci:1.0` stays the
/// image `oci` tagged `1.0`: a transport needs a path (`/`), a reference
/// (`:`) or an archive file name after it.
fn transport_hint(input: &str) -> Option<&'static str> {
    TRANSPORTS.iter().find_map(|(transport, hint)| {
        let rest = input.strip_prefix(transport)?.strip_prefix(':')?;
        let is_place = rest.is_empty()
            || rest.contains(['/', ':'])
            || [".tar", ".tar.gz", ".tgz"]
                .iter()
                .any(|s| rest.ends_with(s));
        is_place.then_some(*hint)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn name(s: &str) -> LocalRef {
        LocalRef::Name(Reference::parse(s).unwrap())
    }

    #[test]
    fn names_digests_and_id_prefixes_are_told_apart() {
        assert_eq!(parse_local("app:1").unwrap(), name("app:1"));
        assert_eq!(parse_local("docker://app:1").unwrap(), name("app:1"));
        assert_eq!(
            parse_local(&format!("app@sha256:{HEX}")).unwrap(),
            name(&format!("app@sha256:{HEX}"))
        );
        for digest in [format!("sha256:{HEX}"), HEX.to_string()] {
            assert_eq!(
                parse_local(&digest).unwrap(),
                LocalRef::Digest(format!("sha256:{HEX}"))
            );
        }
        assert_eq!(
            parse_local("c9a5a633d915").unwrap(),
            LocalRef::IdPrefix {
                prefix: "c9a5a633d915".into(),
                name: Some(Reference::parse("c9a5a633d915").unwrap()),
            }
        );
        assert!(matches!(
            parse_local("sha256:c9a5").unwrap(),
            LocalRef::IdPrefix { prefix, .. } if prefix == "c9a5"
        ));
    }

    #[test]
    fn other_transports_are_refused_with_the_way_in() {
        let err = parse_local("oci:/tmp/layout:app").unwrap_err().to_string();
        assert!(err.contains("skopeo copy oci:DIR:REF"), "{err}");
        let err = parse_local("docker-archive:f.tar").unwrap_err().to_string();
        assert!(err.contains("sealrs load -i"), "{err}");
        assert_eq!(parse_local("oci:1.0").unwrap(), name("oci:1.0"));
    }
}
