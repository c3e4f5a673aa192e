//! `splitbench report --detail`: a block per codec laid out as `llama-perplexity
//! --kl-divergence` prints its statistics, then what that tool lacks.

use std::fmt::Write;

use super::record::CalibrationRecord;
use crate::plan::Link;
use crate::stats::{Divergence, ErrorByLayer, HurtSummary};
use crate::stats::{Estimate, LlamaStats, Percentile};

/// `Maximum`, `99.9%`, `Median`, ` 5.0%`, `Minimum`: the tool's row labels.
fn quantile_label(q: f64) -> String {
    match q {
        1.0 => "Maximum".into(),
        0.0 => "Minimum".into(),
        0.5 => "Median".into(),
        _ => format!("{:>4.1}%", 100.0 * q),
    }
}

fn quantile_rows(out: &mut String, name: &str, rows: &[Percentile], scale: f64, unit: &str) {
    for p in rows {
        let _ = if unit.is_empty() {
            writeln!(out, "{:<7} {name}: {:10.6}", quantile_label(p.q), p.value)
        } else {
            writeln!(
                out,
                "{:<7} {name}: {:6.3}{unit}",
                quantile_label(p.q),
                scale * p.value
            )
        };
    }
}

pub fn detail_block(codec: &str, s: &LlamaStats) -> String {
    let mut out = format!("====== {codec} ({} tokens) ======\n", s.tokens);
    let pm = |name: &str, e: Estimate| format!("{name:<30}: {:10.6} ± {:10.6}\n", e.value, e.pm);
    out += "====== Perplexity statistics ======\n";
    out += &pm("Mean PPL(Q)", s.ppl);
    out += &pm("Mean PPL(base)", s.ppl_base);
    let _ = writeln!(
        out,
        "Cor(ln(PPL(Q)), ln(PPL(base))): {:6.2}%",
        100.0 * s.correlation
    );
    out += &pm("Mean ln(PPL(Q)/PPL(base))", s.ln_ratio);
    out += &pm("Mean PPL(Q)/PPL(base)", s.ratio);
    out += &pm("Mean PPL(Q)-PPL(base)", s.difference);
    out += "\n====== KL divergence statistics ======\n";
    let _ = writeln!(out, "Mean    KLD: {:10.6} ± {:10.6}", s.kld.value, s.kld.pm);
    quantile_rows(&mut out, "KLD", &s.kld_percentiles, 1.0, "");
    out += "\n====== Token probability statistics ======\n";
    let _ = writeln!(
        out,
        "Mean    Δp: {:6.3} ± {:5.3} %",
        100.0 * s.dp.value,
        100.0 * s.dp.pm
    );
    quantile_rows(&mut out, "Δp", &s.dp_percentiles, 100.0, "%");
    let _ = writeln!(
        out,
        "RMS Δp    : {:6.3} ± {:5.3} %",
        100.0 * s.dp_rms.value,
        100.0 * s.dp_rms.pm
    );
    let _ = writeln!(
        out,
        "Same top p: {:6.3} ± {:5.3} %",
        100.0 * s.same_top.value,
        100.0 * s.same_top.pm
    );
    out += "\n====== Not in llama-perplexity ======\n";
    let _ = writeln!(
        out,
        "Mean    reverse KLD (codec ‖ base): {:10.6} ± {:10.6}",
        s.reverse_kld.value, s.reverse_kld.pm
    );
    quantile_rows(&mut out, "reverse KLD", &s.reverse_kld_percentiles, 1.0, "");
    let _ = writeln!(
        out,
        "Top-{} overlap: {:6.3} %",
        s.top_k,
        100.0 * s.top_k_overlap
    );
    out
}

/// Where the error grows: the hidden state's relative L2 error at each depth, marking the
/// depths where a link sends it.
pub fn layer_block(e: &ErrorByLayer, links: &[Link]) -> String {
    let mut out =
        "\n====== Hidden-state error by layer (‖h − h_base‖ / ‖h_base‖) ======\n".to_string();
    for (&depth, &err) in e.depth.iter().zip(&e.relative_l2) {
        let sent: Vec<&str> = links
            .iter()
            .filter(|l| l.depth() == depth)
            .map(|l| l.name.as_str())
            .collect();
        let _ = write!(out, "after {depth:>3} layers: {err:10.6}");
        if !sent.is_empty() {
            let _ = write!(out, "  ← {}", sent.join(", "));
        }
        out.push('\n');
    }
    out
}

