//! What crossed a link: bytes, transmissions, codec time and reconstruction error.

use rayon::prelude::*;
use serde::Serialize;
use splitbench_plugin_api::measure::ErrorStats;

/// Counters of one link over a run.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct LinkTraffic {
    pub bytes: u64,
    pub raw_bytes: u64,
    pub transmissions: u64,
    pub tokens_processed: u64,
    pub elements: u64,
    pub encode_s: f64,
    pub decode_s: f64,
    pub transfer_s: f64,
    /// NaN/Inf values in decoded hidden states.
    pub nonfinite_decoded: u64,
    /// Σx² and Σ(x − x̂)² over every element sent, and the largest |x − x̂|: the
    /// reconstruction error of the decoded hidden states.
    pub signal_sq: f64,
    pub noise_sq: f64,
    pub max_abs_error: f64,
    /// `--verify-wire` on the device path: wires checked, wires that differ from the host
    /// path's, and the largest difference between device and host decodes of one wire.
    #[serde(default)]
    pub wire_checks: u64,
    #[serde(default)]
    pub wire_mismatches: u64,
    #[serde(default)]
    pub verify_max_decode_diff: f64,
}

impl LinkTraffic {
    pub fn add(&mut self, other: &LinkTraffic) {
        self.bytes += other.bytes;
        self.raw_bytes += other.raw_bytes;
        self.transmissions += other.transmissions;
        self.tokens_processed += other.tokens_processed;
        self.elements += other.elements;
        self.encode_s += other.encode_s;
        self.decode_s += other.decode_s;
        self.transfer_s += other.transfer_s;
        self.nonfinite_decoded += other.nonfinite_decoded;
        self.signal_sq += other.signal_sq;
        self.noise_sq += other.noise_sq;
        self.max_abs_error = self.max_abs_error.max(other.max_abs_error);
        self.wire_checks += other.wire_checks;
        self.wire_mismatches += other.wire_mismatches;
        self.verify_max_decode_diff = self
            .verify_max_decode_diff
            .max(other.verify_max_decode_diff);
    }

    /// Relative L2 error, SNR (dB) and max abs error of everything decoded at this link.
    pub fn reconstruction(&self) -> ErrorStats {
        ErrorStats {
            rel_l2: if self.signal_sq > 0.0 {
                (self.noise_sq / self.signal_sq).sqrt()
            } else {
                0.0
            },
            snr_db: if self.noise_sq > 0.0 {
                10.0 * (self.signal_sq / self.noise_sq).log10()
            } else {
                f64::INFINITY
            },
            max_abs: self.max_abs_error,
        }
    }
}

/// Adds the squared signal and error of one decoded hidden state to `traffic` (in parallel:
/// on the host path this runs on every link of every batch).
pub(super) fn add_error(
    traffic: &mut LinkTraffic,
    sent: &[u8],
    decoded: &[u8],
    dtype: splitbench_plugin_api::DType,
) {
    let x = splitbench_plugin_api::convert::bytes_to_f32(sent, dtype);
    let y = splitbench_plugin_api::convert::bytes_to_f32(decoded, dtype);
    let chunk = splitbench_plugin_api::convert::PARALLEL_CHUNK;
    // Per-chunk partial sums, collected in order and added serially: the same total whatever
    // the thread count, so reruns and resumed runs report identical errors.
    let partials: Vec<(f64, f64, f64)> = x
        .par_chunks(chunk)
        .zip(y.par_chunks(chunk))
        .map(|(x, y)| {
            let mut acc = (0f64, 0f64, 0f64);
            for (&a, &b) in x.iter().zip(y) {
                let (a, b) = (f64::from(a), f64::from(b));
                let d = a - b;
                if d.is_finite() {
                    acc.0 += a * a;
                    acc.1 += d * d;
                    acc.2 = acc.2.max(d.abs());
                }
            }
            acc
        })
        .collect();
    let (signal, noise, max_abs) = partials.iter().fold((0f64, 0f64, 0f64), |a, b| {
        (a.0 + b.0, a.1 + b.1, a.2.max(b.2))
    });
    traffic.signal_sq += signal;
    traffic.noise_sq += noise;
    traffic.max_abs_error = traffic.max_abs_error.max(max_abs);
}
