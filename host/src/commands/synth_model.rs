//! `splitbench synth-model`: a random-weight model folder of a given shape, for tests and
//! throughput runs without a download.

use std::path::Path;

use anyhow::Result;

use crate::model::synth::{write_model, SynthShape};

pub fn synth_model(out: &Path, shape: &SynthShape) -> Result<()> {
    write_model(out, shape)?;
    println!(
        "wrote a random-weight {} model to {}",
        shape.resolved().family,
        out.display()
    );
    Ok(())
}
