//! `splitbench report RUN_DIR [--detail]`: the summary table and plots of a finished run,
//! again; with `--detail`, llama-perplexity's statistics block per codec.

use std::path::Path;

use anyhow::Result;

use crate::output::detail::detail_block;
use crate::output::summary::{load_records, render};
use crate::output::RunDir;

pub fn report(dir: &Path, detail: bool) -> Result<()> {
    let dir = RunDir::existing(dir);
    let records = load_records(&dir)?;
    render(&dir, &records)?;
    if !detail {
        return Ok(());
    }
    for r in &records {
        let Some(d) = &r.divergence else {
            continue;
        };
        match &d.llama {
            Some(stats) => println!("\n{}", detail_block(&r.codec, stats).trim_end()),
            None => println!(
                "\n====== {} ======\nno per-token statistics: the record was written by a \
                 splitbench older than `report --detail`; run the experiment again for them",
                r.codec
            ),
        }
    }
    Ok(())
}
