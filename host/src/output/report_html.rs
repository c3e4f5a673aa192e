//! `report.html`: a run on one self-contained page (its setup, the summary table, the noise
//! floor and the plots inline), to open offline or attach to a review.

use std::fmt::Write;
use std::path::PathBuf;

use super::columns::COLUMNS;
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
    out.push_str("<table><tr><th>codec</th>");
    for c in &COLUMNS {
        let _ = write!(out, "<th>{}</th>", escape(c.html_header));
    }
    out.push_str("</tr>");
    for r in rows {
        let class = if r.failure.is_some() {
            " class=\"failed\""
        } else {
            ""
        };
        let _ = write!(out, "<tr{class}><td>{}</td>", escape(&r.codec));
        for c in &COLUMNS {
            let cell = (c.cell)(r).unwrap_or_else(|| "–".into());
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
        if let Some(why) = &r.failure {
            let _ = write!(
                out,
                "<tr class=\"failed\"><td colspan=\"{}\">failed: {}</td></tr>",
                COLUMNS.len() + 1,
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
