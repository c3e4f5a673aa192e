//! `splitbench bench`: forward-pass throughput of the model with the experiment's codecs.

use std::time::Instant;

use anyhow::Result;

use crate::codec_host::CodecHost;
use crate::config::LoadedExperiment;
use crate::eval::{eval_batch, Links};
use crate::plugin_search::PluginSearch;
use crate::protocol;
use crate::run::{load_model, load_tokens, make_plan};

/// Times `batches` batches (after one warm-up) per codec and prints tokens/s.
pub fn bench(exp: &LoadedExperiment, batches: usize) -> Result<()> {
    let model = load_model(exp)?;
    let tokens = load_tokens(exp, &model.tokenizer)?;
    let eval = &exp.experiment.eval;
    let windows = protocol::windows(tokens.ids.len(), eval.max_length, eval.stride);
    let plan = make_plan(exp, model.decoder.num_layers())?;
    let mut host = CodecHost::new(PluginSearch::from_env());
    println!(
        "model: {} layers, hidden {}, {:?} {}; batch {} × {} tokens; device {:?}",
        model.decoder.num_layers(),
        model.decoder.hidden_size(),
        model.decoder.family,
        exp.experiment.model.dtype,
        eval.batch_size,
        eval.max_length,
        model.decoder.device()
    );
    println!(
        "{:<24} {:>14} {:>12} {:>10} {:>10}",
        "codec", "tokens/s", "s/batch", "codec %", "transfer %"
    );
    for spec in &exp.experiment.codec {
        let (codecs, _) = host.link_codecs(spec, &plan, &exp.base_dir)?;
        let mut links = Links::new(&plan, codecs);
        let mut chunks = windows.chunks(eval.batch_size).cycle();
        if let Some(warm) = chunks.next() {
            eval_batch(&model.decoder, &tokens.ids, warm, &mut links)?;
        }
        let (mut processed, mut codec_s, mut transfer_s) = (0u64, 0f64, 0f64);
        let start = Instant::now();
        for batch in chunks.take(batches) {
            let padded = batch.iter().map(protocol::Window::len).max().unwrap_or(0);
            processed += (batch.len() * padded) as u64;
            let (_, traffic) = eval_batch(&model.decoder, &tokens.ids, batch, &mut links)?;
            codec_s += traffic.iter().map(|t| t.encode_s + t.decode_s).sum::<f64>();
            transfer_s += traffic.iter().map(|t| t.transfer_s).sum::<f64>();
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!(
            "{:<24} {:>14.1} {:>12.3} {:>9.1}% {:>9.1}%",
            spec.display_name(),
            processed as f64 / elapsed,
            elapsed / batches as f64,
            100.0 * codec_s / elapsed,
            100.0 * transfer_s / elapsed
        );
    }
    Ok(())
}
