//! The summary's columns, listed once: the text table (`run`, `report`) and report.html read
//! this list, so the two show the same figures with the same digits.

use super::summary::SummaryRow;

/// One column after the codec's name.
pub struct Column {
    /// The text table's header.
    pub header: &'static str,
    /// report.html's header, where there is room for words.
    pub html_header: &'static str,
    /// The text table's width (cells are right-aligned).
    pub width: usize,
    /// The cell; None where the figure does not apply (printed `-`).
    pub cell: fn(&SummaryRow) -> Option<String>,
}

/// ΔPPL with its paired interval, or the baseline's own 0.
fn delta_ppl(r: &SummaryRow) -> Option<String> {
    match (r.delta_ppl, r.delta_ppl_ci95) {
        (Some(d), Some(ci)) => Some(format!("{d:+.4} [{:+.3}, {:+.3}]", ci.lo, ci.hi)),
        (Some(d), None) => Some(format!("{d:+.4} (baseline)")),
        _ => None,
    }
}

pub const COLUMNS: [Column; 11] = [
    Column {
        header: "bits",
        html_header: "bits/value",
        width: 6,
        cell: |r| Some(format!("{:.2}", r.bits_per_value)),
    },
    Column {
        header: "B/token",
        html_header: "B/token",
        width: 9,
        cell: |r| Some(format!("{:.1}", r.bytes_per_token)),
    },
    Column {
        header: "ratio",
        html_header: "ratio",
        width: 7,
        cell: |r| Some(format!("{:.2}x", r.ratio)),
    },
    Column {
        header: "PPL [95% CI]",
        html_header: "PPL [95% CI]",
        width: 26,
        cell: |r| {
            Some(format!(
                "{:.4} [{:.3}, {:.3}]",
                r.ppl, r.ppl_ci95.lo, r.ppl_ci95.hi
            ))
        },
    },
    Column {
        header: "word PPL",
        html_header: "word PPL",
        width: 10,
        // A random-weight model's word PPL runs to 1e13: exponent form past 1e5.
        cell: |r| {
            r.word_perplexity.map(|w| {
                if w < 1e5 {
                    format!("{w:.3}")
                } else {
                    format!("{w:.3e}")
                }
            })
        },
    },
    Column {
        header: "BPB",
        html_header: "bits/byte",
        width: 7,
        cell: |r| r.bits_per_byte.map(|b| format!("{b:.4}")),
    },
    Column {
        header: "ΔPPL [95% CI]",
        html_header: "ΔPPL [95% CI]",
        width: 28,
        cell: delta_ppl,
    },
    Column {
        header: "KLD",
        html_header: "mean KLD",
        width: 9,
        // Exponent form: the KLDs worth telling apart are often under 1e-4.
        cell: |r| {
            r.kld_mean.map(|k| {
                if k == 0.0 {
                    "0".into()
                } else {
                    format!("{k:.3e}")
                }
            })
        },
    },
    Column {
        header: "top-1",
        html_header: "top-1",
        width: 7,
        cell: |r| r.top1_agreement.map(|a| format!("{:.2}%", 100.0 * a)),
    },
    Column {
        header: "link ms/t",
        html_header: "link ms/token",
        width: 9,
        cell: |r| Some(format!("{:.4}", r.link_ms_per_token)),
    },
    Column {
        header: "gen ms/t",
        html_header: "ms/generated token",
        width: 9,
        cell: |r| r.generation_ms_per_token.map(|g| format!("{g:.3}")),
    },
];
