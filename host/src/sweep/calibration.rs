//! Before the sweep: each calibrated codec fitted at each link to the uncompressed hidden
//! states of the calibration text; the fitted states kept in the run folder, where a resumed
//! run finds them again.

use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::DType as TensorDType;
use splitbench_plugin_api::{DType, TensorView};

use crate::config::LoadedExperiment;
use crate::eval::{states_at_links, Window};
use crate::link::{CalibrationTarget, CodecHost};
use crate::output::RunDir;
use crate::plan::Plan;
use crate::setup::{calibration_text, CalibrationText, LoadedModel, Tokens};

/// The states entering one link over the calibration windows, as f32 bytes.
#[derive(Default)]
struct LinkSamples {
    bytes: Vec<u8>,
    rows: usize,
    hidden: usize,
}

/// Fits every calibrated codec of the experiment at every link it runs on and gives the
/// states to `host`; a state already in `run_dir` (a resumed run) is read instead of fitted
/// again. `None` when no codec is calibrated.
pub fn fit(
    exp: &LoadedExperiment,
    model: &LoadedModel,
    evaluation: &Tokens,
    plan: &Plan,
    host: &mut CodecHost,
    run_dir: Option<&RunDir>,
) -> Result<Option<CalibrationText>> {
    let targets = host.calibration_targets(&exp.experiment.codec, plan, &exp.base_dir)?;
    if targets.is_empty() {
        return Ok(None);
    }
    let (ids, text) = calibration_text::load(exp, &model.tokenizer, evaluation)?;
    let state_path = |dir: &RunDir, t: &CalibrationTarget| {
        dir.calibration_state(t.link, &t.codec, &t.config_digest())
    };
    let mut missing = Vec::new();
    for target in targets {
        match run_dir.map(|dir| state_path(dir, &target)) {
            Some(path) if path.is_file() => {
                let state = std::fs::read(&path)
                    .with_context(|| format!("reading the fitted state `{}`", path.display()))?;
                host.set_calibration_state(target, state);
            }
            _ => missing.push(target),
        }
    }
    if missing.is_empty() {
        return Ok(Some(text));
    }
    let samples = capture(model, &ids, plan, exp.experiment.eval.max_length)?;
    for target in missing {
        let s = &samples[target.link];
        let shape = [1, s.rows, s.hidden];
        let view = TensorView::new(DType::F32, &shape, &s.bytes)?;
        let clock = Instant::now();
        let state = host.calibrate(&target, &view)?;
        eprintln!(
            "splitbench: fitted `{}` {} at {} on {} tokens of {}: {} state bytes ({:.1} s)",
            target.codec,
            target.params_json,
            target.link_name,
            s.rows,
            text.source,
            state.len(),
            clock.elapsed().as_secs_f64()
        );
        if let Some(dir) = run_dir {
            let path = state_path(dir, &target);
            std::fs::create_dir_all(dir.calibration_dir())
                .and_then(|()| std::fs::write(&path, &state))
                .with_context(|| format!("writing the fitted state `{}`", path.display()))?;
        }
        host.set_calibration_state(target, state);
    }
    Ok(Some(text))
}

/// The uncompressed states entering each link of `plan` over `ids`, in windows of
/// `max_length` that do not overlap.
fn capture(
    model: &LoadedModel,
    ids: &[u32],
    plan: &Plan,
    max_length: usize,
) -> Result<Vec<LinkSamples>> {
    let mut samples: Vec<LinkSamples> = (0..plan.links.len())
        .map(|_| LinkSamples::default())
        .collect();
    for begin in (0..ids.len()).step_by(max_length.max(1)) {
        let end = (begin + max_length).min(ids.len());
        let window = Window {
            begin,
            end,
            trg_len: end - begin,
        };
        let states = states_at_links(&model.decoder, ids, window, plan)?;
        for (link, state) in samples.iter_mut().zip(states) {
            let values = state
                .to_dtype(TensorDType::F32)?
                .flatten_all()?
                .to_vec1::<f32>()?;
            link.hidden = state.dims().last().copied().unwrap_or(0);
            link.rows += end - begin;
            link.bytes
                .extend(values.iter().flat_map(|v| v.to_le_bytes()));
        }
    }
    Ok(samples)
}
