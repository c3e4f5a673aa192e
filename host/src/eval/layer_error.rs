//! Where the error grows: the relative L2 error of a codec pass's hidden state against the
//! baseline's at the same depth, from the first link to the head, summed over real tokens.
//! Depth d is the hidden state as the layer after the first d layers receives it (links
//! crossed), so a link after layer i shows as a step at depth i + 1 and the curve after it
//! shows whether the layers damp or amplify that error.

use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

use super::error::EvalError;

/// The baseline's hidden state at one depth (in the model's dtype: the tensor the layer made,
/// not a copy) and each token's squared norm.
pub struct LayerReference {
    h: Tensor,
    norm_sq: Vec<Vec<f32>>,
}

/// Per row and position, Σ over the hidden dimension of `x²`, in f32.
fn squared_norms(x: &Tensor) -> Result<Vec<Vec<f32>>, EvalError> {
    Ok(x.to_dtype(DType::F32)?.sqr()?.sum(D::Minus1)?.to_vec2()?)
}

impl LayerReference {
    pub fn new(h: &Tensor) -> Result<Self, EvalError> {
        Ok(LayerReference {
            h: h.clone(),
            norm_sq: squared_norms(h)?,
        })
    }

    /// Σ over the real positions (`lengths[row]` of each row) of ‖h − base‖ / ‖base‖.
    pub fn relative_l2_sum(&self, h: &Tensor, lengths: &[usize]) -> Result<f64, EvalError> {
        let diff = squared_norms(&(h.to_dtype(DType::F32)? - self.h.to_dtype(DType::F32)?)?)?;
        let mut sum = 0.0;
        for ((d, n), &len) in diff.iter().zip(&self.norm_sq).zip(lengths) {
            for (&d, &n) in d.iter().zip(n).take(len) {
                // NaN passes, so a codec that makes NaN shows NaN, not a smaller error.
                if d != 0.0 {
                    sum += (f64::from(d) / f64::from(n).max(f64::MIN_POSITIVE)).sqrt();
                }
            }
        }
        Ok(sum)
    }
}

/// Σ of the relative L2 error at each depth from `first_depth` to the last layer's output,
/// over `tokens` real tokens.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LayerErrorSums {
    pub first_depth: usize,
    pub relative_l2: Vec<f64>,
    pub tokens: u64,
}

impl LayerErrorSums {
    pub fn merge(&mut self, other: &LayerErrorSums) {
        if self.relative_l2.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in self.relative_l2.iter_mut().zip(&other.relative_l2) {
            *a += b;
        }
        self.tokens += other.tokens;
    }

    /// (depth, mean relative L2 error) at each depth measured.
    pub fn means(&self) -> Vec<(usize, f64)> {
        let n = self.tokens.max(1) as f64;
        self.relative_l2
            .iter()
            .enumerate()
            .map(|(i, s)| (self.first_depth + i, s / n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn relative_error_per_token_over_real_positions_only() {
        // Two rows of two positions, hidden 2; row 1 has one real position.
        let base = Tensor::new(
            &[[[3f32, 4.], [1., 0.]], [[0., 2.], [5., 5.]]],
            &Device::Cpu,
        )
        .unwrap();
        let codec = Tensor::new(
            &[[[3f32, 5.], [1., 0.]], [[0., 3.], [9., 9.]]],
            &Device::Cpu,
        )
        .unwrap();
        let r = LayerReference::new(&base).unwrap();
        // ‖(0,1)‖/5 + 0 + ‖(0,1)‖/2; the padded position (5,5)→(9,9) does not count.
        let got = r.relative_l2_sum(&codec, &[2, 1]).unwrap();
        assert!((got - (0.2 + 0.5)).abs() < 1e-9, "{got}");
        assert_eq!(r.relative_l2_sum(&base, &[2, 2]).unwrap(), 0.0);
    }

    #[test]
    fn sums_merge_depth_by_depth() {
        let mut a = LayerErrorSums::default();
        let b = LayerErrorSums {
            first_depth: 3,
            relative_l2: vec![1.0, 2.0],
            tokens: 4,
        };
        a.merge(&b);
        a.merge(&b);
        assert_eq!(a.relative_l2, [2.0, 4.0]);
        assert_eq!(a.means(), [(3, 0.25), (4, 0.5)]);
    }
}
