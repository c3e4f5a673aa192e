//! Test support for the model's CUDA kernels under plugin-api's CPU emulation of CUDA: host
//! memory standing in for device memory, inputs rounded to a dtype, and how far a kernel's
//! output is from the CPU path's.

use candle_core::{Device, Tensor};
use splitbench_plugin_api::convert::{bytes_to_f32, f32_to_bytes};
use splitbench_plugin_api::cuda::CudaStream;
use splitbench_plugin_api::DType;

/// Host memory standing in for device memory, 16-byte aligned as CUDA allocations are.
pub struct Buffer(Vec<u128>);

impl Buffer {
    pub fn new(bytes: &[u8]) -> Buffer {
        let mut words = vec![0u128; bytes.len().div_ceil(16).max(1)];
        // SAFETY: u128 storage viewed as bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), words.as_mut_ptr().cast(), bytes.len())
        };
        Buffer(words)
    }

    /// `len` bytes of 0xFF (NaN in every float dtype): an output the kernel must fill.
    pub fn poisoned(len: usize) -> Buffer {
        Buffer::new(&vec![0xFF; len])
    }

    pub fn ptr(&mut self) -> u64 {
        self.0.as_mut_ptr() as u64
    }

    pub fn bytes(&self, len: usize) -> Vec<u8> {
        // SAFETY: u128 storage viewed as bytes; len is within it.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), len) }.to_vec()
    }

    /// The first `n` elements, read as `dtype`.
    pub fn values(&self, n: usize, dtype: DType) -> Vec<f32> {
        bytes_to_f32(&self.bytes(n * dtype.size_in_bytes()), dtype)
    }
}

/// The emulated stream, or None once SKIPPED is said (a failure under CI).
pub fn stream(test: &str) -> Option<CudaStream> {
    match splitbench_plugin_api::testkit::emulated_stream() {
        Ok(cuda) => Some(cuda),
        Err(why) => {
            splitbench_plugin_api::testkit::missing_input(
                test,
                format!("no CUDA emulation: {why}"),
            );
            None
        }
    }
}

/// Standard normal values of shape `dims` rounded to `dtype`: as an f32 CPU tensor and as the
/// bytes a kernel reads.
pub fn rounded(dims: &[usize], dtype: DType) -> (Tensor, Vec<u8>) {
    let x = Tensor::randn(0f32, 1.0, dims, &Device::Cpu).unwrap();
    let bytes = f32_to_bytes(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), dtype);
    let x = Tensor::from_vec(bytes_to_f32(&bytes, dtype), dims, &Device::Cpu).unwrap();
    (x, bytes)
}

/// The largest `|got − want| / max(|want|, 1)`; infinite where `got` is NaN (never written).
pub fn worst_difference(got: &[f32], want: &Tensor) -> f32 {
    let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(&want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(
            0f32,
            |a, b| if b.is_nan() { f32::INFINITY } else { a.max(b) },
        )
}
