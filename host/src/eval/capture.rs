//! The uncompressed hidden states entering each link: what `capture` saves and what calibrated
//! codecs are fitted to.

use candle_core::Tensor;

use super::error::EvalError;
use super::forward::{embed_batch, run_layers};
use super::windows::Window;
use crate::model::Decoder;
use crate::plan::Plan;

/// For one window of `tokens`, the state entering each link of `plan` (`[1, tokens, hidden]`,
/// in link order). The layers after the last link are not run.
pub fn states_at_links(
    decoder: &Decoder,
    tokens: &[u32],
    window: Window,
    plan: &Plan,
) -> Result<Vec<Tensor>, EvalError> {
    let windows = [window];
    let (batch, mut h) = embed_batch(decoder, tokens, &windows)?;
    let mut states: Vec<Option<Tensor>> = vec![None; plan.links.len()];
    if let Some(k) = plan.link_after_embed() {
        states[k] = Some(h.clone());
    }
    let after_layer = plan.link_after_layer();
    let last = after_layer
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    for (i, link) in after_layer.iter().enumerate().take(last) {
        h = run_layers(decoder, &batch, h, i..i + 1)?;
        if let Some(k) = link {
            states[*k] = Some(h.clone());
        }
    }
    Ok(states.into_iter().flatten().collect())
}
