//! `splitbench run`: load the model and data once, sweep the codecs against the
//! uncompressed baseline, then the summary.

use anyhow::{bail, Result};

use crate::config::LoadedExperiment;
use crate::eval::Shard;
use crate::output::record::{replace_json, write_new_json};
use crate::output::summary::render;
use crate::output::{CodecRecord, RunDir};
use crate::setup::{Checked, Prepared};
use crate::sweep::{self, Sweep};

/// Runs the experiment's sweep; writes the records and summary.json, prints the summary
/// table and draws the plots.
pub fn run(
    exp: &LoadedExperiment,
    per_link: bool,
    resume: Option<&std::path::Path>,
    shard: Option<Shard>,
) -> Result<Vec<CodecRecord>> {
    let eval = &exp.experiment.eval;
    // Everything that can be checked without the model, before minutes of loading, and
    // nothing written until it passes.
    let checked = Checked::new(exp)?;
    let output_dir = super::relative_to_cwd(&exp.resolve(&exp.experiment.output.dir));
    let resume = resume.map(super::relative_to_cwd);
    let resume = resume.as_deref();
    match resume {
        Some(dir) => RunDir::check_resumable(dir)?,
        None => RunDir::check_creatable(&output_dir)?,
    }
    let Prepared {
        model,
        tokens,
        windows,
        plan,
        host,
    } = checked.prepare()?;
    let batches = windows.len().div_ceil(eval.batch_size);
    if let Some(s) = shard {
        if s.count > batches {
            bail!(
                "--shard {s}: the run has only {}, so at most {batches} shards can each \
                 hold one; use fewer shards or a smaller eval.batch_size",
                count(batches, "batch")
            );
        }
    }
    let mut stem = exp
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    if let Some(s) = shard {
        stem = format!("{stem}-shard{}of{}", s.index, s.count);
    }
    let run_dir = match resume {
        Some(dir) => RunDir::existing(dir),
        None => RunDir::create(&output_dir, &stem)?,
    };
    let part = shard.map(|s| format!(" (shard {s})")).unwrap_or_default();
    eprintln!(
        "splitbench: {}, {}{part}, {} ({}), records in {}",
        count(tokens.ids.len(), "token"),
        count(windows.len(), "window"),
        count(plan.links.len(), "link"),
        plan.link_names(),
        run_dir.path().display()
    );
    let mut host = host.for_model(plan.gpu_links(&model.decoder), eval.verify_wire);
    let calibration =
        sweep::calibration::fit(exp, &model, &tokens, &plan, &mut host, Some(&run_dir))?;
    let sweep = Sweep {
        exp,
        model: &model,
        tokens: &tokens,
        windows,
        plan,
        run_dir: run_dir.clone(),
        per_link,
        resume: resume.is_some(),
        shard,
        calibration,
    };
    let mut records = sweep::run(&sweep, &mut host)?;
    let generated = match &exp.experiment.generate {
        Some(spec) => generation(&sweep, &mut host, spec, &mut records)?,
        None => false,
    };
    let rows = render(&run_dir, &records)?;
    if generated {
        print!("{}", sweep::generation::table(&records));
    }
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

/// `[generate]` after the sweep: each record gets its `generation` and is written again.
/// False where it was skipped.
fn generation(
    sweep: &Sweep<'_>,
    host: &mut crate::link::CodecHost,
    spec: &crate::config::GenerateSection,
    records: &mut [CodecRecord],
) -> Result<bool> {
    if sweep.shard.is_some() || records.iter().any(|r| r.failure.is_some() || r.incomplete) {
        eprintln!(
            "splitbench: [generate] skipped: it runs after a whole sweep whose codecs all \
             finished (not on a shard, an interrupted run or after a failure)"
        );
        return Ok(false);
    }
    let link_model = (sweep.exp.experiment.links.model()).map_err(anyhow::Error::msg)?;
    sweep::generation::run(sweep, host, spec, &link_model, records)?;
    for (index, record) in records.iter().enumerate() {
        replace_json(&sweep.run_dir.record(index, &record.codec), record)?;
    }
    Ok(true)
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

/// `1 window`, `37 windows`.
fn count(n: usize, noun: &str) -> String {
    match (n, noun.ends_with(['s', 'h'])) {
        (1, _) => format!("1 {noun}"),
        (_, true) => format!("{n} {noun}es"),
        _ => format!("{n} {noun}s"),
    }
}
