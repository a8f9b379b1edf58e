//! From what a person typed to the names of the store, once for every local
//! command: a name, `docker://NAME`, `NAME@sha256:…`, an IMAGE ID (or its
//! start) or a digest, as docker and podman take them.

use anyhow::{bail, Result};

use crate::progress::text::short_digest;
use crate::reference::{self, LocalRef, Reference};
use crate::store::{Descriptor, ImageId, ListedImage, Store};

/// One image of the store and the names to act on.
#[derive(Debug)]
pub(super) struct Found {
    /// The name given, or every name of the image given by ID or digest (sorted).
    pub names: Vec<String>,
    /// The manifest.
    pub descriptor: Descriptor,
    /// Named by IMAGE ID or digest rather than by one of its names.
    pub by_id: bool,
}

/// The image `input` names. Fails when none does, or when an ID prefix fits
/// several images (the error lists them).
pub(super) fn resolve(store: &Store, input: &str) -> Result<Found> {
    let by_name = |name: &Reference| -> Result<Option<Found>> {
        let full = name.to_string();
        Ok(store.lookup(&full)?.map(|descriptor| Found {
            names: vec![full],
            descriptor,
            by_id: false,
        }))
    };
    match reference::parse_local(input)? {
        LocalRef::Name(name) => {
            if let Some(found) = by_name(&name)? {
                return Ok(found);
            }
            if let Some(digest) = &name.digest {
                // NAME@DIGEST: that repository's image with that digest, whatever its tag.
                let mut found = store.find_by_id(ImageId::Digest(digest))?;
                found.retain(|image| repository(&image.name) == Some(name.name()));
                if !found.is_empty() {
                    return one_image(input, found);
                }
            }
            bail!("no such image: {name} is not in the local store (see `sealrs images`)")
        }
        LocalRef::Digest(digest) => one_image(input, store.find_by_id(ImageId::Digest(&digest))?),
        LocalRef::IdPrefix { prefix, name } => {
            if let Some(found) = name.as_ref().map(by_name).transpose()?.flatten() {
                return Ok(found);
            }
            one_image(input, store.find_by_id(ImageId::IdPrefix(&prefix))?)
        }
    }
}

/// The name to hand to commands that take names (run, upgrade): an IMAGE ID or
/// digest becomes one of the image's names; a name is passed on, normalized,
/// for the command to report on if it is not in the store.
pub(super) fn name_for(store: &Store, input: &str) -> Result<String> {
    match reference::parse_local(input)? {
        LocalRef::Name(name) if name.digest.is_none() => Ok(name.to_string()),
        _ => Ok(resolve(store, input)?.names.swap_remove(0)),
    }
}

fn repository(stored_name: &str) -> Option<String> {
    Reference::parse(stored_name).ok().map(|r| r.name())
}

/// The one image among `found` (its names may be several), or why not.
fn one_image(input: &str, found: Vec<ListedImage>) -> Result<Found> {
    let Some(first) = found.first() else {
        bail!("no such image: {input} is neither a name nor an IMAGE ID or digest in the local store (see `sealrs images`)");
    };
    let descriptor = first.descriptor.clone();
    if found
        .iter()
        .any(|i| i.descriptor.digest() != descriptor.digest())
    {
        // One entry per image, with the names it has.
        let mut images: Vec<(&Descriptor, String, Vec<&str>)> = Vec::new();
        for i in &found {
            match images
                .iter_mut()
                .find(|(d, ..)| d.digest() == i.descriptor.digest())
            {
                Some((.., names)) => names.push(&i.name),
                None => {
                    let id = i
                        .config_digest
                        .as_ref()
                        .map_or("?", |d| short_digest(d.as_ref()));
                    images.push((&i.descriptor, id.to_string(), vec![&i.name]));
                }
            }
        }
        let candidates: Vec<String> = images
            .iter()
            .map(|(_, id, names)| format!("{id} ({})", names.join(", ")))
            .collect();
        bail!(
            "{input} is ambiguous: it fits the images {}; give more of the IMAGE ID, a digest or a name",
            candidates.join(", ")
        );
    }
    Ok(Found {
        names: found.into_iter().map(|i| i.name).collect(),
        descriptor,
        by_id: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_ids_are_the_first_twelve_hex_characters() {
        assert_eq!(short_digest("sha256:0123456789abcdef"), "0123456789ab");
    }
}
