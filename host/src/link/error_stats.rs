//! A transmission's reconstruction error reduced where the hidden states are (on a GPU for the
//! device path), so that only five numbers are read back.

use candle_core::{DType, Tensor, D};

/// `[Σx², Σ(x − x̂)², max |x − x̂|, NaN/Inf in x̂, NaN/Inf in x]` of sent `x` and decoded `x̂`,
/// with non-finite differences left out as the host path's `add_error` does. Each sum is taken
/// per row (the last dimension) and then over rows: candle reduces each output element in one
/// thread block, so a sum over the whole tensor at once would run on one multiprocessor.
pub(super) fn reconstruction_error(
    sent: &Tensor,
    decoded: &Tensor,
) -> candle_core::Result<[f64; 5]> {
    let hidden = sent.dim(D::Minus1)?;
    let rows = sent.elem_count() / hidden.max(1);
    let x = sent.reshape((rows, hidden))?.to_dtype(DType::F64)?;
    let y = decoded.reshape((rows, hidden))?.to_dtype(DType::F64)?;
    let d = (&x - &y)?;
    let finite = |t: &Tensor| -> candle_core::Result<Tensor> { t.abs()?.lt(f64::INFINITY) };
    let keep = finite(&d)?;
    let zeros = d.zeros_like()?;
    let d = keep.where_cond(&d, &zeros)?;
    let xs = keep.where_cond(&x, &zeros)?;
    let nonfinite = |t: &Tensor| -> candle_core::Result<Tensor> {
        (finite(t)?.to_dtype(DType::F64)?.sum(1)?.sum_keepdim(0)? * -1.0)? + (rows * hidden) as f64
    };
    let stats = Tensor::cat(
        &[
            xs.sqr()?.sum(1)?.sum_keepdim(0)?,
            d.sqr()?.sum(1)?.sum_keepdim(0)?,
            d.abs()?.max(1)?.max_keepdim(0)?,
            nonfinite(&y)?,
            nonfinite(&x)?,
        ],
        0,
    )?
    .to_vec1::<f64>()?;
    Ok([stats[0], stats[1], stats[2], stats[3], stats[4]])
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::link::traffic::{add_error, LinkTraffic};

    /// The same figures as the host path's reduction, NaN and Inf included.
    #[test]
    fn equals_the_host_paths_reduction() {
        let (rows, hidden) = (6, 37);
        let x: Vec<f32> = (0..rows * hidden)
            .map(|i| ((i * 7919) % 211) as f32 / 13.0 - 8.0)
            .collect();
        let mut y: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, v)| v + (i % 5) as f32 * 0.01)
            .collect();
        y[40] = f32::NAN;
        y[41] = f32::INFINITY;
        let mut x = x;
        x[100] = f32::NEG_INFINITY;
        let t = |v: &[f32]| Tensor::from_slice(v, (2, rows / 2, hidden), &Device::Cpu).unwrap();
        let got = reconstruction_error(&t(&x), &t(&y)).unwrap();
        let mut want = LinkTraffic::default();
        let bytes = |v: &[f32]| v.iter().flat_map(|f| f.to_le_bytes()).collect::<Vec<u8>>();
        add_error(
            &mut want,
            &bytes(&x),
            &bytes(&y),
            splitbench_plugin_api::DType::F32,
        );
        assert!((got[0] - want.signal_sq).abs() <= 1e-9 * want.signal_sq);
        assert!((got[1] - want.noise_sq).abs() <= 1e-9 * want.noise_sq);
        assert_eq!(got[2], want.max_abs_error);
        assert_eq!(got[3..], [2.0, 1.0]);
    }
}
