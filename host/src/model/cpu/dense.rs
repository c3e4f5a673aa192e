//! `x · Wᵀ` in f32 with gemm writing straight into its output. candle's matmul zero-fills
//! the output first, a pass over memory that the product then overwrites (2% of a forward
//! pass on 2 cores). The gemm call is candle's own, so the results are bit-identical.
//! A few rows (a generation step's tokens) take dot products instead: gemm packs all of W
//! for every call, which for 4 rows cost 3× the product itself.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};
use gemm::Parallelism;

use super::rows::dots;
use super::{contiguous_f32, written_in_parallel};

/// At most this many rows are multiplied by dot products, each weight row read once for all.
const DOT_ROWS: usize = 8;
/// Weight rows per task of the dot-product path: small enough that a projection of 192 rows
/// (SmolLM2's keys) still spreads evenly over the threads.
const DOT_BLOCK: usize = 16;

/// `x [rows, inner] · Wᵀ` by dot products: `[rows, out]`.
fn by_dot_products(x: &[f32], w: &[f32], rows: usize, inner: usize, out: usize) -> Vec<f32> {
    // SAFETY: each task writes its DOT_BLOCK weight rows' `rows` results, all of its chunk.
    let transposed = unsafe {
        written_in_parallel(out * rows, DOT_BLOCK * rows, |task, chunk| {
            let mut ys = [0f32; DOT_ROWS];
            for (i, y) in chunk.chunks_exact_mut(rows).enumerate() {
                let w_row = &w[(task * DOT_BLOCK + i) * inner..][..inner];
                dots(x, w_row, &mut ys[..rows]);
                for (y, &v) in y.iter_mut().zip(&ys) {
                    y.write(v);
                }
            }
        })
    };
    let mut y = vec![0f32; rows * out];
    for (o, ys) in transposed.chunks_exact(rows).enumerate() {
        for (r, &v) in ys.iter().enumerate() {
            y[r * out + o] = v;
        }
    }
    y
}

/// `x [rows, in] · Wᵀ` for a weight `W [out, in]`, both f32 and contiguous: `[rows, out]`.
pub struct DenseMatmul;

impl CustomOp2 for DenseMatmul {
    fn name(&self) -> &'static str {
        "splitbench-dense-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32("dense matmul", "input", xs, xl)?;
        let w = contiguous_f32("dense matmul", "weight", ws, wl)?;
        let (rows, inner) = xl.shape().dims2()?;
        let (out, w_inner) = wl.shape().dims2()?;
        if inner != w_inner {
            candle_core::bail!(
                "dense matmul: x {:?} and weight {:?} differ in their inner size",
                xl.dims(),
                wl.dims()
            );
        }
        if rows <= DOT_ROWS {
            let y = by_dot_products(x, w, rows, inner, out);
            return Ok((CpuStorage::F32(y), Shape::from((rows, out))));
        }
        let len = rows * out;
        let mut y = Vec::<f32>::with_capacity(len);
        let threads = rayon::current_num_threads();
        let parallelism = if threads > 1 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        if len > 0 {
            // SAFETY: x is rows × inner and W out × inner, row-major, so Wᵀ is read with row
            // stride 1 and column stride `inner`; y has room for rows × out, which gemm writes
            // in full without reading it (read_dst false).
            unsafe {
                gemm::gemm(
                    rows,
                    out,
                    inner,
                    y.as_mut_ptr(),
                    1,
                    out as isize,
                    false,
                    x.as_ptr(),
                    1,
                    inner as isize,
                    w.as_ptr(),
                    inner as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                );
                y.set_len(len);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    #[test]
    fn by_hand_and_bit_identical_to_candle() {
        // [1 2; 3 4] · [[1 0], [1 1], [0 2]]ᵀ = [1 3 4; 3 7 8].
        let x = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1f32, 0.0], [1.0, 1.0], [0.0, 2.0]], &Device::Cpu).unwrap();
        let y = x.apply_op2_no_bwd(&w, &DenseMatmul).unwrap();
        assert_eq!(
            y.to_vec2::<f32>().unwrap(),
            [[1.0, 3.0, 4.0], [3.0, 7.0, 8.0]]
        );
        // Shapes past gemm's blocks, against candle's matmul, bit for bit.
        let x = Tensor::randn(0f32, 1.0, (300, 700), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (130, 700), &Device::Cpu).unwrap();
        let ours = x.apply_op2_no_bwd(&w, &DenseMatmul).unwrap();
        let candle = x.matmul(&w.t().unwrap()).unwrap();
        let (ours, candle) = (
            ours.to_vec2::<f32>().unwrap(),
            candle.to_vec2::<f32>().unwrap(),
        );
        assert!(ours == candle, "the product differs from candle's");
    }

    /// A generation step's few rows by dot products: candle's product within f32 rounding.
    #[test]
    fn few_rows_by_dot_products() {
        let x = Tensor::randn(0f32, 1.0, (3, 700), &Device::Cpu).unwrap();
        let w = Tensor::randn(0f32, 1.0, (130, 700), &Device::Cpu).unwrap();
        let ours = x.apply_op2_no_bwd(&w, &DenseMatmul).unwrap();
        let candle = x.matmul(&w.t().unwrap()).unwrap();
        assert_eq!(ours.dims(), [3, 130]);
        assert!(super::super::largest_difference(&ours, &candle) < 1e-3);
        let one = Tensor::new(&[[1f32, 2.0]], &Device::Cpu).unwrap();
        let w = Tensor::new(&[[1f32, 0.0], [1.0, 1.0], [0.0, 2.0]], &Device::Cpu).unwrap();
        let y = one.apply_op2_no_bwd(&w, &DenseMatmul).unwrap();
        assert_eq!(y.to_vec2::<f32>().unwrap(), [[1.0, 3.0, 4.0]]);
    }

    #[test]
    fn refuses_a_weight_of_another_inner_size() {
        let x = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let w = Tensor::zeros((4, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let err = x.apply_op2_no_bwd(&w, &DenseMatmul).unwrap_err();
        assert!(err.to_string().contains("inner size"), "{err}");
    }
}
