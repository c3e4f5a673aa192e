//! `pca`: each token minus the calibration mean, projected on the top `rank` principal
//! directions of the calibration samples (eigenvectors of their covariance, computed in f64
//! with faer); the coefficients travel, and optionally the reconstruction error quantized on
//! top. Decoding is mean + coefficients · basisᵀ (+ the residual), in the input's dtype.
//!
//! State: header (`SBPC`), u32 rank r, the mean (hidden f32), the basis (r rows of hidden
//! f32, each unit length, largest component positive).
//! Wire: the coefficients, `coeff = "f16"`: r f16 per token (saturated at ±65504);
//! `"int8"`/`"int4"`: `quant`'s blockwise format with one block per token (f16 absmax scale,
//! codes bit-packed). Then with `residual = "int8"`/`"int4"` the reconstruction error in the
//! same format over hidden. Bytes per token: 2r (f16), 2 + r (int8), 2 + r/2 (int4); the
//! residual adds 2 + hidden (int8) or 2 + hidden/2 (int4).

use faer::{linalg::matmul::matmul, Accum, Mat, MatRef, Par, Side};
use serde::{Deserialize, Serialize};
use splitbench_plugin_api::{
    convert::{f32_to_bytes, round_to},
    quant::{blocks_wire_len, decode_blocks, encode_blocks, finite_values},
    wire::{self, WireReader},
    Codec, CodecError, DType, TensorView,
};

use crate::state::{self, StateReader};
use crate::Quantized;

pub const NAME: &str = "pca";
const MAGIC: &[u8; 4] = b"SBPC";
/// Variance kept when neither `rank` nor `energy` is given.
const DEFAULT_ENERGY: f64 = 0.99;
/// Samples per covariance update: bounds the f64 copy.
const CHUNK_ROWS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PcaParams {
    pub rank: Option<usize>,
    pub energy: Option<f64>,
    pub coeff: Coefficients,
    pub residual: Residual,
}

/// How the coefficients travel.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Coefficients {
    #[default]
    F16,
    Int8,
    Int4,
}

impl TryFrom<String> for Coefficients {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        crate::choice(
            "coeff",
            &s,
            &[
                ("f16", Self::F16),
                ("int8", Self::Int8),
                ("int4", Self::Int4),
            ],
        )
    }
}

/// Whether and how the reconstruction error travels.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Residual {
    #[default]
    None,
    Int8,
    Int4,
}

impl TryFrom<String> for Residual {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        crate::choice(
            "residual",
            &s,
            &[
                ("none", Self::None),
                ("int8", Self::Int8),
                ("int4", Self::Int4),
            ],
        )
    }
}

pub const DOCS: &[(&str, &str)] = &[
    ("rank", "principal directions kept, 1..=hidden"),
    (
        "energy",
        "or: the fraction of the calibration variance kept, in (0, 1] (0.99 when neither is given)",
    ),
    (
        "coeff",
        "\"f16\", \"int8\" or \"int4\" (per-token absmax scale)",
    ),
    (
        "residual",
        "\"none\", \"int8\" or \"int4\": the reconstruction error on top",
    ),
];

pub fn check(p: &PcaParams) -> Result<(), CodecError> {
    match (p.rank, p.energy) {
        (Some(_), Some(_)) => Err(CodecError::new(
            "give `rank` (an integer) or `energy` (in (0, 1]), not both",
        )),
        (Some(0), None) => Err(CodecError::new("`rank` must be in 1..=hidden, got 0")),
        (None, Some(e)) if !(e > 0.0 && e <= 1.0) => Err(CodecError::new(format!(
            "`energy` must be in (0, 1], got {e}"
        ))),
        _ => Ok(()),
    }
}

