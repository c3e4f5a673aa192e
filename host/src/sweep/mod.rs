//! The sweep: every batch through the baseline and every codec, each codec's totals and
//! curve kept as it goes, resumable, interruptible, then a record per codec.

pub mod calibration;
mod codec_run;
mod finish;
pub mod generation;
mod inputs;
mod interrupts;
mod merge;
mod resume;

use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use codec_run::{CodecRun, Totals};
pub use inputs::Sweep;
pub use merge::merge;

use crate::config::{CodecSpec, LoadedExperiment};
use crate::eval::{sweep_batch, Links, Window};
use crate::link::CodecHost;
use crate::output::{CodecRecord, JsonlWriter};
use crate::plan::Plan;
use crate::setup::TextCount;

/// The baseline and the codecs of the experiment (each `none` entry is the baseline itself);
/// with `per_link`, also each codec at one link only, every other link uncompressed.
fn codec_specs(exp: &LoadedExperiment, plan: &Plan, per_link: bool) -> Vec<CodecSpec> {
    let codecs: Vec<CodecSpec> = exp
        .experiment
        .codec
        .iter()
        .filter(|c| !c.is_none() || !c.links.is_empty())
        .cloned()
        .collect();
    let mut specs = vec![CodecSpec::none()];
    specs.extend(codecs.iter().cloned());
    if per_link {
        for spec in &codecs {
            for link in &plan.links {
                let mut only = spec.clone();
                only.label = Some(format!("{}@{}", spec.display_name(), link.name));
                for other in plan.links.iter().filter(|l| l.name != link.name) {
                    only.links.insert(other.name.clone(), CodecSpec::none());
                }
                specs.push(only);
            }
        }
    }
    specs
}

fn start_run<'p>(
    sweep: &'p Sweep<'_>,
    host: &mut CodecHost,
    multi: &MultiProgress,
    index: usize,
    spec: &CodecSpec,
) -> Result<CodecRun<'p>> {
    let label = spec.display_name();
    let (codecs, plugins) = host
        .link_codecs(spec, &sweep.plan, &sweep.exp.base_dir)
        .with_context(|| format!("setting up codec `{label}`"))?;
    let calibrated = host.calibrated_links(spec, &sweep.plan, &sweep.exp.base_dir)?;
    let link_labels = codecs.iter().map(|c| c.label().to_string()).collect();
    let link_paths = codecs.iter().map(|c| c.path()).collect();
    let jsonl_path = sweep.run_dir.batches(index, &label);
    let bar = multi.add(ProgressBar::new(sweep.windows_in_range() as u64));
    bar.set_style(
        ProgressStyle::with_template("{prefix:>16} [{bar:24}] {pos}/{len} {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(label.clone());
    Ok(CodecRun {
        index,
        spec: spec.clone(),
        label,
        links: Links::new(&sweep.plan, codecs),
        link_labels,
        link_paths,
        plugins,
        calibrated,
        totals: Totals::new(sweep.plan.links.len()),
        jsonl: JsonlWriter::append(jsonl_path.clone())?,
        jsonl_path,
        bar,
        started: chrono::Utc::now(),
        clock: Instant::now(),
        failure: None,
    })
}

/// Evaluates the baseline and every codec, batch by batch: the layers before the first
/// link run once per batch, and the baseline's log-probabilities live only while that
/// batch is compared.
pub fn run(sweep: &Sweep<'_>, host: &mut CodecHost) -> Result<Vec<CodecRecord>> {
    let decoder = &sweep.model.decoder;
    let multi = MultiProgress::new();
    let specs = codec_specs(sweep.exp, &sweep.plan, sweep.per_link);
    let mut runs = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| start_run(sweep, host, &multi, i, spec))
        .collect::<Result<Vec<_>>>()?;
    let range = sweep.batch_range();
    let start_batch = range.start + resume::prepare(sweep, &mut runs)?;
    interrupts::watch_interrupts();
    let (base, codecs) = runs
        .split_first_mut()
        .context("the baseline is always present")?;
    let batch_size = sweep.exp.experiment.eval.batch_size;
    let mut interrupted = false;
    for (b, windows) in sweep
        .windows
        .chunks(batch_size)
        .enumerate()
        .take(range.end)
        .skip(start_batch)
    {
        let mut codec_links: Vec<Option<&mut Links<'_>>> = codecs
            .iter_mut()
            .map(|r| r.failure.is_none().then_some(&mut r.links))
            .collect();
        let (base_pass, outcomes) = sweep_batch(
            decoder,
            &sweep.tokens.ids,
            windows,
            &mut base.links,
            &mut codec_links,
        )?;
        let tokens_processed = base_pass.scores.len() as u64
            * windows.iter().map(Window::len).max().unwrap_or(0) as u64;
        let mut text = TextCount::default();
        for w in windows {
            text.add(sweep.tokens.units.count(w.begin + w.first_target()..w.end));
        }
        base.record_batch(b, base_pass, tokens_processed, sweep.tokens, text)?;
        for (run, outcome) in codecs.iter_mut().zip(outcomes) {
            match outcome {
                None => {}
                // A codec that fails is marked failed; the others go on.
                Some(Err(e)) => run.fail(format!("batch {b}: {e}"))?,
                Some(Ok(pass)) => {
                    run.record_batch(b, pass, tokens_processed, sweep.tokens, text)?
                }
            }
        }
        if interrupts::interrupted() && b + 1 < range.end {
            interrupted = true;
            break;
        }
    }
    let link_model = sweep
        .exp
        .experiment
        .links
        .model()
        .map_err(anyhow::Error::msg)?;
    let base_windows = runs[0].totals.windows.clone();
    let mut records = Vec::with_capacity(runs.len());
    for run in runs {
        run.bar.finish();
        // Not measured for a failed codec; a codec that fails at this size gets no estimate.
        let one_token = match (&run.failure, interrupted) {
            (None, false) => match finish::one_token_costs(sweep, host, &run.spec) {
                Ok(costs) => Some(costs),
                Err(e) => {
                    eprintln!(
                        "splitbench: no batch-1 generation estimate for `{}`: {e:#}",
                        run.label
                    );
                    None
                }
            },
            _ => None,
        };
        records.push(finish::finish(
            sweep,
            run,
            &base_windows,
            &link_model,
            one_token.as_deref(),
            interrupted,
        )?);
    }
    if interrupted {
        bail!(
            "interrupted: records marked incomplete are in {} (*.partial.json); continue with \
             `splitbench run {} --resume {}`",
            sweep.run_dir.path().display(),
            sweep.exp.path.display(),
            sweep.run_dir.path().display()
        );
    }
    Ok(records)
}
