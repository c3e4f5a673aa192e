//! The hidden state's error at each depth as a statistic: summed per batch, not per token.

use super::statistic::{Statistic, Stream, TokenScore};
use crate::eval::{BatchComparison, LayerErrorSums};

impl Statistic for LayerErrorSums {
    /// Nothing per token: a batch brings its sums over every depth at once.
    fn update(&mut self, _: &TokenScore<'_>) {}

    fn merge(&mut self, other: &Self) {
        LayerErrorSums::merge(self, other);
    }

    fn add_batch(&mut self, batch: &BatchComparison, _: &Stream<'_>) {
        LayerErrorSums::merge(self, &batch.layers);
    }
}
