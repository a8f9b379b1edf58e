//! The local store: a plain OCI image layout under `$SEALRS_ROOT/oci`.
