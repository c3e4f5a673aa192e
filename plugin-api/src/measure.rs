//! Measurements shared by the host and the conformance kit: LLM-like synthetic activations,
//! reconstruction error statistics, and reading JSON's `null` back as NaN/∞.

use rand::{rngs::StdRng, Rng, SeedableRng};

/// LLM-like hidden states, `[batch, tokens, hidden]`, flattened.
///
/// The bulk is Gaussian with per-channel scales of order 1. As in real residual streams
/// (measured on SmolLM2-135M: one channel reaches ~24,000 after the middle layers), a few
/// "massive activation" channels carry values in the hundreds on every token, and the first
/// token of each sequence (the attention sink) reaches ~24,000 in one of them.
pub fn synthetic_activations(shape: [usize; 3], seed: u64) -> Vec<f32> {
    let [batch, tokens, hidden] = shape;
    let mut rng = StdRng::seed_from_u64(seed);
    let channel_scale: Vec<f32> = (0..hidden)
        .map(|_| (0.5 * gaussian(&mut rng)).exp() * 0.8)
        .collect();
    let massive: Vec<usize> = if hidden >= 8 {
        vec![hidden * 13 / 100, hidden * 71 / 100, hidden * 97 / 100]
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(batch * tokens * hidden);
    for _ in 0..batch {
        for t in 0..tokens {
            let token_scale = (0.25 * gaussian(&mut rng)).exp();
            for (c, scale) in channel_scale.iter().enumerate() {
                let mut v = gaussian(&mut rng) * scale * token_scale;
                if let Some(rank) = massive.iter().position(|&m| m == c) {
                    let magnitude = match (rank, t) {
                        (0, 0) => 24_000.0,
                        (0, _) => 300.0 + 100.0 * rng.random::<f32>(),
                        (1, _) => -(150.0 + 50.0 * rng.random::<f32>()),
                        _ => 40.0 + 20.0 * rng.random::<f32>(),
                    };
                    v += magnitude;
                }
                out.push(v);
            }
        }
    }
    out
}

fn gaussian(rng: &mut StdRng) -> f32 {
    // Box-Muller; 1 - u keeps the log argument in (0, 1].
    let u: f32 = 1.0 - rng.random::<f32>();
    let v: f32 = rng.random::<f32>();
    (-2.0 * u.ln()).sqrt() * (2.0 * std::f32::consts::PI * v).cos()
}

/// JSON has no NaN or infinity: serde_json writes them as `null`. Reads `null` back as NaN.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// [`null_as_nan`] for each value of a list.
pub fn nulls_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    let values = <Vec<Option<f64>> as serde::Deserialize>::deserialize(d)?;
    Ok(values.into_iter().map(|v| v.unwrap_or(f64::NAN)).collect())
}

/// Reads `null` back as +∞ (an SNR of an exact reconstruction).
pub fn null_as_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

/// How far a reconstruction is from its reference.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ErrorStats {
    /// ||x - y|| / ||x||
    #[serde(deserialize_with = "null_as_nan")]
    pub rel_l2: f64,
    /// 10 log10(||x||² / ||x - y||²); infinite for an exact reconstruction (`null` in JSON).
    #[serde(deserialize_with = "null_as_infinity")]
    pub snr_db: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub max_abs: f64,
}

impl ErrorStats {
    pub fn between(reference: &[f32], decoded: &[f32]) -> ErrorStats {
        let mut signal = 0f64;
        let mut noise = 0f64;
        let mut max_abs = 0f64;
        for (&x, &y) in reference.iter().zip(decoded) {
            let d = f64::from(x) - f64::from(y);
            signal += f64::from(x) * f64::from(x);
            noise += d * d;
            max_abs = max_abs.max(d.abs());
        }
        ErrorStats {
            rel_l2: if signal > 0.0 {
                (noise / signal).sqrt()
            } else {
                noise.sqrt()
            },
            snr_db: if noise > 0.0 {
                10.0 * (signal / noise).log10()
            } else {
                f64::INFINITY
            },
            max_abs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_stats_by_hand() {
        // x = (3, 4), y = (3, 3): ||x|| = 5, ||x - y|| = 1.
        let s = ErrorStats::between(&[3.0, 4.0], &[3.0, 3.0]);
        assert!((s.rel_l2 - 0.2).abs() < 1e-12);
        assert!((s.snr_db - 10.0 * 25f64.log10()).abs() < 1e-9);
        assert_eq!(s.max_abs, 1.0);
        assert_eq!(ErrorStats::between(&[1.0], &[1.0]).snr_db, f64::INFINITY);
    }

    #[test]
    fn synthetic_has_massive_activations() {
        let x = synthetic_activations([1, 8, 576], 1);
        let max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 20_000.0, "max {max}");
        let mut sorted: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        sorted.sort_by(f32::total_cmp);
        let median = sorted[sorted.len() / 2];
        assert!(median > 0.2 && median < 2.0, "median {median}");
        assert_eq!(x, synthetic_activations([1, 8, 576], 1));
    }
}
