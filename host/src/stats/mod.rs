//! Statistics of a codec against the uncompressed baseline on the same tokens: KL divergence,
//! top-1 agreement, Δp of the correct token, perplexity with its ± and bootstrap intervals,
//! where the error falls. Each statistic is a type (`Statistic`: per-token update, merge),
//! listed once below; the record's figures are summaries of them (`divergence`, `llama`).

mod bootstrap;
mod counts;
mod divergence;
pub mod hurt;
mod layers;
pub mod llama;
mod nll;
mod series;
mod statistic;
mod uncertainty;

pub use bootstrap::Interval;
pub use counts::{Top1Agree, TopKShared};
pub use divergence::{divergence, Divergence, ErrorByLayer, PplStats};
pub use hurt::{Hurt, HurtSummary};
pub use llama::LlamaStats;
pub use nll::NllSums;
pub use series::{DeltaP, Kld, Percentile, ReverseKld};
pub use statistic::{Figure, Statistic, Stream};
pub use uncertainty::Estimate;

use serde::{Deserialize, Serialize};

use crate::eval::{BatchComparison, LayerErrorSums};

/// The list of statistics: declares `Accumulator`, one field per statistic (its name is its
/// key in each batch line's state), and updates and merges every one.
macro_rules! statistics {
    ($($(#[$doc:meta])* $name:ident: $statistic:ty,)*) => {
        /// Every statistic of a codec against the baseline, summed over the batches so far.
        /// Each defaults when absent, so batch states written before it still resume.
        #[derive(Debug, Clone, Default, Serialize, Deserialize)]
        pub struct Accumulator {
            $($(#[$doc])* #[serde(default)] pub $name: $statistic,)*
        }

        impl Accumulator {
            /// One batch's comparison; `stream` is the token stream its rows index into.
            pub fn add_batch(&mut self, batch: &BatchComparison, stream: &Stream<'_>) {
                $(self.$name.add_batch(batch, stream);)*
            }

            pub fn merge(&mut self, other: &Accumulator) {
                $(self.$name.merge(&other.$name);)*
            }

            /// Every statistic's own figures, in list order.
            pub fn figures(&self) -> Vec<Figure> {
                let tokens = self.tokens();
                let mut out = Vec::new();
                $(out.extend(self.$name.figures(tokens));)*
                out
            }
        }
    };
}

statistics! {
    kld: Kld,
    top1_agree: Top1Agree,
    dp: DeltaP,
    reverse_kld: ReverseKld,
    top_k_shared: TopKShared,
    nll: NllSums,
    hurt: Hurt,
    layers: LayerErrorSums,
}

impl Accumulator {
    /// The scored tokens compared.
    pub fn tokens(&self) -> usize {
        self.kld.len()
    }
}
