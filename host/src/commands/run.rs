//! `splitbench run`: load the model and data once, sweep the codecs against the
//! uncompressed baseline, then the summary.

use anyhow::{bail, Result};

use crate::config::LoadedExperiment;
use crate::eval::windows::windows;
use crate::link::{CodecHost, PluginSearch};
use crate::output::record::write_new_json;
use crate::output::summary::render;
use crate::output::{CodecRecord, RunDir};
use crate::plan::Plan;
use crate::setup::load_model_and_tokens;
use crate::sweep::{self, Sweep};

/// Runs the experiment's sweep; writes the records and summary.json, prints the summary
/// table and draws the plots.
pub fn run(
    exp: &LoadedExperiment,
    per_link: bool,
    resume: Option<&std::path::Path>,
) -> Result<Vec<CodecRecord>> {
    let (model, tokens) = load_model_and_tokens(exp)?;
    let eval = &exp.experiment.eval;
    let max_positions = model.decoder.config.max_position_embeddings;
    if eval.max_length > max_positions {
        bail!(
            "eval.max_length = {} exceeds the model's context ({max_positions} positions); lower it with --set eval.max_length={max_positions}",
            eval.max_length
        );
    }
    let windows = windows(tokens.ids.len(), eval.max_length, eval.stride);
    let plan = Plan::from_section(&exp.experiment.plan, model.decoder.num_layers())?;
    let stem = exp
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    let run_dir = match resume {
        Some(dir) => RunDir::existing(dir),
        None => RunDir::create(&exp.resolve(&exp.experiment.output.dir), &stem)?,
    };
    eprintln!(
        "splitbench: {} tokens, {} windows, {} links ({}), records in {}",
        tokens.ids.len(),
        windows.len(),
        plan.links.len(),
        plan.links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        run_dir.path().display()
    );
    let sweep = Sweep {
        exp,
        model: &model,
        tokens: &tokens,
        windows,
        plan,
        run_dir: run_dir.clone(),
        per_link,
        resume: resume.is_some(),
    };
    let mut host = CodecHost::new(PluginSearch::from_env(), eval.nonfinite)
        .for_device(model.decoder.device(), eval.verify_wire);
    let records = sweep::run(&sweep, &mut host)?;
    let rows = render(&run_dir, &records)?;
    write_new_json(&run_dir.summary(), &rows)?;
    report_wire_checks(&records, eval.verify_wire)?;
    if let Some(failed) = records.iter().find(|r| r.failure.is_some()) {
        bail!(
            "codec `{}` failed ({}); the other codecs' records are in {}",
            failed.codec,
            failed.failure.as_deref().unwrap_or_default(),
            run_dir.path().display()
        );
    }
    Ok(records)
}

/// Prints what `--verify-wire` found; fails when a device wire differed from the host path's.
fn report_wire_checks(records: &[CodecRecord], requested: bool) -> Result<()> {
    let on_device = records
        .iter()
        .flat_map(|r| &r.traffic.links)
        .any(|l| l.path == "device");
    if requested && !on_device {
        eprintln!(
            "splitbench: no link ran on the device path, so --verify-wire had nothing to check \
             (the model is not on a GPU, or no codec of this run has a device path)"
        );
    }
    let mut mismatched = Vec::new();
    for r in records {
        for l in &r.traffic.links {
            let t = &l.traffic;
            if t.wire_checks == 0 {
                continue;
            }
            println!(
                "verify-wire: {} at {}: {} wires checked, {} differ from the host path's; \
                 device vs host decode of one wire: max |diff| {:.3e}",
                r.codec, l.name, t.wire_checks, t.wire_mismatches, t.verify_max_decode_diff
            );
            if t.wire_mismatches > 0 || t.verify_max_decode_diff > 0.0 {
                mismatched.push(format!("{} at {}", r.codec, l.name));
            }
        }
    }
    if !mismatched.is_empty() {
        bail!(
            "the device path disagrees with the host path for {}; the plugin's kernels do not \
             reproduce its host implementation",
            mismatched.join(", ")
        );
    }
    Ok(())
}
