//! The summary table printed at the end of a run.

use crate::record::CodecRecord;

#[derive(Debug, Clone)]
pub struct SummaryRow {
    pub codec: String,
    pub ppl: f64,
    pub bytes_per_token: f64,
    /// Raw hidden-state bytes over wire bytes.
    pub ratio: f64,
    pub is_none: bool,
}

impl SummaryRow {
    pub fn from_record(r: &CodecRecord) -> SummaryRow {
        let t = &r.traffic.total;
        SummaryRow {
            codec: r.codec.clone(),
            ppl: r.results.ppl,
            bytes_per_token: r.traffic.bytes_per_processed_token,
            ratio: t.raw_bytes as f64 / t.bytes.max(1) as f64,
            is_none: r.codec_spec.is_none(),
        }
    }
}

/// codec | PPL | ΔPPL vs none | B/token | ratio
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let baseline = rows.iter().find(|r| r.is_none).map(|r| r.ppl);
    let width = rows.iter().map(|r| r.codec.len()).max().unwrap_or(5).max(5);
    let mut out = format!(
        "{:<width$}  {:>10}  {:>12}  {:>10}  {:>7}\n",
        "codec", "PPL", "ΔPPL vs none", "B/token", "ratio"
    );
    for r in rows {
        let delta = baseline.map_or("-".to_string(), |b| format!("{:+.4}", r.ppl - b));
        out += &format!(
            "{:<width$}  {:>10.4}  {:>12}  {:>10.1}  {:>6.2}x\n",
            r.codec, r.ppl, delta, r.bytes_per_token, r.ratio
        );
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delta_against_none() {
        let rows = [
            SummaryRow {
                codec: "none".into(),
                ppl: 10.0,
                bytes_per_token: 9216.0,
                ratio: 1.0,
                is_none: true,
            },
            SummaryRow {
                codec: "int8".into(),
                ppl: 10.5,
                bytes_per_token: 2320.0,
                ratio: 3.97,
                is_none: false,
            },
        ];
        let t = summary_table(&rows);
        assert!(t.contains("+0.5000"), "{t}");
        assert!(t.contains("3.97x"), "{t}");
    }
}
