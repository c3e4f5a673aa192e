//! The subcommands, one module each; `cli` parses the arguments and calls one of these.

pub mod bench;
pub mod bench_decode;
pub mod capture;
pub mod check_device;
pub mod codec_roundtrip;
pub mod merge;
pub mod plugins;
pub mod report;
pub mod run;
pub mod synth_model;
pub mod tokenize;

use std::path::{Component, Path, PathBuf};

/// `path` as the user should see it printed: without `.`, `..` or symlinks (the part of the
/// path that exists is canonicalized), and relative to the current directory, with `..` where
/// it lies beside it; absolute when the two share nothing below the root (`/tmp/x` seen from
/// `/work/main`). `configs/../runs/x` becomes `runs/x`.
pub(crate) fn relative_to_cwd(path: &Path) -> PathBuf {
    let Ok(cwd) = std::env::current_dir().and_then(|d| d.canonicalize()) else {
        return path.to_path_buf();
    };
    let absolute = canonical(&cwd.join(path));
    let (ours, theirs): (Vec<_>, Vec<_>) =
        (absolute.components().collect(), cwd.components().collect());
    let common = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
    // Only the root (or a drive prefix and its root) in common: the absolute path reads better.
    let roots = ours
        .iter()
        .take_while(|c| matches!(c, Component::RootDir | Component::Prefix(_)))
        .count();
    if roots == 0 || common <= roots {
        return absolute;
    }
    let mut relative: PathBuf = theirs[common..]
        .iter()
        .map(|_| Component::ParentDir)
        .collect();
    relative.extend(&ours[common..]);
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// The longest existing ancestor of `path` canonicalized, the rest (not yet created) appended
/// with `.` dropped and `..` taken off lexically.
fn canonical(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut existing = path;
    let base = loop {
        if let Ok(c) = existing.canonicalize() {
            break c;
        }
        match (existing.parent(), existing.components().next_back()) {
            (Some(parent), Some(last)) => {
                rest.push(last);
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    };
    rest.into_iter().rev().fold(base, |mut p, c| {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                p.pop();
            }
            c => p.push(c),
        }
        p
    })
}

#[cfg(test)]
mod tests {
    use super::relative_to_cwd;
    use std::path::Path;

    #[test]
    fn printed_paths_are_canonical_and_relative_to_the_current_directory() {
        let cwd = std::env::current_dir().unwrap().canonicalize().unwrap();
        let shown = relative_to_cwd;
        assert_eq!(shown(Path::new("src/../src/x")), Path::new("src/x"));
        assert_eq!(shown(Path::new("./not/yet/../made")), Path::new("not/made"));
        assert_eq!(shown(&cwd), Path::new("."));
        let (parent, name) = (cwd.parent().unwrap(), cwd.file_name().unwrap());
        if parent.parent().is_some() {
            assert_eq!(shown(&parent.join("beside")), Path::new("../beside"));
        }
        assert_eq!(shown(&parent.join(name).join("a")), Path::new("a"));
        // Nothing in common below the root: absolute.
        let top = cwd
            .components()
            .nth(1)
            .unwrap()
            .as_os_str()
            .to_string_lossy();
        let elsewhere = Path::new("/").join(format!("{top}-elsewhere/x"));
        assert_eq!(shown(&elsewhere), elsewhere);
    }
}
