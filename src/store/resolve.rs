//! Every named image read on its own, so that one broken image neither hides
//! the others from `images` nor stops a lookup by IMAGE ID or digest.

use oci_spec::image::{Descriptor, Digest};

use super::error::StoreError;
use super::{Store, StoredImage, TaggedImage};

/// A name in `index.json` and what became of reading its image.
#[derive(Debug)]
pub struct ListedImage {
    pub name: String,
    /// The manifest the name points to.
    pub descriptor: Descriptor,
    /// The config digest (what `images` shows as IMAGE ID), when the manifest can be read.
    pub config_digest: Option<Digest>,
    /// The image, or why it cannot be used (a missing or corrupt blob).
    pub image: Result<StoredImage, StoreError>,
}

/// How an image is named other than by its name, as docker and podman allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageId<'a> {
    /// A whole digest, `sha256:<64 hex>`: the manifest's or the config's.
    Digest(&'a str),
    /// The start of the config digest's hex: the IMAGE ID `images` prints.
    IdPrefix(&'a str),
}

impl ListedImage {
    /// Whether `id` names this image.
    pub fn matches(&self, id: ImageId<'_>) -> bool {
        let config = self.config_digest.as_ref();
        match id {
            ImageId::Digest(digest) => {
                self.descriptor.digest().as_ref() == digest
                    || config.is_some_and(|c| c.as_ref() == digest)
            }
            ImageId::IdPrefix(prefix) => config.is_some_and(|c| c.digest().starts_with(prefix)),
        }
    }
}

impl Store {
    /// Every named image, sorted by name, each read and checked for missing
    /// blobs (sizes stat'ed, manifest and config re-hashed) on its own.
    pub fn list_images(&self) -> Result<Vec<ListedImage>, StoreError> {
        let mut out = Vec::new();
        for TaggedImage { name, descriptor } in self.list()? {
            let image = self
                .ensure_complete(&descriptor)
                .and_then(|()| self.image(&name));
            if let Err(StoreError::ImageNotFound { .. }) = image {
                continue; // removed since the index was read
            }
            let config_digest = match &image {
                Ok(image) => Some(image.config_digest.clone()),
                Err(_) => self
                    .read_manifest(&descriptor)
                    .ok()
                    .map(|m| m.config().digest().clone()),
            };
            out.push(ListedImage {
                name,
                descriptor,
                config_digest,
                image,
            });
        }
        Ok(out)
    }

    /// The named images that `id` names, broken ones included (a caller that
    /// needs the image finds the reason in [`ListedImage::image`]).
    pub fn find_by_id(&self, id: ImageId<'_>) -> Result<Vec<ListedImage>, StoreError> {
        let mut found = self.list_images()?;
        found.retain(|image| image.matches(id));
        Ok(found)
    }
}
