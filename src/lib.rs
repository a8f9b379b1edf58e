//! sealrs: build, store, ship and apply Kubernetes cluster images.
//!
//! Pure modules (`kubefile`, `reference`, `layout`, `plan`, `runtime`, `cluster`) never touch the disk or the network;
//! `store` and `build` do the I/O; `cli` is the edge that turns flags into calls
//! and adds context to errors for people.
//!
//! Module order, lowest first. A module uses only modules of a lower level,
//! so there is no cycle between them (the test below reads every
//! `crate::` path in `src/` to hold this list to the code):
//!
//! 0. `arch`, `atomic_file`, `compression`, `digest`, `host_paths`, `ignore`,
//!    `progress`, `reference`, `secret`, `shell`, `template`: one home each for a low-level helper
//!    or a name both sides agree on; they need nothing of sealrs.
//! 1. `cluster`, `kubefile`, `layout`, `store`.
//! 2. `plan`, `registry`, `transport`.
//! 3. `harvest`, `runtime`.
//! 4. `build`, `installer`.
//! 5. `apply`.
//! 6. `cli`.

pub mod apply;
pub mod arch;
pub mod atomic_file;
pub mod build;
pub mod cli;
pub mod cluster;
pub mod compression;
pub mod digest;
pub mod harvest;
pub mod host_paths;
pub mod ignore;
pub mod installer;
pub mod kubefile;
pub mod layout;
pub mod plan;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod runtime;
pub mod secret;
pub mod shell;
pub mod store;
pub mod template;
pub mod transport;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Module → level, from the numbered list of this file's doc.
    fn stated_levels() -> BTreeMap<String, usize> {
        let mut levels = BTreeMap::new();
        let mut level = None;
        for line in include_str!("lib.rs").lines() {
            let Some(text) = line.strip_prefix("//! ") else {
                level = None;
                continue;
            };
            if let Some((n, _)) = text
                .split_once(". ")
                .filter(|(n, _)| n.parse::<usize>().is_ok())
            {
                level = n.parse().ok();
            } else if !text.starts_with("   ") {
                level = None;
            }
            let Some(level) = level else { continue };
            for name in text.split('`').skip(1).step_by(2) {
                assert!(
                    levels.insert(name.to_string(), level).is_none(),
                    "{name} twice"
                );
            }
        }
        levels
    }

    /// Where the code of module `path` names a top-level module through
    /// `crate::`: (file:line, module).
    fn uses(path: &Path) -> Vec<(String, String)> {
        let files: Vec<_> = if path.is_dir() {
            walkdir::WalkDir::new(path)
                .into_iter()
                .map(|e| e.unwrap().into_path())
                .filter(|p| p.extension().is_some_and(|e| e == "rs"))
                .collect()
        } else {
            vec![path.with_extension("rs")]
        };
        let mut out = Vec::new();
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (i, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for (at, _) in line.match_indices("crate::") {
                    let name: String = line[at + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let shown = file
                        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(&file);
                    out.push((format!("{}:{}", shown.display(), i + 1), name));
                }
            }
        }
        out
    }

    #[test]
    fn modules_use_only_modules_below_them() {
        let levels = stated_levels();
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut problems = Vec::new();
        for entry in std::fs::read_dir(&src).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            if name == "lib" || name == "main" {
                continue;
            }
            let Some(&level) = levels.get(&name) else {
                problems.push(format!("{name} is not in lib.rs's module order"));
                continue;
            };
            for (at, other) in uses(&src.join(&name)) {
                if levels
                    .get(&other)
                    .is_some_and(|&l| l >= level && other != name)
                {
                    problems.push(format!(
                        "{at}: {name} uses {other}, which lib.rs's module order does not put below it"
                    ));
                }
            }
        }
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}
