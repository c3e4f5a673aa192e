//! `splitbench report RUN_DIR`: the summary table and plots of a finished run, again.

use std::path::Path;

use anyhow::Result;

use crate::output::summary::{load_records, render};
use crate::output::RunDir;

pub fn report(dir: &Path) -> Result<()> {
    let dir = RunDir::existing(dir);
    let records = load_records(&dir)?;
    render(&dir, &records)?;
    Ok(())
}
