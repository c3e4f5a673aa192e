//! The run folder: the one place that names the files a run writes, so the sweep, `report` and
//! the plots agree on them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write `{path}`: {source}. Check that output.dir is writable, or point it elsewhere with --set output.dir=...")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// A run's folder (`<output.dir>/<run id>`) and the names of what is in it.
#[derive(Debug, Clone)]
pub struct RunDir {
    id: String,
    path: PathBuf,
}

impl RunDir {
    /// A fresh folder for this run under `output_dir`; never reuses an existing one.
    pub fn create(output_dir: &Path, stem: &str) -> Result<RunDir, WriteError> {
        let err = |path: &Path, source| WriteError {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(output_dir).map_err(|e| err(output_dir, e))?;
        let base = format!("{}-{stem}", chrono::Utc::now().format("%Y%m%dT%H%M%SZ"));
        for n in 0.. {
            let id = if n == 0 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = output_dir.join(&id);
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(RunDir { id, path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(err(&path, e)),
            }
        }
        unreachable!("an unbounded counter always finds a free name")
    }

    /// A folder a run already wrote (to resume or report); its name is the run id.
    pub fn existing(path: &Path) -> RunDir {
        let id = path.file_name().map(|n| n.to_string_lossy().to_string());
        RunDir {
            id: id.unwrap_or_default(),
            path: path.to_path_buf(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What must not change when the run is resumed.
    pub fn identity(&self) -> PathBuf {
        self.path.join("run.json")
    }

    pub fn summary(&self) -> PathBuf {
        self.path.join("summary.json")
    }

    /// The live curve of the codec at `index` of the sweep: one JSON line per batch.
    pub fn batches(&self, index: usize, codec: &str) -> PathBuf {
        self.path
            .join(format!("{}.batches.jsonl", codec_stem(index, codec)))
    }

    /// The record of a codec that finished.
    pub fn record(&self, index: usize, codec: &str) -> PathBuf {
        self.path.join(format!("{}.json", codec_stem(index, codec)))
    }

    /// The record of a codec whose run was interrupted.
    pub fn partial_record(&self, index: usize, codec: &str) -> PathBuf {
        self.path
            .join(format!("{}.partial.json", codec_stem(index, codec)))
    }

    /// The finished records in the folder, in codec order (`NN-<codec>.json`).
    pub fn finished_records(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                name.ends_with(".json")
                    && !name.ends_with(".partial.json")
                    && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
            })
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// The plots `report` draws: running PPL, rate–distortion, bytes per link.
    pub fn plots(&self) -> [PathBuf; 3] {
        [
            self.path.join("ppl_curve.svg"),
            self.path.join("rate_distortion.svg"),
            self.path.join("link_bytes.svg"),
        ]
    }
}

/// `NN-<label>`, with every character that is not safe in a file name replaced by `_`.
fn codec_stem(index: usize, label: &str) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{index:02}-{safe}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_files_are_numbered_and_safe() {
        let dir = RunDir::existing(Path::new("/runs/r1"));
        assert_eq!(dir.id(), "r1");
        assert_eq!(
            dir.batches(3, "intn-block(bits=4)"),
            Path::new("/runs/r1/03-intn-block_bits_4_.batches.jsonl")
        );
        assert_eq!(dir.record(0, "none"), Path::new("/runs/r1/00-none.json"));
        assert_eq!(
            dir.partial_record(12, "a/b"),
            Path::new("/runs/r1/12-a_b.partial.json")
        );
    }
}
