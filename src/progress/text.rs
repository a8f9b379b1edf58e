//! How counts, sizes and digests read in messages: one way everywhere.

/// `1 layer`, `3 layers`, `2 directories`: `noun` is the singular; its
/// plural adds `s` (`y` after a consonant becomes `ies`).
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        return format!("1 {noun}");
    }
    match noun.strip_suffix('y') {
        Some(stem) if !stem.ends_with(['a', 'e', 'i', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// A size for people in decimal units, as `docker images` prints them
/// (`999 B`, `5.1 kB`, `93.5 MB`): the one unit of sealrs' messages.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The first 12 hex digits of a digest (its `sha256:` dropped), as `sealrs
/// images` shows IMAGE IDs: what a person compares, in a line that fits.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

/// `text` with each SHA-256 hex digest in it cut to its first 12 digits and
/// `…` (a rootfs path on a host, say), so that a line fits on a screen.
pub fn shorten_digests(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() == 64 {
            out.push_str(&run[..12]);
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if c.is_ascii_hexdigit() {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The candidate `word` most likely misspells (case ignored): within a third
/// of its length of edits, at least one. For "did you mean …?" in messages.
pub fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let word = word.to_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(&word, &c.to_lowercase()), *c))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

/// The line the installer prints as a plan's step starts: "[7/15] start k3s.service".
pub fn step_line(number: usize, planned: usize, title: &str) -> String {
    format!("[{number}/{planned}] {title}")
}

/// Whether `line` is a [`step_line`]: the operator shows those while a host works.
pub fn is_step_line(line: &str) -> bool {
    let Some((count, _)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
        return false;
    };
    count.split_once('/').is_some_and(|(n, m)| {
        [n, m]
            .iter()
            .all(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The line the installer prints for each line a hook step's program writes,
/// as it comes: "hook-init| text", `step` being the step's id.
pub fn output_line(step: &str, text: &str) -> String {
    format!("{step}| {text}")
}

/// The step id and the text of an [`output_line`]; `None` for other lines.
pub fn parse_output_line(line: &str) -> Option<(&str, &str)> {
    let (step, text) = line.split_once("| ")?;
    let id = !step.is_empty()
        && step
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    id.then_some((step, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_line_is_recognised_and_other_installer_lines_are_not() {
        assert!(is_step_line(&step_line(7, 15, "start k3s.service")));
        for other in [
            "changed   [start] start k3s.service",
            "[7/] x",
            "[a/15] x",
            "[7/15]x",
            "",
        ] {
            assert!(!is_step_line(other), "{other:?}");
        }
    }

    #[test]
    fn an_output_line_gives_back_its_step_and_text_and_other_lines_are_not_output() {
        let line = output_line("hook-init", "a | b");
        assert_eq!(parse_output_line(&line), Some(("hook-init", "a | b")));
        assert_eq!(parse_output_line("hook-init| "), Some(("hook-init", "")));
        for other in [
            &step_line(7, 15, "run the image's init hook (label)"),
            "changed   [hook-init] run the image's init hook (label)",
            "          | exit 3",
            "unpacked 2 layers in /x",
            "| x",
        ] {
            assert_eq!(parse_output_line(other), None, "{other:?}");
        }
    }

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1, "layer"), "1 layer");
        assert_eq!(count(0, "host"), "0 hosts");
        assert_eq!(count(3, "problem"), "3 problems");
        assert_eq!(count(2, "directory"), "2 directories");
        assert_eq!(count(2, "key"), "2 keys");
    }

    #[test]
    fn sizes_read_like_docker_images_output() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(5127), "5.1 kB");
        assert_eq!(size(1_500_000), "1.5 MB");
        assert_eq!(size(93_537_280), "93.5 MB");
    }

    #[test]
    fn digests_shorten_to_the_image_id_length() {
        let d = "sha256:cb5669b1290759d9196f670b2e6b05ebed0c8eabf84a132213215776b252ee0a";
        assert_eq!(short_digest(d), "cb5669b12907");
        assert_eq!(short_digest("abc"), "abc");
        let path = format!("/var/lib/sealrs-host/rootfs/{}", &d[7..]);
        assert_eq!(
            shorten_digests(&format!("unpacked in {path} in 0.1s")),
            "unpacked in /var/lib/sealrs-host/rootfs/cb5669b12907… in 0.1s"
        );
        assert_eq!(shorten_digests("v1.30.2 deadbeef"), "v1.30.2 deadbeef");
    }

    #[test]
    fn closest_finds_a_near_miss_and_nothing_for_a_different_word() {
        assert_eq!(closest("COPPY", &["ADD", "COPY", "FROM"]), Some("COPY"));
        assert_eq!(closest("k3z", &["k0s", "k3s", "kubeadm"]), Some("k3s"));
        assert_eq!(
            closest("kubeadmm", &["k0s", "k3s", "kubeadm"]),
            Some("kubeadm")
        );
        assert_eq!(closest("docker", &["k0s", "k3s", "kubeadm"]), None);
    }
}
