//! `splitbench merge OUT SHARD_DIR...`: the shards of a run into the whole run's folder.

use std::path::{Path, PathBuf};

use anyhow::Result;

pub fn merge(out: &Path, shards: &[PathBuf]) -> Result<()> {
    let records = crate::sweep::merge(out, shards)?;
    eprintln!(
        "splitbench: merged {} shards of {} codecs into {}",
        shards.len(),
        records.len(),
        out.display()
    );
    Ok(())
}
