//! `report.html`: a run on one self-contained page (its setup, the summary table, the noise
//! floor and the plots inline), to open offline or attach to a review.

use std::fmt::Write;
use std::path::PathBuf;

use super::detail::divergence_blocks;
use super::record::CodecRecord;
use super::summary::SummaryRow;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em auto;max-width:1320px;color:#222}\
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}\
table{border-collapse:collapse;font-size:13px}\
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right;white-space:nowrap}\
td:first-child,th:first-child{text-align:left}th{background:#f3f3f3}\
tr.failed td{color:#b00}dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}\
dt{font-weight:bold}dd{margin:0}svg{max-width:100%;height:auto}p.floor{margin:4px 0}";

/// What the run evaluated, from its first record.
fn setup(out: &mut String, r: &CodecRecord) {
    let model = r
        .model
        .id
        .clone()
        .or_else(|| r.model.path.as_ref().map(|p| p.display().to_string()))
        .unwrap_or_default();
    let e = &r.config.eval;
    let links: Vec<&str> = r.plan.links.iter().map(|l| l.name.as_str()).collect();
    let rows = [
        ("run", r.run_id.clone()),
        ("splitbench", r.splitbench_version.clone()),
        ("started", r.started.clone()),
        (
            "model",
            format!(
                "{model} ({:?}, {} layers, hidden {}, {}, weights {})",
                r.model.family, r.model.layers, r.model.hidden_size, r.model.dtype, r.model.weights
            ),
        ),
        ("device", r.device.clone()),
        (
            "data",
            format!(
                "{} ({} tokens evaluated of {}; text sha256 {})",
                r.dataset.source, r.dataset.tokens, r.dataset.text_tokens, r.dataset.text_sha256
            ),
        ),
        (
            "protocol",
            format!(
                "windows of {}, stride {}, batch {}; {} tokens scored",
                e.max_length, e.stride, e.batch_size, r.results.scored_tokens
            ),
        ),
        (
            "plan",
            format!("{} nodes; links {}", r.plan.nodes, links.join(", ")),
        ),
    ];
    out.push_str("<dl>");
    for (name, value) in rows {
        let _ = write!(out, "<dt>{name}</dt><dd>{}</dd>", escape(&value));
    }
    out.push_str("</dl>");
}

fn summary(out: &mut String, rows: &[SummaryRow]) {
    let opt = |v: Option<f64>, f: &dyn Fn(f64) -> String| v.map_or_else(|| "–".into(), f);
    out.push_str(
        "<table><tr><th>codec</th><th>bits/value</th><th>B/token</th><th>ratio</th>\
         <th>PPL [95% CI]</th><th>word PPL</th><th>bits/byte</th><th>ΔPPL [95% CI]</th><th>mean KLD</th><th>top-1</th>\
         <th>link ms/token</th><th>ms/generated token</th></tr>",
    );
    for r in rows {
        let delta = match (r.delta_ppl, r.delta_ppl_ci95) {
            (Some(d), Some(ci)) => format!("{d:+.4} [{:+.3}, {:+.3}]", ci.lo, ci.hi),
            (Some(d), None) => format!("{d:+.4} (baseline)"),
            _ => "–".into(),
        };
        let class = if r.failure.is_some() {
            " class=\"failed\""
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr{class}><td>{}</td><td>{:.2}</td><td>{:.1}</td><td>{:.2}×</td>\
             <td>{:.4} [{:.3}, {:.3}]</td><td>{}</td><td>{}</td><td>{delta}</td><td>{}</td><td>{}</td><td>{:.4}</td>\
             <td>{}</td></tr>",
            escape(&r.codec),
            r.bits_per_value,
            r.bytes_per_token,
            r.ratio,
            r.ppl,
            r.ppl_ci95.lo,
            r.ppl_ci95.hi,
            opt(r.word_perplexity, &|w| format!("{w:.3}")),
            opt(r.bits_per_byte, &|b| format!("{b:.4}")),
            opt(r.kld_mean, &|k| if k == 0.0 {
                "0".into()
            } else {
                format!("{k:.3e}")
            }),
            opt(r.top1_agreement, &|a| format!("{:.2}%", 100.0 * a)),
            r.link_ms_per_token,
            opt(r.generation_ms_per_token, &|g| format!("{g:.3}")),
        );
        if let Some(why) = &r.failure {
            let _ = write!(
                out,
                "<tr class=\"failed\"><td colspan=\"12\">failed: {}</td></tr>",
                escape(why)
            );
        }
    }
    out.push_str("</table>");
}

/// The page: setup, summary, noise floor and the SVG plots at `plots`, inlined.
pub fn report_html(
    records: &[CodecRecord],
    rows: &[SummaryRow],
    floor: &[String],
    plots: &[PathBuf],
) -> std::io::Result<String> {
    let title = records.first().map_or_else(
        || "splitbench run".to_string(),
        |r| format!("splitbench run {}", r.run_id),
    );
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\
         <style>{STYLE}</style></head><body><h1>{}</h1>",
        escape(&title),
        escape(&title)
    );
    if let Some(first) = records.first() {
        setup(&mut out, first);
    }
    out.push_str("<h2>Summary</h2>");
    summary(&mut out, rows);
    for line in floor {
        let _ = write!(out, "<p class=\"floor\">{}</p>", escape(line));
    }
    let details: Vec<(&str, String)> = records
        .iter()
        .filter_map(|r| {
            let blocks = divergence_blocks(&r.codec, r.divergence.as_ref()?, &r.plan.links)?;
            Some((r.codec.as_str(), blocks))
        })
        .collect();
    if !details.is_empty() {
        out.push_str(
            "<h2>Per codec: llama-perplexity's statistics, the error by layer, the tokens hurt</h2>",
        );
        for (codec, block) in details {
            let _ = write!(
                out,
                "<details><summary>{}</summary><pre>{}</pre></details>",
                escape(codec),
                escape(&block)
            );
        }
    }
    out.push_str("<h2>Plots</h2>");
    for path in plots {
        let svg = std::fs::read_to_string(path)?;
        let start = svg.find("<svg").unwrap_or(0);
        let _ = write!(out, "<figure>{}</figure>", &svg[start..]);
    }
    out.push_str("</body></html>\n");
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(
            escape("<int4 & \"b64\">"),
            "&lt;int4 &amp; &quot;b64&quot;&gt;"
        );
    }
}
