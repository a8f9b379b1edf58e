//! The COPY tree: everything one instruction puts into the image, keyed by
//! path, and how it splits into layers (big files first, one each).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::archive::open_archive;
use super::encode::looks_compressed;
use super::LayerOptions;
use crate::build::context::{self, Input, InputKind};
use crate::build::error::{BuildError, Instruction};
use crate::compression::Compression;
use crate::kubefile::CopyStep;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum LinkKey {
    /// A context file with several names (dev, inode).
    Inode(u64, u64),
    /// An archive member (archive number, data offset), shared by its hard links.
    Member(usize, u64),
}

#[derive(Debug, Clone)]
pub(super) enum Data {
    Disk(PathBuf),
    /// A member of an archive; read with positioned reads so that members can
    /// be visited in path order, not archive order.
    Member {
        archive: Arc<File>,
        offset: u64,
        name: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub(super) enum NodeKind {
    Dir,
    File {
        data: Data,
        size: u64,
        link: Option<LinkKey>,
    },
    Symlink(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub(super) mode: u32,
    /// False for parents we created; a copied directory's mode wins over them.
    pub(super) explicit: bool,
    pub(super) kind: NodeKind,
}

pub(super) static IMPLICIT_DIR: Node = Node {
    mode: 0o755,
    explicit: false,
    kind: NodeKind::Dir,
};

/// Everything one instruction puts into the image, keyed by path bytes
/// (relative, no trailing `/`), so iteration is the tar order.
pub(super) struct Tree<'a> {
    pub(super) nodes: BTreeMap<Vec<u8>, Node>,
    pub(super) step: &'a CopyStep,
    pub(super) instr: Instruction,
}

impl<'a> Tree<'a> {
    pub(super) fn build(step: &'a CopyStep, inputs: &[Input]) -> Result<Tree<'a>, BuildError> {
        let mut tree = Tree {
            nodes: BTreeMap::new(),
            step,
            instr: context::instruction_name(step),
        };
        let mode_of = |input: &Input| step.chmod.unwrap_or(input.meta.mode() & 0o7777);
        let mut archives = 0;
        for input in inputs {
            let node = match &input.kind {
                InputKind::Dir => Node {
                    mode: mode_of(input),
                    explicit: true,
                    kind: NodeKind::Dir,
                },
                InputKind::Symlink(target) => Node {
                    mode: 0o777,
                    explicit: true,
                    kind: NodeKind::Symlink(target.as_os_str().as_bytes().to_vec()),
                },
                InputKind::File => {
                    if input.maybe_archive {
                        if let Some(archive) = open_archive(step, &input.path)? {
                            archives += 1;
                            tree.extract(
                                &input.path,
                                Arc::new(archive),
                                archives,
                                &context::dest_rel(step),
                            )?;
                            continue;
                        }
                    }
                    Node {
                        mode: mode_of(input),
                        explicit: true,
                        kind: NodeKind::File {
                            data: Data::Disk(input.path.clone()),
                            size: input.meta.len(),
                            link: context::inode_key(&input.meta)
                                .map(|(dev, ino)| LinkKey::Inode(dev, ino)),
                        },
                    }
                }
            };
            tree.insert(&input.target, node)?;
        }
        Ok(tree)
    }

    fn conflict(&self, path: &[u8]) -> BuildError {
        BuildError::DestinationConflict {
            location: self.step.location.clone(),
            instruction: self.instr,
            path: String::from_utf8_lossy(path).into_owned(),
        }
    }

    /// Adds `node` at `path` with its parents; a later node replaces an earlier
    /// one at the same path, as a later COPY source overwrites an earlier one.
    pub(super) fn insert(&mut self, path: &Path, node: Node) -> Result<(), BuildError> {
        let key = path.as_os_str().as_bytes();
        if key.is_empty() {
            return Ok(()); // `/` itself is never an entry
        }
        for (i, _) in key.iter().enumerate().filter(|(_, b)| **b == b'/') {
            match self.nodes.get(&key[..i]) {
                Some(Node {
                    kind: NodeKind::Dir,
                    ..
                }) => {}
                Some(_) => return Err(self.conflict(&key[..i])),
                None => {
                    self.nodes.insert(key[..i].to_vec(), IMPLICIT_DIR.clone());
                }
            }
        }
        match self.nodes.get(key) {
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) if !matches!(node.kind, NodeKind::Dir) => {
                let mut lo = key.to_vec();
                lo.push(b'/');
                let mut hi = key.to_vec();
                hi.push(b'/' + 1);
                if self.nodes.range(lo..hi).next().is_some() {
                    return Err(self.conflict(key));
                }
            }
            Some(Node {
                kind: NodeKind::Dir,
                ..
            }) if !node.explicit => return Ok(()),
            _ => {}
        }
        self.nodes.insert(key.to_vec(), node);
        Ok(())
    }

    /// Splits the tree into layers: big files first (one each), then the rest.
    pub(super) fn plan(&self, opts: &LayerOptions) -> Vec<LayerPlan<'_>> {
        let mut names: HashMap<LinkKey, usize> = HashMap::new();
        for node in self.nodes.values() {
            if let NodeKind::File {
                link: Some(key), ..
            } = &node.kind
            {
                *names.entry(*key).or_default() += 1;
            }
        }
        let is_big = |node: &Node| match &node.kind {
            // A hard-linked file stays with its other names: links cannot cross layers.
            NodeKind::File { size, link, .. } => {
                *size >= opts.split_threshold && link.is_none_or(|k| names.get(&k) == Some(&1))
            }
            _ => false,
        };
        let mut plans = Vec::new();
        let mut rest = Vec::new();
        for (path, node) in &self.nodes {
            if !is_big(node) {
                rest.push((path.clone(), node));
                continue;
            }
            let mut entries: Vec<(Vec<u8>, &Node)> = path
                .iter()
                .enumerate()
                .filter(|(_, b)| **b == b'/')
                .map(|(i, _)| (path[..i].to_vec(), &IMPLICIT_DIR))
                .collect();
            entries.push((path.clone(), node));
            let compression = match (&node.kind, opts.compression) {
                (_, Compression::None) => Compression::None,
                (NodeKind::File { data, size, .. }, chosen) => {
                    if looks_compressed(data, *size) {
                        Compression::None
                    } else {
                        chosen
                    }
                }
                (_, chosen) => chosen,
            };
            plans.push(LayerPlan {
                label: format!("{} /{}", self.instr, String::from_utf8_lossy(path)),
                entries,
                compression,
            });
        }
        if !rest.is_empty() || plans.is_empty() {
            plans.push(LayerPlan {
                label: format!("{} {}", self.instr, self.step.dest),
                entries: rest,
                compression: opts.compression,
            });
        }
        plans
    }
}

/// One layer to write: its entries in tar order and how to compress them.
pub(super) struct LayerPlan<'a> {
    pub(super) label: String,
    pub(super) entries: Vec<(Vec<u8>, &'a Node)>,
    pub(super) compression: Compression,
}
