//! `--resume`: what must not change between a run and its resumption, and where the run
//! goes on from.

use anyhow::{bail, Context, Result};

use super::codec_run::CodecRun;
use super::inputs::Sweep;
use crate::eval::Shard;
use crate::output::record::write_new_json;

/// What must not change between a run and its resumption.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub(super) struct RunIdentity {
    /// The resolved experiment, output folder left out.
    config: serde_json::Value,
    /// Model files: name and size.
    model_files: Vec<(String, u64)>,
    text_sha256: String,
    tokens: usize,
    /// Codec label and sha256 of each plugin binary it uses.
    plugins: Vec<(String, Vec<String>)>,
    per_link: bool,
    /// Absent for a whole run, so run.json of runs without shards is unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) shard: Option<Shard>,
}

/// `value` without the keys whose value is null: a config key added later as an unset option
/// is the same experiment as the config written before it had that key.
fn without_nulls(value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.clone(), without_nulls(v)))
            .collect(),
        serde_json::Value::Array(items) => items.iter().map(without_nulls).collect(),
        other => other.clone(),
    }
}

impl RunIdentity {
    /// The identity of the whole run this shard is part of.
    pub(super) fn without_shard(&self) -> RunIdentity {
        RunIdentity {
            shard: None,
            ..self.clone()
        }
    }

    /// What differs between two shards' runs, their shard aside.
    pub(super) fn difference_ignoring_shard(&self, other: &RunIdentity) -> Option<String> {
        self.without_shard().difference(&other.without_shard())
    }

    /// The first thing that differs, said for a user.
    fn difference(&self, before: &RunIdentity) -> Option<String> {
        if without_nulls(&self.config) != without_nulls(&before.config) {
            return Some(
                "the experiment config differs (compare it with the `config` of the run's records)"
                    .into(),
            );
        }
        if self.model_files != before.model_files {
            return Some(format!(
                "the model files differ: {:?} then, {:?} now",
                before.model_files, self.model_files
            ));
        }
        if self.text_sha256 != before.text_sha256 || self.tokens != before.tokens {
            return Some(format!(
                "the data differs: text sha256 {} and {} tokens then, {} and {} now",
                before.text_sha256, before.tokens, self.text_sha256, self.tokens
            ));
        }
        if self.plugins != before.plugins {
            let changed = self
                .plugins
                .iter()
                .find(|p| !before.plugins.contains(p))
                .map(|p| p.0.clone())
                .unwrap_or_default();
            return Some(format!(
                "the plugin binary of codec `{changed}` changed (its sha256 differs)"
            ));
        }
        if self.per_link != before.per_link {
            return Some("--per-link was given to one run and not the other".into());
        }
        if self.shard != before.shard {
            return Some(format!(
                "it ran {}, this run asks for {}",
                shard_words(before.shard),
                shard_words(self.shard)
            ));
        }
        None
    }
}

fn identity(sweep: &Sweep<'_>, runs: &[CodecRun<'_>]) -> Result<RunIdentity> {
    let mut config = serde_json::to_value(&sweep.exp.experiment)?;
    if let Some(c) = config.as_object_mut() {
        c.remove("output");
    }
    Ok(RunIdentity {
        config,
        model_files: sweep
            .model
            .info
            .files
            .iter()
            .map(|f| {
                let name = f.path.file_name().map(|n| n.to_string_lossy().to_string());
                (name.unwrap_or_default(), f.bytes)
            })
            .collect(),
        text_sha256: sweep.tokens.info.text_sha256.clone(),
        tokens: sweep.tokens.ids.len(),
        plugins: runs
            .iter()
            .map(|r| {
                (
                    r.label.clone(),
                    r.plugins.iter().map(|p| p.sha256.clone()).collect(),
                )
            })
            .collect(),
        per_link: sweep.per_link,
        shard: sweep.shard,
    })
}

fn shard_words(shard: Option<Shard>) -> String {
    match shard {
        Some(s) => format!("shard {s}"),
        None => "every batch (no --shard)".into(),
    }
}

/// For a new run, writes `run.json`; for a resumed one, checks it and restores every
/// codec's totals. Returns how many of the sweep's batches are done.
pub fn prepare(sweep: &Sweep<'_>, runs: &mut [CodecRun<'_>]) -> Result<usize> {
    let identity = identity(sweep, runs)?;
    let path = sweep.run_dir.identity();
    if !sweep.resume {
        write_new_json(&path, &identity)?;
        return Ok(0);
    }
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "`{}` is not a run folder splitbench can resume (no run.json)",
            sweep.run_dir.path().display()
        )
    })?;
    let before: RunIdentity = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not a splitbench run identity", path.display()))?;
    if let Some(difference) = identity.difference(&before) {
        bail!(
            "cannot resume {}: {difference}. Resume with the same experiment, model, data and \
             plugins, or start a new run",
            sweep.run_dir.path().display()
        );
    }
    let finished = sweep
        .run_dir
        .finished_records()
        .with_context(|| format!("reading `{}`", sweep.run_dir.path().display()))?;
    if !finished.is_empty() {
        bail!(
            "{} holds a finished run: there is nothing to resume",
            sweep.run_dir.path().display()
        );
    }
    let mut start = usize::MAX;
    for run in runs.iter() {
        if let Some(n) = run.resumable_batches()? {
            start = start.min(n);
        }
    }
    let start = if start == usize::MAX { 0 } else { start };
    for run in runs.iter_mut() {
        run.restore(start)?;
    }
    eprintln!(
        "splitbench: resuming {} after its first {start} batches",
        sweep.run_dir.path().display()
    );
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unset_key_added_later_is_the_same_config() {
        let before = serde_json::json!({"plan": {"nodes": 4}, "codec": [{"name": "none"}]});
        let now = serde_json::json!({"plan": {"nodes": 4, "devices": null}, "codec": [{"name": "none", "label": null}]});
        assert_eq!(without_nulls(&now), without_nulls(&before));
        let other = serde_json::json!({"plan": {"nodes": 4, "devices": ["cpu"]}, "codec": [{"name": "none"}]});
        assert_ne!(without_nulls(&other), without_nulls(&before));
    }
}
