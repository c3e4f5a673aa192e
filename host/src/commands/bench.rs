//! `splitbench bench`: forward-pass throughput with each codec, and the cost of one sweep
//! against separate runs.

use std::time::Instant;

use anyhow::Result;

use crate::config::{CodecSpec, LoadedExperiment};
use crate::eval::{eval_batch, sweep_batch, Links, Window};
use crate::model::cpu::VectorIsa;
use crate::profile::{self, Phase};
use crate::setup::Checked;

/// One row of the throughput table, as `--json` writes it.
#[derive(Debug, serde::Serialize)]
pub struct BenchRow {
    pub codec: String,
    pub path: &'static str,
    /// Processed positions per second (every position of every window, padding included).
    pub tokens_per_s: f64,
    /// Scored positions per second: those whose next token is predicted and scored.
    pub scored_tokens_per_s: f64,
    pub s_per_batch: f64,
    pub codec_share: f64,
    pub transfer_share: f64,
    /// Time at the links outside the codec and the host↔device copies: error statistics,
    /// synchronizations, allocations.
    pub link_overhead_share: f64,
    /// With `--profile`: each phase's share of the profiled run's time, and what no phase
    /// holds (`other`: host work between phases).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase_shares: Option<std::collections::BTreeMap<&'static str, f64>>,
}

/// What `bench` runs.
pub struct BenchOptions<'a> {
    /// Batches timed per codec, after one warm-up batch.
    pub batches: usize,
    /// Also time one sweep against separate runs.
    pub sweep: bool,
    /// Also time each codec's batches profiled by phase.
    pub profile: bool,
    /// Where to write the rows as JSON.
    pub json: Option<&'a std::path::Path>,
}