/// The rank to keep: `rank`, or the fewest directions whose eigenvalues (descending) hold
/// `energy` of their sum.
fn chosen_rank(p: &PcaParams, eigenvalues: &[f64]) -> Result<usize, CodecError> {
    let hidden = eigenvalues.len();
    if let Some(r) = p.rank {
        if r > hidden {
            return Err(CodecError::new(format!(
                "`rank` must be in 1..={hidden} (the hidden size), got {r}"
            )));
        }
        return Ok(r);
    }
    let energy = p.energy.unwrap_or(DEFAULT_ENERGY);
    let total: f64 = eigenvalues.iter().sum();
    let mut kept = 0.0;
    for (i, v) in eigenvalues.iter().enumerate() {
        kept += v;
        if kept >= energy * total {
            return Ok(i + 1);
        }
    }
    Ok(hidden)
}

pub fn calibrate(p: &PcaParams, samples: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
    let (rows, hidden) = state::sample_dims(samples.shape(), NAME)?;
    let values = finite_values(samples)?;
    let mut mean = vec![0f64; hidden];
    for row in values.chunks(hidden) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += f64::from(v));
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut covariance = Mat::<f64>::zeros(hidden, hidden);
    for chunk in values.chunks(CHUNK_ROWS * hidden) {
        let centered = Mat::from_fn(chunk.len() / hidden, hidden, |r, c| {
            f64::from(chunk[r * hidden + c]) - mean[c]
        });
        matmul(
            covariance.as_mut(),
            Accum::Add,
            centered.transpose(),
            centered.as_ref(),
            1.0 / rows as f64,
            Par::rayon(0),
        );
    }
    let eigen = covariance
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| CodecError::new(format!("`{NAME}`: the eigendecomposition failed: {e:?}")))?;
    // faer sorts eigenvalues ascending: the principal directions are the last columns.
    let eigenvalues: Vec<f64> = (0..hidden).rev().map(|i| eigen.S()[i].max(0.0)).collect();
    let rank = chosen_rank(p, &eigenvalues)?;
    let mut out = state::header(MAGIC, hidden);
    state::put_u32(&mut out, rank);
    state::put_f32s(&mut out, mean.iter().map(|&m| m as f32));
    for k in 0..rank {
        let direction = eigen.U().col(hidden - 1 - k);
        let largest = (0..hidden)
            .max_by(|&a, &b| {
                direction[a]
                    .abs()
                    .total_cmp(&direction[b].abs())
                    .then(b.cmp(&a))
            })
            .unwrap_or(0);
        let sign = if direction[largest] < 0.0 { -1.0 } else { 1.0 };
        state::put_f32s(&mut out, (0..hidden).map(|i| (sign * direction[i]) as f32));
    }
    Ok(out)
}

pub struct Pca {
    mean: Vec<f32>,
    /// hidden × rank: the principal directions as columns.
    basis: Mat<f32>,
    coeff: Option<Quantized>,
    residual: Option<Quantized>,
}

impl Pca {
    pub fn from_state(p: &PcaParams, state: &[u8]) -> Result<Self, CodecError> {
        let mut reader = StateReader::open(state, MAGIC, NAME)?;
        let hidden = reader.hidden;
        let rank = reader.u32()?;
        if rank == 0 || rank > hidden || p.rank.is_some_and(|r| r != rank) {
            return Err(CodecError::new(format!(
                "the `{NAME}` state has rank {rank} at hidden size {hidden}; the params ask for {:?}",
                p.rank
            )));
        }
        let mean = reader.f32s(hidden)?;
        let rows = reader.f32s(hidden * rank)?;
        reader.finish()?;
        Ok(Pca {
            mean,
            basis: Mat::from_fn(hidden, rank, |i, k| rows[k * hidden + i]),
            coeff: match p.coeff {
                Coefficients::F16 => None,
                Coefficients::Int8 => Some(Quantized(8)),
                Coefficients::Int4 => Some(Quantized(4)),
            },
            residual: match p.residual {
                Residual::None => None,
                Residual::Int8 => Some(Quantized(8)),
                Residual::Int4 => Some(Quantized(4)),
            },
        })
    }

    fn hidden(&self) -> usize {
        self.mean.len()
    }

    fn rank(&self) -> usize {
        self.basis.ncols()
    }

    fn coeff_len(&self, rows: usize) -> usize {
        match self.coeff {
            None => rows * self.rank() * 2,
            Some(q) => blocks_wire_len(rows, self.rank(), q.per_token(self.rank()), false),
        }
    }

