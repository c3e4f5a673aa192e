//! The test hook: which CUDA libraries to open instead of the system's (testkit's CPU
//! emulation points them at its emulated driver).

use std::sync::OnceLock;

/// Library files chosen by [`use_libraries`] instead of the system's.
static LIBRARY_FILES: OnceLock<(String, String)> = OnceLock::new();

/// Loads the CUDA driver and NVRTC from these files instead of the system's, for this plugin
/// (each plugin has its own copy of this crate). testkit's CPU emulation uses it; it must come
/// before the first CUDA call. Returns false when libraries were chosen already.
pub fn use_libraries(driver: &std::path::Path, nvrtc: &std::path::Path) -> bool {
    LIBRARY_FILES
        .set((
            driver.to_string_lossy().into_owned(),
            nvrtc.to_string_lossy().into_owned(),
        ))
        .is_ok()
}

/// The files chosen by [`use_libraries`], if any: (driver, NVRTC).
pub(super) fn library_files() -> Option<&'static (String, String)> {
    LIBRARY_FILES.get()
}
