//! The run folder: the one place that names the files a run writes, so the sweep, `report` and
//! the plots agree on them.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write `{path}`: {source}. Check that output.dir is writable, or point it elsewhere with --set output.dir=...")]
pub struct WriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("`{0}` is not a run folder splitbench can resume (no run.json); give --resume the folder `splitbench run` printed (output.dir/<run id>)")]
    NotARun(PathBuf),
    #[error("`{0}` holds a finished run (it has summary.json): there is nothing to resume; start a new run instead")]
    Finished(PathBuf),
}

/// Whether this process may create entries in `dir` (access(2) with W_OK and X_OK).
#[cfg(unix)]
fn writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    match unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Elsewhere creating the run folder is the check.
#[cfg(not(unix))]
fn writable(_dir: &Path) -> std::io::Result<()> {
    Ok(())
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

    /// Whether a run folder can be made under `output_dir`, checked without writing anything:
    /// the nearest folder on the way that exists must be a directory this process may write.
    pub fn check_creatable(output_dir: &Path) -> Result<(), WriteError> {
        let mut at = output_dir;
        loop {
            match std::fs::metadata(at) {
                Ok(meta) if meta.is_dir() => break,
                Ok(_) => {
                    return Err(WriteError {
                        path: at.to_path_buf(),
                        source: std::io::Error::new(
                            std::io::ErrorKind::NotADirectory,
                            "it is a file, not a folder",
                        ),
                    })
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                    ) =>
                {
                    at = match at.parent() {
                        Some(p) if !p.as_os_str().is_empty() => p,
                        _ => Path::new("."),
                    };
                }
                Err(source) => {
                    return Err(WriteError {
                        path: at.to_path_buf(),
                        source,
                    })
                }
            }
        }
        writable(at).map_err(|source| WriteError {
            path: at.to_path_buf(),
            source,
        })
    }

    /// Whether `dir` holds an unfinished run that `--resume` can continue.
    pub fn check_resumable(dir: &Path) -> Result<(), ResumeError> {
        let run = RunDir::existing(dir);
        if !run.identity().is_file() {
            return Err(ResumeError::NotARun(dir.to_path_buf()));
        }
        if run.summary().is_file() {
            return Err(ResumeError::Finished(dir.to_path_buf()));
        }
        Ok(())
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

    /// The folder of the calibrated codecs' fitted states.
    pub fn calibration_dir(&self) -> PathBuf {
        self.path.join("calibration")
    }

    /// The fitted state of a calibrated codec at link `link`; `digest` tells its plugin and
    /// params apart. Written once, read again by resume and carried over by merge.
    pub fn calibration_state(&self, link: usize, codec: &str, digest: &str) -> PathBuf {
        self.calibration_dir()
            .join(format!("link{link:02}-{}-{digest}.state", safe_name(codec)))
    }

    /// The plots `report` draws: running ΔPPL, rate–distortion, bytes per link, error by layer.
    /// The run as one page: tables and plots, readable offline.
    pub fn report_html(&self) -> PathBuf {
        self.path.join("report.html")
    }

    /// A plot, named by its figure (`plots::FIGURES`).
    pub fn plot(&self, file: &str) -> PathBuf {
        self.path.join(file)
    }
}

/// `NN-<label>`, made safe for a file name.
fn codec_stem(index: usize, label: &str) -> String {
    format!("{index:02}-{}", safe_name(label))
}

/// `label` with every character that is not safe in a file name replaced by `_`.
fn safe_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
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
        assert_eq!(
            dir.calibration_state(2, "pca", "0123abcd"),
            Path::new("/runs/r1/calibration/link02-pca-0123abcd.state")
        );
    }
}
