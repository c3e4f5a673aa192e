//! A mixture of experts (Mixtral, Qwen3-MoE): a router picks `top_k` experts per token; each
//! expert runs once on the tokens routed to it, gathered into one matrix, and its output,
//! weighted, is added back at their rows.

use candle_core::{DType, Device, Tensor, D};

use super::layer::{ElementwiseStep, MatmulStep, Mlp};
use super::linear::Linear;

#[derive(Debug, Clone)]
pub struct Moe {
    pub router: Linear,
    pub experts: Vec<Mlp>,
    pub top_k: usize,
    /// The chosen experts' probabilities divided by their sum (Mixtral always; Qwen3-MoE
    /// with `norm_topk_prob`).
    pub renormalize: bool,
}

/// For each token, its experts and their weights: softmax over the router's logits in f32,
/// the `k` largest (ties to the lower expert), optionally renormalized.
pub fn route(probs: &[Vec<f32>], k: usize, renormalize: bool) -> Vec<Vec<(usize, f32)>> {
    probs
        .iter()
        .map(|p| {
            let mut order: Vec<usize> = (0..p.len()).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            order.truncate(k);
            let sum: f32 = order.iter().map(|&e| p[e]).sum();
            order
                .into_iter()
                .map(|e| (e, if renormalize { p[e] / sum } else { p[e] }))
                .collect()
        })
        .collect()
}

impl Moe {
    /// `x` `[.., hidden]` through the experts its tokens are routed to.
    pub fn forward(
        &self,
        x: &Tensor,
        matmul: &MatmulStep,
        elementwise: &ElementwiseStep,
    ) -> candle_core::Result<Tensor> {
        let dims = x.dims().to_vec();
        let hidden = dims[dims.len() - 1];
        let x = x.reshape(((), hidden))?;
        let logits = matmul(&self.router, &x)?.to_dtype(DType::F32)?;
        // The routing is decided on the host: a few values per token.
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?.to_vec2::<f32>()?;
        let routes = route(&probs, self.top_k, self.renormalize);
        let mut rows: Vec<Vec<u32>> = vec![Vec::new(); self.experts.len()];
        let mut weights: Vec<Vec<f32>> = vec![Vec::new(); self.experts.len()];
        for (token, chosen) in routes.iter().enumerate() {
            for &(e, w) in chosen {
                rows[e].push(token as u32);
                weights[e].push(w);
            }
        }
        let device = x.device();
        let mut out = x.zeros_like()?;
        for (e, expert) in self.experts.iter().enumerate() {
            if rows[e].is_empty() {
                continue;
            }
            let n = rows[e].len();
            let index = Tensor::from_slice(&rows[e], n, device)?;
            let w = Tensor::from_slice(&weights[e], (n, 1), device)?.to_dtype(x.dtype())?;
            let y = expert.forward(&x.index_select(&index, 0)?, matmul, elementwise)?;
            out = out.index_add(&index, &y.broadcast_mul(&w)?, 0)?;
        }
        out.reshape(dims)
    }

    pub(super) fn to_device(&self, device: &Device) -> candle_core::Result<Moe> {
        Ok(Moe {
            router: self.router.to_device(device)?,
            experts: self
                .experts
                .iter()
                .map(|m| m.to_device(device))
                .collect::<candle_core::Result<_>>()?,
            ..self.clone()
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        self.router.bytes() + self.experts.iter().map(Mlp::bytes).sum::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_by_hand() {
        let probs = vec![vec![0.1, 0.5, 0.1, 0.3], vec![0.25, 0.25, 0.25, 0.25]];
        let r = route(&probs, 2, true);
        assert_eq!(r[0][0].0, 1);
        assert_eq!(r[0][1].0, 3);
        assert!((r[0][0].1 - 0.625).abs() < 1e-6 && (r[0][1].1 - 0.375).abs() < 1e-6);
        // Ties go to the lower experts.
        assert_eq!(r[1], vec![(0, 0.5), (1, 0.5)]);
        let r = route(&probs, 2, false);
        assert_eq!(r[0], vec![(1, 0.5), (3, 0.3)]);
    }
}
