//! The summary table printed at the end of a run, and `summary.json`'s rows.

use serde::{Deserialize, Serialize};

use anyhow::Context;

use super::columns::COLUMNS;
use super::plots::{bits_per_value, read_curve, write_all, Curve, Run};
use super::record::CodecRecord;
use super::report_html::report_html;
use super::run_dir::RunDir;
use crate::stats::Interval;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SummaryRow {
    pub codec: String,
    /// Wire bits per hidden-state value, over every link.
    #[serde(default)]
    pub bits_per_value: f64,
    pub bytes_per_token: f64,
    /// Raw hidden-state bytes over wire bytes.
    pub ratio: f64,
    pub ppl: f64,
    pub ppl_ci95: Interval,
    pub ppl_stderr: f64,
    /// Bits per byte of the scored text (tokenizer-free, comparable across models).
    #[serde(default)]
    pub bits_per_byte: Option<f64>,
    #[serde(default)]
    pub word_perplexity: Option<f64>,
    pub delta_ppl: Option<f64>,
    pub delta_ppl_ci95: Option<Interval>,
    pub kld_mean: Option<f64>,
    pub top1_agreement: Option<f64>,
    pub link_ms_per_token: f64,
    pub generation_ms_per_token: Option<f64>,
    pub failure: Option<String>,
}

impl SummaryRow {
    pub fn from_record(r: &CodecRecord) -> SummaryRow {
        let t = &r.traffic.total;
        let d = r.divergence.as_ref();
        SummaryRow {
            codec: r.codec.clone(),
            bits_per_value: bits_per_value(r),
            bytes_per_token: r.traffic.bytes_per_processed_token,
            ratio: t.raw_bytes as f64 / t.bytes.max(1) as f64,
            ppl: r.results.ppl,
            ppl_ci95: r.results.ppl_stats.ci95,
            ppl_stderr: r.results.ppl_stats.stderr,
            bits_per_byte: r.results.text.map(|t| t.bits_per_byte),
            word_perplexity: r.results.text.map(|t| t.word_perplexity),
            delta_ppl: d
                .map(|d| d.paired.delta_ppl)
                .or(Some(0.0).filter(|_| r.codec_spec.is_none())),
            delta_ppl_ci95: d.map(|d| d.paired.delta_ppl_ci95),
            kld_mean: d.map(|d| d.kld.mean),
            top1_agreement: d.map(|d| d.top1_agreement),
            link_ms_per_token: r.link_time.wire_ms_per_processed_token,
            generation_ms_per_token: r.link_time.generation_ms_per_token,
            failure: r.failure.clone(),
        }
    }
}

/// The codec's name, then `COLUMNS`, one row per codec; failed codecs marked.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let width = rows
        .iter()
        .map(|r| r.codec.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let line = |codec: &str, cells: Vec<(usize, String)>| {
        let mut out = format!("{codec:<width$}");
        for (w, cell) in cells {
            out += &format!("  {cell:>w$}");
        }
        out
    };
    let header = COLUMNS.iter().map(|c| (c.width, c.header.to_string()));
    let mut out = line("codec", header.collect()) + "\n";
    for r in rows {
        let cells = COLUMNS
            .iter()
            .map(|c| (c.width, (c.cell)(r).unwrap_or_else(|| "-".into())));
        let failed = if r.failure.is_some() { "  FAILED" } else { "" };
        out += &(line(&r.codec, cells.collect()) + failed + "\n");
    }
    out.trim_end().to_string()
}

/// The records of a finished run, in codec order.
pub fn load_records(dir: &RunDir) -> anyhow::Result<Vec<CodecRecord>> {
    let paths = dir
        .finished_records()
        .with_context(|| format!("cannot read run folder `{}`", dir.path().display()))?;
    if paths.is_empty() {
        anyhow::bail!(
            "`{}` holds no codec records (NN-<codec>.json); give the folder a run wrote, e.g. runs/<run id>",
            dir.path().display()
        );
    }
    paths
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading `{}`", p.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not a splitbench record", p.display()))
        })
        .collect()
}

/// Prints the summary table and draws the plots of a run folder.
pub fn render(dir: &RunDir, records: &[CodecRecord]) -> anyhow::Result<Vec<SummaryRow>> {
    let rows: Vec<SummaryRow> = records.iter().map(SummaryRow::from_record).collect();
    println!("{}", summary_table(&rows));
    let floor = noise_floor(records);
    for line in &floor {
        println!("{line}");
    }
    let curves: Vec<Curve> = records
        .iter()
        .enumerate()
        .map(|(i, r)| read_curve(&dir.batches(i, &r.codec)))
        .collect();
    let files = write_all(
        dir,
        &Run {
            records,
            curves: &curves,
        },
    )?;
    let page = dir.report_html();
    let html = report_html(records, &rows, &floor, &files)?;
    std::fs::write(&page, html).with_context(|| format!("writing `{}`", page.display()))?;
    eprintln!(
        "splitbench: plots {}; all of it in {}",
        files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        page.display()
    );
    Ok(rows)
}

