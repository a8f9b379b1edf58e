//! OCI architecture names (`amd64`, `arm64`, `ppc64le`, ...) for what a
//! machine calls itself: `uname -m`, Rust's target, Go's and Debian's
//! aliases, an ELF header. One table, so that a host, an image and a binary
//! are compared by the same names.
//!
//! OCI, like Go, calls little-endian 64-bit POWER `ppc64le` and big-endian
//! `ppc64`; Kubernetes ships only the first. Rust names both `powerpc64`, and
//! ELF both machine 21, so the byte order is what tells them apart.

/// The OCI name of an architecture as `uname -m`, Rust, Go or Debian spell
/// it; an unknown name comes back as it is.
pub fn normalize(name: &str) -> &str {
    match name {
        "x86_64" | "x86-64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "armv7l" | "armv6l" | "armhf" | "armel" | "arm" => "arm",
        "i386" | "i686" | "x86" | "386" => "386",
        "ppc64le" | "powerpc64le" => "ppc64le",
        "ppc64" | "powerpc64" => "ppc64",
        "riscv64" | "riscv64gc" => "riscv64",
        "loongarch64" | "loong64" => "loong64",
        other => other,
    }
}

/// The OCI name of this machine's architecture.
pub fn host() -> &'static str {
    match std::env::consts::ARCH {
        // Rust's name does not say the byte order; the target does.
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        other => normalize(other),
    }
}

/// OCI name, ELF `e_machine`, big-endian: for the architectures Kubernetes
/// ships, and the two POWERs.
const ELF: &[(&str, u16, bool)] = &[
    ("386", 3, false),
    ("arm", 40, false),
    ("amd64", 62, false),
    ("arm64", 183, false),
    ("ppc64le", 21, false),
    ("ppc64", 21, true),
    ("s390x", 22, true),
    ("riscv64", 243, false),
    ("loong64", 258, false),
];

/// The OCI name of an ELF object's `e_machine` and byte order.
pub fn of_elf(machine: u16, big_endian: bool) -> Option<&'static str> {
    ELF.iter()
        .find(|(_, m, be)| (*m, *be) == (machine, big_endian))
        .map(|(name, ..)| *name)
}

/// [`of_elf`] for messages: the OCI name, else `machine N`.
pub fn elf_name(machine: u16, big_endian: bool) -> String {
    of_elf(machine, big_endian).map_or_else(|| format!("machine {machine}"), str::to_string)
}

/// The ELF `e_machine` and byte order (big-endian: `true`) of an OCI name.
pub fn elf_machine(arch: &str) -> Option<(u16, bool)> {
    ELF.iter()
        .find(|(name, ..)| *name == arch)
        .map(|(_, m, be)| (*m, *be))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_names_map_to_oci_names() {
        for (name, oci) in [
            ("x86_64", "amd64"),
            ("aarch64", "arm64"),
            ("arm64", "arm64"),
            ("armv7l", "arm"),
            ("i686", "386"),
            ("ppc64le", "ppc64le"),
            ("ppc64", "ppc64"),
            ("powerpc64", "ppc64"),
            ("s390x", "s390x"),
            ("riscv64", "riscv64"),
            ("loongarch64", "loong64"),
            ("mips", "mips"),
        ] {
            assert_eq!(normalize(name), oci, "{name}");
        }
        assert_eq!(normalize(host()), host());
    }

    #[test]
    fn elf_machines_keep_the_byte_order_apart() {
        assert_eq!(of_elf(21, false), Some("ppc64le"));
        assert_eq!(of_elf(21, true), Some("ppc64"));
        assert_eq!(elf_machine("ppc64le"), Some((21, false)));
        assert_eq!(elf_machine("ppc64"), Some((21, true)));
        assert_eq!(elf_machine("amd64"), Some((62, false)));
        assert_eq!(elf_name(62, false), "amd64");
        assert_eq!(elf_name(9999, false), "machine 9999");
        for (name, machine, big) in ELF {
            assert_eq!(of_elf(*machine, *big), Some(*name));
            assert_eq!(normalize(name), *name);
        }
    }
}
