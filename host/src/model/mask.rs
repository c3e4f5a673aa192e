//! The additive attention mask candle's ops use off the CPU (the CPU kernel and the fused GPU
//! kernel mask by the rows' lengths instead).

use candle_core::{DType, Device, Tensor};

use super::ModelError;

type Result<T> = std::result::Result<T, ModelError>;

/// The additive mask `[batch, 1, t, t]`: key j is hidden from query i when j > i, when j is
/// padding (j ≥ the row's length) or, with a sliding window w, when j + w ≤ i. Built with tensor
/// ops on `dev`, so a GPU run copies only the lengths to it.
pub(super) fn attention_mask(
    lengths: &[usize],
    t: usize,
    window: Option<usize>,
    dev: &Device,
) -> Result<Tensor> {
    let b = lengths.len();
    let positions = Tensor::arange(0u32, t as u32, dev)?.to_dtype(DType::F32)?;
    let query = positions.reshape((1, 1, t, 1))?;
    let key = positions.reshape((1, 1, 1, t))?;
    let lengths: Vec<f32> = lengths.iter().map(|&l| l as f32).collect();
    let lengths = Tensor::from_vec(lengths, (b, 1, 1, 1), dev)?;
    let shape = (b, 1, t, t);
    let future = key.broadcast_gt(&query)?.broadcast_as(shape)?;
    let padding = key.broadcast_ge(&lengths)?.broadcast_as(shape)?;
    let mut hidden = future.maximum(&padding)?;
    if let Some(w) = window {
        let outside = (key.broadcast_add(&Tensor::new(w as f32, dev)?)?)
            .broadcast_le(&query)?
            .broadcast_as(shape)?;
        hidden = hidden.maximum(&outside)?;
    }
    let blocked = Tensor::full(f32::NEG_INFINITY, shape, dev)?;
    let open = Tensor::zeros(shape, DType::F32, dev)?;
    Ok(hidden.where_cond(&blocked, &open)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_the_future_the_padding_and_what_left_the_window() {
        let (lengths, t, w) = ([5usize, 3], 5, 2);
        for window in [None, Some(w)] {
            let mask = attention_mask(&lengths, t, window, &Device::Cpu).unwrap();
            let mask = mask.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            for (b, &len) in lengths.iter().enumerate() {
                for i in 0..t {
                    for j in 0..t {
                        let hidden = j > i || j >= len || window.is_some_and(|w| j + w <= i);
                        let m = mask[(b * t + i) * t + j];
                        assert_eq!(m == f32::NEG_INFINITY, hidden, "{window:?} b{b} i{i} j{j}");
                        assert!(m == 0.0 || m == f32::NEG_INFINITY);
                    }
                }
            }
        }
    }
}