/// Which tokens are hurt: KLD and NLL increase by position in the window and the input tokens
/// of highest mean KLD.
pub fn hurt_block(h: &HurtSummary) -> String {
    let mut out = "\n====== KLD and NLL increase by position in the window ======\n".to_string();
    out += "positions     tokens   mean KLD   mean ΔNLL  KLD share\n";
    for p in &h.by_position {
        let _ = writeln!(
            out,
            "{:>11} {:>8} {:10.6} {:+11.6} {:9.2}%",
            format!("{}-{}", p.first, p.last),
            p.tokens,
            p.kld_mean,
            p.dnll_mean,
            100.0 * p.kld_share
        );
    }
    let _ = writeln!(
        out,
        "\n====== Input tokens of highest mean KLD (seen ≥ {} times) ======",
        h.min_occurrences
    );
    out += "    id  text                tokens   mean KLD   mean ΔNLL  KLD share\n";
    for t in &h.top_tokens {
        let text = format!("{:?}", t.text);
        let _ = writeln!(
            out,
            "{:>6}  {:<18} {:>7} {:10.6} {:+11.6} {:9.2}%",
            t.id,
            text,
            t.tokens,
            t.kld_mean,
            t.dnll_mean,
            100.0 * t.kld_share
        );
    }
    out
}

/// Every block a codec's divergence has: llama-perplexity's (and the figures of every later
/// statistic, `Statistic::figures`), then the error by layer and the tokens hurt.
pub fn divergence_blocks(codec: &str, d: &Divergence, links: &[Link]) -> Option<String> {
    let mut out = detail_block(codec, d.llama.as_ref()?);
    for (name, e) in &d.figures {
        let _ = writeln!(out, "{name:<30}: {:10.6} ± {:10.6}", e.value, e.pm);
    }
    if let Some(e) = &d.error_by_layer {
        out += &layer_block(e, links);
    }
    if let Some(h) = &d.hurt {
        out += &hurt_block(h);
    }
    Some(out)
}

/// What a calibrated codec was fitted on, and its state per link (sent once, apart from the
/// per-token wire).
pub fn calibration_block(c: &CalibrationRecord) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "fitted on {} tokens of {} (text sha256 {}); state sent once per link, {} bytes in all:",
        c.text.tokens, c.text.source, c.text.text_sha256, c.state_bytes
    );
    for l in &c.links {
        let _ = writeln!(out, "  {:<32} {:>10} bytes", l.link, l.state_bytes);
    }
    out
}

/// The first prompt's continuation by `codec` beside the uncompressed model's, as token ids,
/// `|` before the first that differs.
pub fn continuation_block(codec: &str, ours: &[u32], baseline: &[u32]) -> String {
    let first = ours
        .iter()
        .zip(baseline)
        .position(|(a, b)| a != b)
        .unwrap_or(ours.len());
    let line = |ids: &[u32]| {
        let mut words: Vec<String> = ids.iter().map(u32::to_string).collect();
        if first < words.len() {
            words.insert(first, "|".into());
        }
        words.join(" ")
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{codec}: prompt 1, generated ids (`|` before the first that differs: position {first})"
    );
    let _ = writeln!(out, "  uncompressed: {}", line(baseline));
    let _ = writeln!(out, "  {codec:>12}: {}", line(ours));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_marks_the_first_difference() {
        let block = continuation_block("int4", &[5, 6, 9, 1], &[5, 6, 7, 1]);
        assert!(block.contains("uncompressed: 5 6 | 7 1"), "{block}");
        assert!(block.contains("int4: 5 6 | 9 1"), "{block}");
        assert!(block.contains("position 2"), "{block}");
        let same = continuation_block("identity", &[5, 6], &[5, 6]);
        assert!(same.contains("identity: 5 6\n"), "{same}");
    }

    #[test]
    fn labels_as_llama_perplexity_prints_them() {
        let labels: Vec<String> = [1.0, 0.999, 0.5, 0.05, 0.001, 0.0]
            .into_iter()
            .map(quantile_label)
            .collect();
        assert_eq!(
            labels,
            ["Maximum", "99.9%", "Median", " 5.0%", " 0.1%", "Minimum"]
        );
        let mut out = String::new();
        let rows = [Percentile {
            q: 0.99,
            value: 0.25,
        }];
        quantile_rows(&mut out, "KLD", &rows, 1.0, "");
        quantile_rows(&mut out, "Δp", &rows, 100.0, "%");
        assert_eq!(out, "99.0%   KLD:   0.250000\n99.0%   Δp: 25.000%\n");
    }
}
