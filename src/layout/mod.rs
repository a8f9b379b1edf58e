//! Rootfs layouts: what a cluster image for k3s, kubeadm or k0s (or an
//! application) must and may carry, what each file must be, and where it lands
//! on a host.
//!
//! The facts live in `layouts/*.toml`, every one of them embedded in the binary
//! (`build.rs` lists the directory) so that an installed sealrs needs no data
//! files and a new distribution's layout needs no code edit. Rust code
//! only interprets them: no rootfs or host path of a layout appears here. The
//! same data drives validation at build time ([`evaluate`]) and placement on
//! hosts ([`Layout::placements`], [`Layout::place`]), so the two cannot drift.
//!
//! # The layout files
//!
//! ```toml
//! name = "k3s"                 # the layout's name, shown in messages
//! type = "rootfs"              # rootfs | application: which images it is for
//! runtime = "k3s"              # rootfs layouts: the runtime (sealrs.io/runtime)
//! runtime_aliases = []         # other names of the runtime (sealos's): the only alias table
//! marker = "bin/k3s"           # a rootfs holding this file is for this runtime
//! required_labels = ["version"]
//! [images]                     # for harvesting (the registry module)
//! lists = "images/shim/*"      # image reference lists, one a line
//! archives = "images/"         # where harvested archives are written
//! archive_format = "oci-archive"
//! [[rule]]                     # the first rule whose glob matches a file decides
//! path = "bin/k3s"             # glob in the rootfs; `*` stops at `/`, `**` does not
//! kind = "executable"          # executable | script | image-archive | image-list |
//!                              # yaml | toml | file | forbidden
//! required = true              # at least one file must match
//! host = "/usr/local/bin/k3s"  # where it lands; a trailing `/` is a directory that
//!                              # receives the path below the glob's literal prefix
//! mode = 0o755                 # default 0755 for executables and scripts, else 0644
//! on = "all"                   # all | control-plane | workers (hosts that run workloads)
//! import = "containerd"        # image archives the installer imports itself
//! about = "the k3s binary"     # why the file is there; shown in messages
//! ```
//!
//! # Which images are checked
//!
//! The image type comes from `sealrs.io/type` (or the sealos aliases, see
//! [`labels`], the one reader of an image's type, runtime and [`version`] for
//! build, inspect and run). A `rootfs` image is checked against its runtime's
//! layout; the runtime comes from `sealrs.io/runtime` or, when that is missing,
//! from the marker file found in the rootfs (the inference is reported, and
//! build writes it as the label that run reads). An
//! `application` image is checked against `application.toml`. A `patch` image
//! is checked against its runtime's layout with nothing required, since it
//! overlays a rootfs. An image without a type label is not a cluster image as
//! far as sealrs can tell: it is not checked (a note says so when it looks like
//! a rootfs), because guessing would refuse images that are fine.
//!
//! # Purity
//!
//! [`spec`], [`labels`], [`version`] and [`check`] are pure. [`probe`] and [`scan`] read
//! from readers that the caller opens (store blobs at build and inspect time):
//! they never open a file or a socket themselves.

pub mod check;
pub mod error;
pub mod labels;
pub mod probe;
pub mod scan;
pub mod spec;
pub mod version;

pub use check::{check_for_host, evaluate, Component, Entry, EntryType, Facts, Rootfs, Verdict};
pub use error::{LayoutError, Problem, ScanError};
pub use labels::{ClusterInfo, ImageType, Source, Sourced};
pub use scan::scan_layers;
pub use spec::{HostTarget, Hosts, ImageSpec, Kind, Layout, Layouts, Placement, Rule};
pub use version::{Version, VersionError};