    fn residual_len(&self, rows: usize) -> usize {
        self.residual.map_or(0, |q| {
            blocks_wire_len(rows, self.hidden(), q.per_token(self.hidden()), false)
        })
    }

    /// Coefficients as the receiver reads them from `bytes` (exactly `coeff_len` long).
    fn read_coefficients(&self, bytes: &[u8], rows: usize) -> Result<Vec<f32>, CodecError> {
        match self.coeff {
            None => {
                let mut reader = WireReader::new(bytes);
                (0..rows * self.rank()).map(|_| reader.f16()).collect()
            }
            Some(q) => decode_blocks(bytes, rows, self.rank(), q.per_token(self.rank()), false),
        }
    }

    /// mean + coefficients · basisᵀ, row-major.
    fn reconstruct(&self, coefficients: &[f32], rows: usize) -> Vec<f32> {
        let hidden = self.hidden();
        let mut out: Vec<f32> = self
            .mean
            .iter()
            .copied()
            .cycle()
            .take(rows * hidden)
            .collect();
        if rows > 0 {
            matmul(
                faer::MatMut::from_row_major_slice_mut(&mut out, rows, hidden),
                Accum::Add,
                MatRef::from_row_major_slice(coefficients, rows, self.rank()),
                self.basis.transpose(),
                1.0,
                Par::rayon(0),
            );
        }
        out
    }
}

impl Codec for Pca {
    fn encode(&mut self, input: &TensorView<'_>) -> Result<Vec<u8>, CodecError> {
        let hidden = self.hidden();
        let rows = state::fitted_rows(input.shape(), hidden, NAME)?;
        let mut values = finite_values(input)?;
        let mut coefficients = vec![0f32; rows * self.rank()];
        if rows > 0 {
            let centered = Mat::from_fn(rows, hidden, |r, c| values[r * hidden + c] - self.mean[c]);
            matmul(
                faer::MatMut::from_row_major_slice_mut(&mut coefficients, rows, self.rank()),
                Accum::Replace,
                centered.as_ref(),
                self.basis.as_ref(),
                1.0,
                Par::rayon(0),
            );
        }
        let mut out = Vec::with_capacity(self.coeff_len(rows) + self.residual_len(rows));
        match self.coeff {
            None => coefficients
                .iter()
                .for_each(|&c| wire::put_f16(&mut out, c.clamp(-half_max(), half_max()))),
            Some(q) => out.extend(encode_blocks(
                &coefficients,
                self.rank(),
                q.per_token(self.rank()),
                false,
            )),
        }
        if let Some(q) = self.residual {
            // The error against what the receiver reconstructs, not against exact coefficients.
            let received = self.read_coefficients(&out, rows)?;
            let reconstructed = self.reconstruct(&received, rows);
            values
                .iter_mut()
                .zip(&reconstructed)
                .for_each(|(v, r)| *v -= r);
            out.extend(encode_blocks(&values, hidden, q.per_token(hidden), false));
        }
        Ok(out)
    }

    fn decode(
        &mut self,
        wire: &[u8],
        shape: &[usize],
        dtype: DType,
    ) -> Result<Vec<u8>, CodecError> {
        let hidden = self.hidden();
        let rows = state::fitted_rows(shape, hidden, NAME)?;
        let coeff_len = self.coeff_len(rows);
        wire::expect_len(wire, coeff_len + self.residual_len(rows))?;
        let coefficients = self.read_coefficients(&wire[..coeff_len], rows)?;
        let mut values = self.reconstruct(&coefficients, rows);
        if let Some(q) = self.residual {
            let residual =
                decode_blocks(&wire[coeff_len..], rows, hidden, q.per_token(hidden), false)?;
            values.iter_mut().zip(&residual).for_each(|(v, r)| *v += r);
        }
        Ok(f32_to_bytes(&values, dtype))
    }
}

/// f16's largest finite value, as f32.
fn half_max() -> f32 {
    round_to(DType::F16, 65504.0)
}

#[cfg(test)]
mod tests;
