//! The CPU emulation of CUDA (`emulator/`) that device checks run on: the emulated driver
//! and NVRTC built once per process and loaded in place of the real libraries.

/// Sets up the CPU emulation of CUDA once per process: the emulated driver and NVRTC
/// (`emulator/`) built with the system's C compiler, loaded in place of the real ones. The
/// libraries are kept in the system's temp folder, one folder per version of their sources,
/// so later test processes reuse them instead of leaving a folder each.
pub(super) fn emulated_cuda() -> Result<(), String> {
    static SETUP: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    SETUP
        .get_or_init(|| {
            let files = [
                ("kernels.h", include_str!("../emulator/kernels.h")),
                ("driver.c", include_str!("../emulator/driver.c")),
                ("nvrtc.c", include_str!("../emulator/nvrtc.c")),
            ];
            let version = {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::collections::hash_map::DefaultHasher::new();
                files.hash(&mut hasher);
                hasher.finish()
            };
            let dir = std::env::temp_dir().join(format!("splitbench-emu-{version:016x}"));
            if !EMULATOR_FILES.iter().all(|name| dir.join(name).exists()) {
                build_emulator(&dir, &files)?;
            }
            let cxx = std::process::Command::new("c++").arg("--version").output();
            if !cxx.is_ok_and(|o| o.status.success()) {
                return Err("no C++ compiler (c++) to compile kernels with".into());
            }
            if !crate::cuda::use_libraries(
                &dir.join("libcuda-emu.so"),
                &dir.join("libnvrtc-emu.so"),
            ) {
                return Err("CUDA libraries were chosen before the emulation".into());
            }
            Ok(())
        })
        .clone()
}

/// A stream of the CPU emulation of CUDA, for tests that run kernels (a plugin's, or the
/// host's own) on host memory standing in for device memory: device pointers are host
/// addresses, kernels run as C++ with every CUDA thread an OS thread, and device-to-host
/// copies land only when the stream is synchronized. Err (with why) where the emulation
/// cannot be built: no C/C++ compiler.
pub fn emulated_stream() -> Result<crate::cuda::CudaStream, String> {
    emulated_cuda()?;
    Ok(crate::cuda::CudaStream {
        context: 1,
        stream: 1,
        device_ordinal: 0,
        compute_capability: (9, 0),
    })
}

/// What the emulator's folder holds: the driver compiles each module with `kernels.h` from
/// its own folder.
const EMULATOR_FILES: [&str; 3] = ["kernels.h", "libcuda-emu.so", "libnvrtc-emu.so"];

/// Builds the emulated driver and NVRTC into `dir`. Each process builds in a folder of its
/// own and renames the results into place, so processes starting together never load a
/// half-written file.
fn build_emulator(dir: &std::path::Path, files: &[(&str, &str)]) -> Result<(), String> {
    let build = dir.join(format!("build-{}", std::process::id()));
    let built = (|| {
        std::fs::create_dir_all(&build).map_err(|e| format!("{}: {e}", build.display()))?;
        for (name, text) in files {
            std::fs::write(build.join(name), text).map_err(|e| format!("{name}: {e}"))?;
        }
        for (source, library) in [
            ("driver.c", "libcuda-emu.so"),
            ("nvrtc.c", "libnvrtc-emu.so"),
        ] {
            let out = std::process::Command::new("cc")
                .args(["-shared", "-fPIC", "-O1", "-pthread", "-o"])
                .arg(build.join(library))
                .arg(build.join(source))
                .arg("-ldl")
                .output()
                .map_err(|e| format!("no C compiler (cc): {e}"))?;
            if !out.status.success() {
                return Err(format!(
                    "cc {source}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        for name in EMULATOR_FILES {
            std::fs::rename(build.join(name), dir.join(name))
                .map_err(|e| format!("{}: {e}", dir.join(name).display()))?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&build);
    built
}

/// Host memory standing in for device memory, 8-byte aligned like any element type needs.
pub(super) struct EmulatedBuffer(Vec<u64>, usize);

impl EmulatedBuffer {
    pub(super) fn zeroed(len: usize) -> Self {
        EmulatedBuffer(vec![0; len.div_ceil(8).max(1)], len)
    }
    pub(super) fn from_bytes(bytes: &[u8]) -> Self {
        let mut buffer = EmulatedBuffer::zeroed(bytes.len());
        buffer.bytes_mut().copy_from_slice(bytes);
        buffer
    }
    pub(super) fn ptr(&mut self) -> u64 {
        self.0.as_mut_ptr() as u64
    }
    pub(super) fn bytes(&self) -> &[u8] {
        &bytemuck_bytes(&self.0)[..self.1]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.1;
        // SAFETY: u64 storage viewed as bytes; every byte pattern is valid for both.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), len) }
    }
}

fn bytemuck_bytes(words: &[u64]) -> &[u8] {
    // SAFETY: u64 storage viewed as bytes; every byte pattern is valid for both.
    unsafe { std::slice::from_raw_parts(words.as_ptr().cast::<u8>(), words.len() * 8) }
}
