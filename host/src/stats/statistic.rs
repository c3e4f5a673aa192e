//! What a statistic is: a type that takes one scored token at a time, merges with its own
//! kind from another batch or shard, and is summed in batch order so a run, a resumed run and
//! merged shards give the same numbers.

use serde::{de::DeserializeOwned, Serialize};

use super::uncertainty::Estimate;
use crate::eval::{BatchComparison, TokenComparison};

/// One scored token of a codec's pass against the baseline's: every statistic's input.
pub struct TokenScore<'a> {
    /// KL(base ‖ codec) and KL(codec ‖ base).
    pub kld: f32,
    pub reverse_kld: f32,
    /// Both put the same token on top.
    pub top1_agree: bool,
    /// How many of the baseline's `TOP_K` most likely tokens are among the codec's.
    pub top_k_shared: u32,
    /// −log p(target) under the codec and under the baseline.
    pub nll: f32,
    pub nll_base: f32,
    /// p_codec(target) − p_base(target).
    pub dp: f32,
    /// The input token (whose hidden state made the prediction), its position in its window
    /// and the text it stands for (asked for only by statistics that keep it).
    pub id: u32,
    pub position: u32,
    pub text: &'a dyn Fn() -> String,
}

/// A statistic's figure: its name (the record's key, the label printed) and its value ± .
pub struct Figure {
    pub name: &'static str,
    pub estimate: Estimate,
}

/// The token stream a batch's comparison indexes into: ids and the text of token i.
pub struct Stream<'a> {
    pub ids: &'a [u32],
    pub text: &'a dyn Fn(usize) -> String,
}

/// A statistic of a codec against the baseline, summed over a run. Its state goes into each
/// batch line (so `--resume` and `merge` rebuild it exactly): fields added later must default.
pub trait Statistic: Default + Clone + Serialize + DeserializeOwned {
    /// One scored token.
    fn update(&mut self, token: &TokenScore<'_>);

    /// The same statistic of later batches (or of a later shard).
    fn merge(&mut self, other: &Self);

    /// The figures it adds to the record's `divergence.figures` over `tokens` scored tokens,
    /// for the summary, `report --detail` and report.html. The statistics listed before this
    /// existed have their own fields in the record and add none.
    fn figures(&self, _tokens: usize) -> Vec<Figure> {
        Vec::new()
    }

    /// One batch's comparison: by default each scored token in turn, in row order.
    fn add_batch(&mut self, batch: &BatchComparison, stream: &Stream<'_>) {
        for_each_token(&batch.tokens, stream, |t| self.update(t));
    }
}

/// `f` on each scored token of a batch's comparison, in row order.
pub fn for_each_token(
    c: &TokenComparison,
    stream: &Stream<'_>,
    mut f: impl FnMut(&TokenScore<'_>),
) {
    for i in 0..c.kld.len() {
        let at = c.at[i];
        f(&TokenScore {
            kld: c.kld[i],
            reverse_kld: c.reverse_kld[i],
            top1_agree: c.top1[i],
            top_k_shared: c.top_k_shared[i],
            nll: -c.lp[i],
            nll_base: -c.lp_base[i],
            dp: c.lp[i].exp() - c.lp_base[i].exp(),
            id: stream.ids[at],
            position: c.position[i],
            text: &|| (stream.text)(at),
        });
    }
}
