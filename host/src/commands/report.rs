//! `splitbench report RUN_DIR [--detail]`: the summary table and plots of a finished run,
//! again; with `--detail`, llama-perplexity's statistics block per codec, the hidden state's
//! error by layer and the tokens the codec hurts most, and with `[generate]`, each codec's first
//! continuation beside the uncompressed model's.

use std::path::Path;

use anyhow::Result;

use crate::output::detail::{calibration_block, continuation_block, divergence_blocks};
use crate::output::summary::{load_records, render};
use crate::output::RunDir;

pub fn report(dir: &Path, detail: bool) -> Result<()> {
    let dir = RunDir::existing(&super::relative_to_cwd(dir));
    let records = load_records(&dir)?;
    render(&dir, &records)?;
    let generated = records.iter().any(|r| r.generation.is_some());
    if generated {
        print!("{}", crate::sweep::generation::table(&records));
    }
    if !detail {
        return Ok(());
    }
    let baseline = records
        .iter()
        .find(|r| r.codec_spec.is_none())
        .and_then(|r| r.generation.as_ref())
        .and_then(|g| g.continuations.first());
    for r in &records {
        let Some(d) = &r.divergence else {
            continue;
        };
        match divergence_blocks(&r.codec, d, &r.plan.links) {
            Some(blocks) => println!("\n{}", blocks.trim_end()),
            None => println!(
                "\n====== {} ======\nno per-token statistics: the record was written by a \
                 splitbench older than `report --detail`; run the experiment again for them",
                r.codec
            ),
        }
        if let Some(c) = &r.calibration {
            println!("{}", calibration_block(c).trim_end());
        }
        let ours = r.generation.as_ref().and_then(|g| g.continuations.first());
        if let (Some(ours), Some(baseline)) = (ours, baseline) {
            println!(
                "{}",
                continuation_block(&r.codec, ours, baseline).trim_end()
            );
        }
    }
    Ok(())
}
