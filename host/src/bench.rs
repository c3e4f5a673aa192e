//! `splitbench bench`: forward-pass throughput with each codec, and the cost of one sweep
//! against separate runs.

use std::time::Instant;

use anyhow::Result;

use crate::codec_host::CodecHost;
use crate::config::{CodecSpec, LoadedExperiment};
use crate::eval::{eval_batch, sweep_batch, Links};
use crate::plugin_search::PluginSearch;
use crate::protocol::{self, Window};
use crate::run::{load_model, load_tokens, make_plan};

/// Times `batches` batches (after one warm-up) per codec and prints processed tokens/s; then
/// the same batches as one sweep (baseline + every codec, shared prefix) against one
/// separate run per codec.
pub fn bench(exp: &LoadedExperiment, batches: usize) -> Result<()> {
    let model = load_model(exp)?;
    let decoder = &model.decoder;
    let tokens = load_tokens(exp, &model.tokenizer)?;
    let eval = &exp.experiment.eval;
    let windows = protocol::windows(tokens.ids.len(), eval.max_length, eval.stride);
    let chunks: Vec<&[Window]> = windows
        .chunks(eval.batch_size)
        .cycle()
        .take(batches + 1)
        .collect();
    let plan = make_plan(exp, decoder.num_layers())?;
    let mut host = CodecHost::new(PluginSearch::from_env(), eval.nonfinite);
    println!(
        "model: {} layers, hidden {}, {:?}, {} {}; batch {} × {} tokens; device {:?}; {} threads",
        decoder.num_layers(),
        decoder.hidden_size(),
        decoder.family,
        exp.experiment.model.dtype,
        model.info.weights,
        eval.batch_size,
        eval.max_length,
        decoder.device(),
        worker_threads(),
    );
    println!(
        "{:<24} {:>14} {:>12} {:>10} {:>10}",
        "codec", "tokens/s", "s/batch", "codec %", "transfer %"
    );
    let mut specs = vec![CodecSpec::none()];
    specs.extend(
        exp.experiment
            .codec
            .iter()
            .filter(|c| !c.is_none())
            .cloned(),
    );
    let mut separate_s = 0.0;
    let mut processed_per_run = 0u64;
    for spec in &specs {
        let (codecs, _) = host.link_codecs(spec, &plan, &exp.base_dir)?;
        let mut links = Links::new(&plan, codecs);
        eval_batch(decoder, &tokens.ids, chunks[0], &mut links)?;
        let (mut processed, mut codec_s, mut transfer_s) = (0u64, 0f64, 0f64);
        let start = Instant::now();
        for batch in &chunks[1..] {
            let padded = batch.iter().map(Window::len).max().unwrap_or(0);
            processed += (batch.len() * padded) as u64;
            let (_, traffic) = eval_batch(decoder, &tokens.ids, batch, &mut links)?;
            codec_s += traffic.iter().map(|t| t.encode_s + t.decode_s).sum::<f64>();
            transfer_s += traffic.iter().map(|t| t.transfer_s).sum::<f64>();
        }
        let elapsed = start.elapsed().as_secs_f64();
        separate_s += elapsed;
        processed_per_run = processed;
        println!(
            "{:<24} {:>14.1} {:>12.3} {:>9.1}% {:>9.1}%",
            spec.display_name(),
            processed as f64 / elapsed,
            elapsed / batches as f64,
            100.0 * codec_s / elapsed,
            100.0 * transfer_s / elapsed
        );
    }
    if specs.len() > 1 {
        let (base, _) = host.link_codecs(&specs[0], &plan, &exp.base_dir)?;
        let mut base = Links::new(&plan, base);
        let mut codec_links = specs[1..]
            .iter()
            .map(|s| {
                Ok(Links::new(
                    &plan,
                    host.link_codecs(s, &plan, &exp.base_dir)?.0,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let start = Instant::now();
        for batch in &chunks[1..] {
            let mut refs: Vec<Option<&mut Links<'_>>> = codec_links.iter_mut().map(Some).collect();
            sweep_batch(decoder, &tokens.ids, batch, &mut base, &mut refs)?;
        }
        let sweep_s = start.elapsed().as_secs_f64();
        println!(
            "\n{} codecs + baseline over {batches} batches ({processed_per_run} processed tokens each):\n  \
             separate runs {separate_s:.2} s, one sweep {sweep_s:.2} s (with KLD and top-1 against the baseline): \
             the sweep costs {:.0}% of the separate runs",
            specs.len() - 1,
            100.0 * sweep_s / separate_s
        );
    }
    Ok(())
}

fn worker_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
