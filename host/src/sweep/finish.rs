//! A codec's record once its sweep ends: totals into statistics, traffic per link, the
//! wire-time model, and the batch-1 generation estimate.

use anyhow::{Context, Result};
use candle_core::Tensor;

use super::codec_run::{CodecRun, Totals};
use super::inputs::Sweep;
use crate::config::{CodecSpec, LinkModel};
use crate::eval::{perplexity, WindowResult};
use crate::link::{CodecHost, LinkTraffic};
use crate::output::record::{
    write_new_json, CalibrationRecord, CodecRecord, LinkRecord, LinkTime, Results, TextPerplexity,
    TrafficRecord,
};
use crate::plan::Link;
use crate::stats::{divergence, PplStats};

/// Wire bytes and encode+decode seconds of one token's hidden vector at each link, for the
/// batch-1 generation estimate (median of repeated runs on a synthetic activation).
pub fn one_token_costs(
    sweep: &Sweep<'_>,
    host: &mut CodecHost,
    spec: &CodecSpec,
) -> Result<Vec<(u64, f64)>> {
    let decoder = &sweep.model.decoder;
    let hidden = decoder.hidden_size();
    let values = splitbench_plugin_api::measure::synthetic_activations([1, 1, hidden], 1);
    let (mut codecs, _) = host.link_codecs(spec, &sweep.plan, &sweep.exp.base_dir)?;
    let mut out = Vec::with_capacity(codecs.len());
    for (codec, link) in codecs.iter_mut().zip(&sweep.plan.links) {
        // On the device of the node that sends it.
        let device = decoder.depth_device(link.depth());
        let h = Tensor::from_slice(&values, (1, 1, hidden), device)?.to_dtype(decoder.dtype())?;
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..21 {
            let mut t = LinkTraffic::default();
            codec.transmit(&h, link, &mut t)?;
            bytes = t.bytes;
            times.push(t.encode_s + t.decode_s);
        }
        times.sort_by(f64::total_cmp);
        out.push((bytes, times[times.len() / 2]));
    }
    Ok(out)
}

/// Where each link's codec ran: its label and path (`none`, `host`, `device`).
pub struct LinkCodecs<'a> {
    pub labels: &'a [String],
    pub paths: &'a [&'a str],
}

/// PPL, its error and interval, the NLL and the windows of a codec's totals.
pub fn results(totals: &Totals) -> Results {
    Results {
        ppl: perplexity(totals.nll, totals.scored),
        ppl_stats: PplStats::of(totals.nll, totals.nll_sq, totals.scored, &totals.windows),
        total_nll: totals.nll,
        scored_tokens: totals.scored,
        windows: totals.windows.clone(),
        text: TextPerplexity::of(totals.nll, totals.text),
    }
}

/// Bytes per link and in all of a codec's totals.
pub fn traffic(
    totals: &Totals,
    links: &[Link],
    codecs: &LinkCodecs<'_>,
    one_token: Option<&[(u64, f64)]>,
) -> TrafficRecord {
    let mut total = LinkTraffic::default();
    totals.traffic.iter().for_each(|t| total.add(t));
    let scored = totals.scored.max(1) as f64;
    TrafficRecord {
        bytes_per_processed_token: total.bytes as f64 / totals.model_tokens.max(1) as f64,
        bytes_per_scored_token: total.bytes as f64 / scored,
        total,
        model_tokens_processed: totals.model_tokens,
        tokens_scored: totals.scored,
        links: links
            .iter()
            .zip(&totals.traffic)
            .zip(codecs.labels.iter().zip(codecs.paths))
            .enumerate()
            .map(|(k, ((link, t), (codec, path)))| LinkRecord {
                name: link.name.clone(),
                codec: codec.clone(),
                path: path.to_string(),
                bytes_per_processed_token: t.bytes as f64 / t.tokens_processed.max(1) as f64,
                bytes_per_scored_token: t.bytes as f64 / scored,
                bytes_per_element: t.bytes as f64 / t.elements.max(1) as f64,
                ratio: t.raw_bytes as f64 / t.bytes.max(1) as f64,
                reconstruction: t.reconstruction(),
                encode_gbps: t.raw_bytes as f64 / t.encode_s.max(1e-12) / 1e9,
                decode_gbps: t.raw_bytes as f64 / t.decode_s.max(1e-12) / 1e9,
                one_token_bytes: one_token.map(|c| c[k].0),
                one_token_codec_ms: one_token.map(|c| c[k].1 * 1e3),
                traffic: t.clone(),
            })
            .collect(),
    }
}

/// Time on the wire under `link_model`, and per generated token at batch 1.
pub fn link_time(
    totals: &Totals,
    link_model: &LinkModel,
    one_token: Option<&[(u64, f64)]>,
) -> LinkTime {
    let bits_per_ms = link_model.bandwidth_mbps * 1e3;
    let wire_ms: f64 = totals
        .traffic
        .iter()
        .map(|t| {
            t.bytes as f64 * 8.0 / bits_per_ms + t.transmissions as f64 * link_model.latency_ms
        })
        .sum();
    let generation_ms = one_token.map(|costs| {
        costs
            .iter()
            .map(|&(bytes, codec_s)| {
                link_model.latency_ms + bytes as f64 * 8.0 / bits_per_ms + codec_s * 1e3
            })
            .sum::<f64>()
    });
    LinkTime {
        model: link_model.clone(),
        wire_ms_per_processed_token: wire_ms / totals.model_tokens.max(1) as f64,
        generation_ms_per_token: generation_ms,
    }
}

pub fn finish(
    sweep: &Sweep<'_>,
    run: CodecRun<'_>,
    base_windows: &[WindowResult],
    link_model: &LinkModel,
    one_token: Option<&[(u64, f64)]>,
    incomplete: bool,
) -> Result<CodecRecord> {
    let totals = &run.totals;
    let is_baseline = run.index == 0;
    let codecs = LinkCodecs {
        labels: &run.link_labels,
        paths: &run.link_paths,
    };
    let record = CodecRecord {
        generation: None,
        run_id: sweep.run_dir.id().to_string(),
        splitbench_version: env!("CARGO_PKG_VERSION").into(),
        started: run.started.to_rfc3339(),
        finished: chrono::Utc::now().to_rfc3339(),
        duration_s: run.clock.elapsed().as_secs_f64(),
        device: sweep.model.decoder.device_names(),
        codec: run.label.clone(),
        codec_spec: run.spec.clone(),
        failure: run.failure.clone(),
        incomplete,
        shard: sweep.shard,
        config: sweep.exp.experiment.clone(),
        model: sweep.model.info.clone(),
        dataset: sweep.tokens.info.clone(),
        plan: sweep.plan.clone(),
        results: results(totals),
        divergence: (!is_baseline && run.failure.is_none())
            .then(|| divergence(&totals.acc, base_windows, &totals.windows)),
        traffic: traffic(totals, &sweep.plan.links, &codecs, one_token),
        link_time: link_time(totals, link_model, one_token),
        plugins: run.plugins.clone(),
        calibration: CalibrationRecord::new(sweep.calibration.as_ref(), &run.calibrated),
    };
    if incomplete {
        let path = sweep.run_dir.partial_record(run.index, &run.label);
        std::fs::write(&path, serde_json::to_string_pretty(&record)?)
            .with_context(|| format!("writing `{}`", path.display()))?;
    } else {
        write_new_json(&sweep.run_dir.record(run.index, &run.label), &record)?;
    }
    Ok(record)
}