fn is_plugin_codec(r: &CodecRecord, plugin: &str, codec: &str) -> bool {
    let s = &r.codec_spec;
    s.plugin.as_deref() == Some(plugin)
        && s.codec.as_deref() == Some(codec)
        && s.params.is_empty()
        && s.links.is_empty()
        && r.failure.is_none()
}

/// What differences this run can resolve: `identity` (the wire is the tensor's bytes) must
/// give exactly 0 KLD and 100% top-1, or the run is not deterministic and every difference
/// is suspect; fp16 sets the floor of sending the hidden state at half precision. Codecs at
/// or under that floor are named.
pub fn noise_floor(records: &[CodecRecord]) -> Vec<String> {
    let mut lines = Vec::new();
    let divergence = |r: &CodecRecord| {
        r.divergence
            .as_ref()
            .map(|d| (d.kld.mean, d.top1_agreement))
    };
    match records.iter().find(|r| is_plugin_codec(r, "identity", "identity")) {
        Some(r) => match divergence(r) {
            Some((kld, top1)) if kld == 0.0 && top1 == 1.0 => lines.push(
                "noise floor: identity gives KLD 0 and top-1 100%, so every non-zero KLD here is the \
                 codec's own"
                    .to_string(),
            ),
            Some((kld, top1)) => lines.push(format!(
                "noise floor: WARNING identity gives KLD {kld:.3e} and top-1 {:.3}%, not exactly 0 and \
                 100%: the forward pass is not deterministic, so small differences are noise",
                100.0 * top1
            )),
            None => {}
        },
        None => lines.push(
            "noise floor: no `identity` codec in this run; add it to check that the comparison is \
             exact (KLD 0)"
                .to_string(),
        ),
    }
    let fp16 = records
        .iter()
        .find(|r| is_plugin_codec(r, "cast", "fp16"))
        .and_then(|r| divergence(r).map(|(kld, _)| kld));
    match fp16 {
        Some(floor) => {
            let under: Vec<&str> = records
                .iter()
                .filter(|r| !is_plugin_codec(r, "cast", "fp16") && r.failure.is_none())
                .filter(|r| divergence(r).is_some_and(|(kld, _)| kld <= floor))
                .map(|r| r.codec.as_str())
                .collect();
            lines.push(format!(
                "noise floor: fp16's mean KLD {floor:.3e} is the cost of half precision on the wire; \
                 at or under it: {}",
                if under.is_empty() {
                    "no other codec".to_string()
                } else {
                    under.join(", ")
                }
            ));
        }
        None => lines.push(
            "noise floor: no `cast/fp16` codec in this run; add it to see which codecs are as good \
             as half precision"
                .to_string(),
        ),
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(codec: &str, ppl: f64, delta: Option<f64>) -> SummaryRow {
        SummaryRow {
            codec: codec.into(),
            bits_per_value: 16.0,
            bytes_per_token: 9216.0,
            ratio: 1.0,
            ppl,
            ppl_ci95: Interval {
                lo: ppl - 1.0,
                hi: ppl + 1.0,
            },
            ppl_stderr: 0.1,
            bits_per_byte: Some(1.25),
            word_perplexity: Some(40.0),
            delta_ppl: delta,
            delta_ppl_ci95: delta.filter(|&d| d != 0.0).map(|d| Interval {
                lo: d - 0.1,
                hi: d + 0.1,
            }),
            kld_mean: delta.filter(|&d| d != 0.0).map(|_| 0.0123),
            top1_agreement: delta.filter(|&d| d != 0.0).map(|_| 0.987),
            link_ms_per_token: 0.05,
            generation_ms_per_token: Some(20.0),
            failure: None,
        }
    }

    #[test]
    fn columns() {
        let t = summary_table(&[row("none", 10.0, Some(0.0)), row("int8", 10.5, Some(0.5))]);
        assert!(t.contains("+0.5000 [+0.400, +0.600]"), "{t}");
        assert!(t.contains("+0.0000 (baseline)"), "{t}");
        assert!(t.contains("98.70%") && t.contains("1.230e-2"), "{t}");
        assert!(t.contains("word PPL") && t.contains("40.000"), "{t}");
        assert!(t.contains("BPB") && t.contains("1.2500"), "{t}");
    }
}