/// Times `batches` batches (after one warm-up) per codec and prints processed tokens/s; then
/// the same batches as one sweep (baseline + every codec, shared prefix) against one
/// separate run per codec.
pub fn bench(exp: &LoadedExperiment, options: &BenchOptions<'_>) -> Result<()> {
    let batches = options.batches;
    let eval = &exp.experiment.eval;
    // The same checks as `run` (the context length among them) and the same preparation.
    let prepared = Checked::new(exp)?.prepare()?;
    let (model, tokens, plan) = (&prepared.model, &prepared.tokens, &prepared.plan);
    let decoder = &model.decoder;
    let chunks: Vec<&[Window]> = prepared
        .windows
        .chunks(eval.batch_size)
        .cycle()
        .take(batches + 1)
        .collect();
    let mut host = prepared.host.for_model(plan.gpu_links(decoder), false);
    crate::sweep::calibration::fit(exp, model, tokens, plan, &mut host, None)?;
    println!(
        "model: {} layers, hidden {}, {:?}, {} {}; batch {} × {} tokens; device {:?}; {} threads, {} kernels",
        decoder.num_layers(),
        decoder.hidden_size(),
        decoder.family,
        exp.experiment.model.dtype,
        model.info.weights,
        eval.batch_size,
        eval.max_length,
        decoder.device(),
        worker_threads(),
        VectorIsa::detect(),
    );
    println!(
        "{:<28} {:>7} {:>14} {:>12} {:>12} {:>10} {:>10} {:>10}",
        "codec", "path", "tokens/s", "scored/s", "s/batch", "codec %", "transfer %", "link %"
    );
    let mut specs = vec![CodecSpec::none()];
    specs.extend(
        exp.experiment
            .codec
            .iter()
            .filter(|c| !c.is_none())
            .cloned(),
    );
    let mut rows = Vec::new();
    let mut separate_s = 0.0;
    let mut processed_per_run = 0u64;
    for spec in &specs {
        let (codecs, _) = host.link_codecs(spec, plan, &exp.base_dir)?;
        let path = codecs
            .iter()
            .map(|c| c.path())
            .find(|&p| p != "none")
            .unwrap_or("none");
        let mut links = Links::new(plan, codecs);
        eval_batch(decoder, &tokens.ids, chunks[0], &mut links)?;
        let (mut processed, mut scored, mut codec_s, mut transfer_s) = (0u64, 0usize, 0f64, 0f64);
        let crossing_before = links.crossing_s;
        let start = Instant::now();
        for batch in &chunks[1..] {
            let padded = batch.iter().map(Window::len).max().unwrap_or(0);
            processed += (batch.len() * padded) as u64;
            let (results, traffic) = eval_batch(decoder, &tokens.ids, batch, &mut links)?;
            scored += results.iter().map(|w| w.scored).sum::<usize>();
            codec_s += traffic.iter().map(|t| t.encode_s + t.decode_s).sum::<f64>();
            transfer_s += traffic.iter().map(|t| t.transfer_s).sum::<f64>();
        }
        let elapsed = start.elapsed().as_secs_f64();
        separate_s += elapsed;
        processed_per_run = processed;
        let row = BenchRow {
            codec: spec.display_name(),
            path,
            tokens_per_s: processed as f64 / elapsed,
            scored_tokens_per_s: scored as f64 / elapsed,
            s_per_batch: elapsed / batches as f64,
            codec_share: codec_s / elapsed,
            transfer_share: transfer_s / elapsed,
            link_overhead_share: link_overhead(
                links.crossing_s - crossing_before,
                codec_s + transfer_s,
                elapsed,
            ),
            phase_shares: None,
        };
        println!(
            "{:<28} {:>7} {:>14.1} {:>12.1} {:>12.3} {:>9.1}% {:>9.1}% {:>9.1}%",
            row.codec,
            row.path,
            row.tokens_per_s,
            row.scored_tokens_per_s,
            row.s_per_batch,
            100.0 * row.codec_share,
            100.0 * row.transfer_share,
            100.0 * row.link_overhead_share
        );
        rows.push(row);
        if options.profile {
            profile::start();
            let start = Instant::now();
            for batch in &chunks[1..] {
                eval_batch(decoder, &tokens.ids, batch, &mut links)?;
            }
            let (elapsed, times) = (start.elapsed().as_secs_f64(), profile::stop());
            let mut shares: std::collections::BTreeMap<&'static str, f64> = Phase::ALL
                .iter()
                .map(|&p| (p.name(), times.get(p) / elapsed))
                .collect();
            shares.insert("other", (elapsed - times.total()).max(0.0) / elapsed);
            if let Some(row) = rows.last_mut() {
                row.phase_shares = Some(shares);
            }
        }
    }
    if options.profile {
        print_phase_shares(&rows);
    }
    if let Some(path) = options.json {
        std::fs::write(path, serde_json::to_string_pretty(&rows)?)
            .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", path.display()))?;
    }
    if options.sweep && specs.len() > 1 {
        let (base, _) = host.link_codecs(&specs[0], plan, &exp.base_dir)?;
        let mut base = Links::new(plan, base);
        let mut codec_links = specs[1..]
            .iter()
            .map(|s| {
                Ok(Links::new(
                    plan,
                    host.link_codecs(s, plan, &exp.base_dir)?.0,
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

/// The share of `elapsed` spent at the links (`crossing_s`, counted once the device had done
/// the work queued before each link) outside the codec and the copies (`counted_s`).
fn link_overhead(crossing_s: f64, counted_s: f64, elapsed: f64) -> f64 {
    (crossing_s - counted_s).max(0.0) / elapsed
}

/// The profiled runs' shares of time by phase, a row per codec.
fn print_phase_shares(rows: &[BenchRow]) {
    let names: Vec<&str> = Phase::ALL
        .iter()
        .map(|p| p.name())
        .chain(["other"])
        .collect();
    println!("\nshare of time by phase (profiled run: the device synchronized around each phase)");
    print!("{:<28}", "codec");
    for name in &names {
        print!(" {name:>10}");
    }
    println!();
    for row in rows {
        let Some(shares) = &row.phase_shares else {
            continue;
        };
        print!("{:<28}", row.codec);
        for name in &names {
            print!(
                " {:>9.1}%",
                100.0 * shares.get(name).copied().unwrap_or(0.0)
            );
        }
        println!();
    }
}

/// The CPU threads candle's and splitbench's kernels run on (rayon's pool: RAYON_NUM_THREADS
/// or one per CPU).
fn worker_threads() -> usize {
    rayon::current_num_threads()
}
