//! Where plugins are found: a path in the config, or a name on the search path
//! (`SPLITBENCH_PLUGIN_PATH`, then the folder of the splitbench binary).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error(
    "plugin `{name}` not found. Searched {searched} for the file names {tried}. Build the \
     workspace's plugins with `cargo build --release --workspace`, put the folder holding your \
     plugin on SPLITBENCH_PLUGIN_PATH, or give a path to the .so"
)]
pub struct NotFound {
    pub name: String,
    pub searched: String,
    pub tried: String,
}

#[derive(Debug, Clone)]
pub struct PluginSearch {
    pub dirs: Vec<PathBuf>,
}

impl PluginSearch {
    pub fn from_env() -> PluginSearch {
        let mut dirs: Vec<PathBuf> = std::env::var_os("SPLITBENCH_PLUGIN_PATH")
            .map(|v| {
                std::env::split_paths(&v)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(exe_dir) = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            dirs.push(exe_dir);
        }
        PluginSearch { dirs }
    }

    /// File names tried for a plugin name, e.g. `intq` → `libsplitbench_codec_intq.so`.
    pub fn file_names(name: &str) -> Vec<String> {
        let ext = std::env::consts::DLL_EXTENSION;
        let prefix = std::env::consts::DLL_PREFIX;
        let snake = name.replace('-', "_");
        vec![
            format!("{prefix}splitbench_codec_{snake}.{ext}"),
            format!("{prefix}{snake}.{ext}"),
            format!("{snake}.{ext}"),
            name.to_string(),
        ]
    }

    /// A spec with a path separator or a library extension is a path (relative to `base_dir`);
    /// anything else is a name looked up on the search path.
    pub fn resolve(&self, spec: &str, base_dir: &Path) -> Result<PathBuf, NotFound> {
        let looks_like_path = spec.contains('/') || spec.ends_with(std::env::consts::DLL_EXTENSION);
        if looks_like_path {
            let p = Path::new(spec);
            let p = if p.is_absolute() {
                p.to_path_buf()
            } else {
                base_dir.join(p)
            };
            if p.is_file() {
                return Ok(p);
            }
            return Err(NotFound {
                name: spec.to_string(),
                searched: format!("`{}`", p.display()),
                tried: "(the path as given)".into(),
            });
        }
        let names = Self::file_names(spec);
        for dir in &self.dirs {
            for name in &names {
                let p = dir.join(name);
                if p.is_file() {
                    return Ok(p);
                }
            }
        }
        Err(NotFound {
            name: spec.to_string(),
            searched: if self.dirs.is_empty() {
                "no folders".into()
            } else {
                self.dirs
                    .iter()
                    .map(|d| format!("`{}`", d.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            tried: names.join(", "),
        })
    }

    /// Every shared library in the search folders, sorted, each once.
    pub fn candidates(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
                })
                .collect();
            found.sort();
            for p in found {
                let canonical = p.canonicalize().unwrap_or(p);
                if !out.contains(&canonical) {
                    out.push(canonical);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_tried() {
        let names = PluginSearch::file_names("my-codec");
        assert_eq!(names[0], "libsplitbench_codec_my_codec.so");
        assert!(names.contains(&"libmy_codec.so".to_string()));
    }

    #[test]
    fn not_found_lists_folders_and_names() {
        let search = PluginSearch {
            dirs: vec!["/nonexistent-a".into(), "/nonexistent-b".into()],
        };
        let err = search
            .resolve("intq", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/nonexistent-a") && err.contains("/nonexistent-b"),
            "{err}"
        );
        assert!(err.contains("libsplitbench_codec_intq.so"), "{err}");
    }
}
