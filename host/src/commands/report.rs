//! `splitbench report RUN_DIR [--detail]`: the summary table and plots of a finished run,
//! again; with `--detail`, llama-perplexity's statistics block per codec, the hidden state's
//! error by layer and the tokens the codec hurts most.

use std::path::Path;

use anyhow::Result;

use crate::output::detail::divergence_blocks;
use crate::output::summary::{load_records, render};
use crate::output::RunDir;

pub fn report(dir: &Path, detail: bool) -> Result<()> {
    let dir = RunDir::existing(&super::relative_to_cwd(dir));
    let records = load_records(&dir)?;
    render(&dir, &records)?;
    if !detail {
        return Ok(());
    }
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
    }
    Ok(())
}
