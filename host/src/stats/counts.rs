//! Statistics that count tokens: top-1 agreement and the top-k overlap.

use serde::{Deserialize, Serialize};

use super::statistic::{Statistic, TokenScore};
use super::uncertainty::Estimate;

/// Tokens where the baseline and the codec put the same token on top.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Top1Agree(pub usize);

impl Statistic for Top1Agree {
    fn update(&mut self, token: &TokenScore<'_>) {
        self.0 += usize::from(token.top1_agree);
    }

    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }
}

impl Top1Agree {
    /// The share of `tokens` and its binomial ±, √(p(1 − p)/(N − 1)), as llama-perplexity's
    /// "same top p".
    pub fn share(self, tokens: usize) -> Estimate {
        let p = self.0 as f64 / tokens.max(1) as f64;
        Estimate {
            value: p,
            pm: if tokens > 1 {
                (p * (1.0 - p) / (tokens - 1) as f64).sqrt()
            } else {
                0.0
            },
        }
    }
}

/// Σ over tokens of how many of the baseline's `TOP_K` most likely tokens are among the
/// codec's `TOP_K`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TopKShared(pub usize);

impl Statistic for TopKShared {
    fn update(&mut self, token: &TokenScore<'_>) {
        self.0 += token.top_k_shared as usize;
    }

    fn merge(&mut self, other: &Self) {
        self.0 += other.0;
    }
}

impl TopKShared {
    /// The mean share of the baseline's `top_k` among the codec's, over `tokens`.
    pub fn overlap(self, tokens: usize, top_k: usize) -> f64 {
        self.0 as f64 / (tokens * top_k) as f64
    }
}
