//! The two NLL series, codec's and baseline's, as sums: their means, spreads and covariance
//! give the perplexities, their ratio and their difference with llama-perplexity's ±.

use serde::{Deserialize, Serialize};

use super::statistic::{Statistic, TokenScore};
use super::uncertainty::{covariance, mean_and_uncertainty, Estimate};

/// Sums over tokens of the two NLL series.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct NllSums {
    pub codec: f64,
    pub codec_sq: f64,
    pub base: f64,
    pub base_sq: f64,
    pub cross: f64,
}

impl Statistic for NllSums {
    fn update(&mut self, t: &TokenScore<'_>) {
        let (q, b) = (f64::from(t.nll), f64::from(t.nll_base));
        self.codec += q;
        self.codec_sq += q * q;
        self.base += b;
        self.base_sq += b * b;
        self.cross += q * b;
    }

    fn merge(&mut self, other: &Self) {
        self.codec += other.codec;
        self.codec_sq += other.codec_sq;
        self.base += other.base;
        self.base_sq += other.base_sq;
        self.cross += other.cross;
    }
}

/// The codec's and the baseline's mean NLL (ln PPL) with their ±, and their covariance.
pub struct LogPerplexities {
    pub codec: Estimate,
    pub base: Estimate,
    pub covariance: f64,
}

impl NllSums {
    pub fn log_perplexities(&self, tokens: usize) -> LogPerplexities {
        LogPerplexities {
            codec: mean_and_uncertainty(self.codec, self.codec_sq, tokens),
            base: mean_and_uncertainty(self.base, self.base_sq, tokens),
            covariance: covariance(self.codec, self.base, self.cross, tokens),
        }
    }
}
