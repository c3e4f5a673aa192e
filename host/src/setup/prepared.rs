//! Parse → resolve: an experiment checked against its plugins, its data and its model, and
//! what every command that evaluates needs, prepared once (the model and tokens, the windows,
//! the plan, the codec host). `run` and `bench` start from it, so they refuse the same
//! mistakes with the same words.

use anyhow::Result;

use super::{load_model_and_tokens, LoadedModel, Tokens};
use crate::config::LoadedExperiment;
use crate::eval::windows::windows;
use crate::eval::Window;
use crate::link::{CodecHost, PluginSearch};
use crate::plan::Plan;

/// What the experiment asks that its model or plan cannot give.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error(
        "eval.max_length = {max_length} exceeds the model's context ({positions} positions); \
         lower it with --set eval.max_length={positions}"
    )]
    ContextTooLong { max_length: usize, positions: usize },
    #[error(
        "the plan puts the whole model on one node, so there is no link for codec `{codec}` to \
         run on; split the model with plan.nodes (at least 2), plan.split_after or \
         plan.layer_to_node"
    )]
    NoLink { codec: String },
    #[error(
        "codec `{codec}` overrides link `{key}`, which this plan does not have; its links are \
         {links} (a link can also be named by its first part, e.g. `layer:7`)"
    )]
    UnknownLink {
        codec: String,
        key: String,
        links: String,
    },
}

/// An experiment whose codecs were checked (plugins found, parameters accepted), before the
/// model is loaded.
pub struct Checked<'a> {
    pub exp: &'a LoadedExperiment,
    host: CodecHost,
}

/// A checked experiment with its model and tokens loaded and everything that needs the model
/// checked.
pub struct Prepared {
    pub model: LoadedModel,
    pub tokens: Tokens,
    pub windows: Vec<Window>,
    pub plan: Plan,
    /// The codecs' plugins, loaded and checked; not yet placed on the model's devices.
    pub host: CodecHost,
}

impl<'a> Checked<'a> {
    /// Everything that can be checked without the model, before minutes of loading.
    pub fn new(exp: &'a LoadedExperiment) -> Result<Checked<'a>> {
        let mut host = CodecHost::new(PluginSearch::from_env(), exp.experiment.eval.nonfinite);
        if host.check(&exp.experiment.codec, &exp.base_dir)? {
            super::calibration_text::check(exp)?;
        }
        Ok(Checked { exp, host })
    }

    /// Loads the model and the tokens; checks the context length, the plan's links and the
    /// codecs' per-link overrides against them.
    pub fn prepare(self) -> Result<Prepared> {
        let exp = self.exp;
        let eval = &exp.experiment.eval;
        let (model, tokens) = load_model_and_tokens(exp)?;
        let positions = model.decoder.config.max_position_embeddings;
        if eval.max_length > positions {
            return Err(PrepareError::ContextTooLong {
                max_length: eval.max_length,
                positions,
            }
            .into());
        }
        let plan = Plan::from_section(&exp.experiment.plan, model.decoder.num_layers())?;
        let codecs = &exp.experiment.codec;
        if plan.links.is_empty() {
            if let Some(codec) = codecs.iter().find(|c| !c.is_none()) {
                return Err(PrepareError::NoLink {
                    codec: codec.display_name(),
                }
                .into());
            }
        }
        for spec in codecs {
            if let Some(key) = spec.links.keys().find(|k| !plan.has_link(k)) {
                return Err(PrepareError::UnknownLink {
                    codec: spec.display_name(),
                    key: key.clone(),
                    links: plan.link_names(),
                }
                .into());
            }
        }
        Ok(Prepared {
            windows: windows(tokens.ids.len(), eval.max_length, eval.stride),
            model,
            tokens,
            plan,
            host: self.host,
        })
    }
}
