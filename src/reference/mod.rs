//! Image names, normalized the way docker does it.
