//! Device paths: kernels compiled by NVRTC, and the device path against the host path under
//! the CUDA emulation.

use super::emulation::{emulated_cuda, EmulatedBuffer};
use super::missing_input;
use crate::measure::synthetic_activations;
use crate::{DType, TensorView};

/// Compiles a plugin's kernels with NVRTC for compute capability 9.0 and checks that every
/// kernel in `names` is in the PTX. Without NVRTC (no CUDA libraries on the library path) it
/// prints a SKIPPED line and returns: kernel source errors are caught wherever NVRTC is.
pub fn assert_kernels_compile(kernels: &crate::cuda::KernelSet, names: &[&str]) {
    if let Err(why) = crate::cuda::nvrtc_available() {
        missing_input("kernels compiled with NVRTC", why);
        return;
    }
    let ptx = kernels
        .compile_only((9, 0))
        .unwrap_or_else(|e| panic!("{}", e.0));
    let ptx = String::from_utf8_lossy(&ptx);
    for name in names {
        assert!(
            ptx.contains(&format!(".entry {name}")),
            "kernel {name} missing from the PTX"
        );
    }
}

/// Runs a plugin's device codec through a CPU emulation of CUDA — its kernel source compiled
/// as C++ (`emulator/kernels.h`), every CUDA thread an OS thread, warps in lockstep — and checks
/// that it writes the host path's wire byte for byte and decodes it to the host path's bytes,
/// for each `(codec, params)` in f32, f16 and bf16 and several shapes (partial blocks, codes
/// across byte boundaries, massive activations). NaN input must be refused by both paths or
/// carried by both. Prints SKIPPED without a C/C++ compiler. What it cannot show: that the PTX
/// conversion instructions round as the emulation's software ones (both are IEEE round to
/// nearest even), or anything about speed; `splitbench run --verify-wire` on a GPU does that.
pub fn assert_device_matches_host(
    new_codec: crate::export::CodecFactory,
    new_device_codec: crate::device::DeviceCodecFactory,
    configs: &[(&str, &str)],
) {
    use crate::cuda::CudaStream;
    use crate::device::{DeviceBuffer, DeviceTensor};
    if let Err(why) = emulated_cuda() {
        missing_input("device codecs under the CUDA emulation", why);
        return;
    }
    let cuda = CudaStream {
        context: 1,
        stream: 1,
        device_ordinal: 0,
        compute_capability: (9, 0),
    };
    let cases: Vec<([usize; 3], DType)> = [[1, 3, 64], [2, 5, 130]]
        .into_iter()
        .flat_map(|shape| DType::ALL.map(|dtype| (shape, dtype)))
        .chain([([1, 4, 1000], DType::BF16)])
        .collect();
    for &(name, params) in configs {
        let what = |shape: &[usize; 3], dtype: DType| format!("{name} {params} {shape:?} {dtype}");
        let mut host =
            new_codec(name, params).unwrap_or_else(|e| panic!("{name} {params}: {}", e.0));
        let mut device = new_device_codec(name, params)
            .unwrap_or_else(|e| panic!("{name} {params}: {}", e.0))
            .unwrap_or_else(|| panic!("{name} {params} has no device path"));
        for (shape, dtype) in &cases {
            let mut values = synthetic_activations(*shape, 11);
            for nan in [false, true] {
                if nan {
                    values[shape[2] + 1] = f32::NAN;
                }
                let raw = crate::convert::f32_to_bytes(&values, *dtype);
                let host_wire =
                    TensorView::new(*dtype, shape, &raw).and_then(|view| host.encode(&view));
                let capacity = device
                    .max_wire_len(shape, *dtype)
                    .unwrap_or_else(|e| panic!("{}: max_wire_len: {}", what(shape, *dtype), e.0));
                let mut input = EmulatedBuffer::from_bytes(&raw);
                let mut wire = EmulatedBuffer::zeroed(capacity);
                let wire_ptr = wire.ptr();
                let tensor = DeviceTensor {
                    dtype: *dtype,
                    shape,
                    ptr: input.ptr(),
                };
                let buffer = DeviceBuffer {
                    ptr: wire_ptr,
                    len: 0,
                    capacity,
                };
                let device_len = device.encode(&cuda, &tensor, buffer);
                let (host_wire, len) = match (host_wire, device_len) {
                    (Ok(h), Ok(len)) => (h, len),
                    (Err(_), Err(_)) => continue,
                    (h, d) => panic!(
                        "{}{}: host encode {:?}, device encode {:?}",
                        what(shape, *dtype),
                        if nan { " with a NaN" } else { "" },
                        h.map(|w| w.len()),
                        d
                    ),
                };
                if nan {
                    // Carried by both; NaN payload bits may differ, so only lengths compare.
                    assert_eq!(len, host_wire.len(), "{} with a NaN", what(shape, *dtype));
                    continue;
                }
                let device_wire = &wire.bytes()[..len];
                if let Some(i) = device_wire.iter().zip(&host_wire).position(|(a, b)| a != b) {
                    panic!(
                        "{}: device wire differs from the host path's at byte {i} of {len}",
                        what(shape, *dtype)
                    );
                }
                assert_eq!(len, host_wire.len(), "{}: wire length", what(shape, *dtype));
                let mut output = EmulatedBuffer::zeroed(raw.len());
                let out_tensor = DeviceTensor {
                    dtype: *dtype,
                    shape,
                    ptr: output.ptr(),
                };
                let buffer = DeviceBuffer {
                    ptr: wire_ptr,
                    len,
                    capacity,
                };
                device
                    .decode(&cuda, buffer, &out_tensor)
                    .unwrap_or_else(|e| panic!("{}: device decode: {}", what(shape, *dtype), e.0));
                let host_decoded = host
                    .decode(&host_wire, shape, *dtype)
                    .unwrap_or_else(|e| panic!("{}: host decode: {}", what(shape, *dtype), e.0));
                if let Some(i) = output
                    .bytes()
                    .iter()
                    .zip(&host_decoded)
                    .position(|(a, b)| a != b)
                {
                    panic!(
                        "{}: device decode differs from the host path's at byte {i}",
                        what(shape, *dtype)
                    );
                }
            }
        }
    }
}
