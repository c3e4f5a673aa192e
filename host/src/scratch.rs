//! Fresh folders for unit tests, removed with what they hold when the test is done.

use std::ops::Deref;
use std::path::Path;

/// A new folder under the system's temp folder, named `splitbench-{name}-…`; dropping it
/// removes it.
pub struct ScratchDir(tempfile::TempDir);

impl ScratchDir {
    pub fn new(name: &str) -> ScratchDir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("splitbench-{name}-"))
            .tempdir()
            .expect("a folder in the system's temp folder");
        ScratchDir(dir)
    }
}

impl Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}
