//! Every family against Hugging Face transformers on tiny random-weight models: the logits
//! of every position in f32 within rounding. The models and transformers' logits are made by
//! `scripts/family_references.py` (tests/fixtures/families/README.md); every family is also
//! written by `synth-model` and loaded back.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::FAMILIES;
use crate::model::load::{load_safetensors, LoadedWeights, ModelFiles, Projections};
use crate::model::synth::{write_model, SynthShape};
use crate::scratch::ScratchDir;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/families")
}

fn load(dir: &Path) -> LoadedWeights {
    let files = ModelFiles {
        config: dir.join("config.json"),
        tokenizer: dir.join("config.json"),
        weights: vec![dir.join("model.safetensors")],
    };
    load_safetensors(&files, DType::F32, &Device::Cpu, Projections::Dense).unwrap()
}

#[derive(serde::Deserialize)]
struct Reference {
    /// One row.
    ids: Vec<Vec<u32>>,
    /// `[1, positions, vocab]`.
    logits: Vec<Vec<Vec<f32>>>,
}

/// Our logits for the reference's row against transformers': the largest difference, and the
/// largest logit for scale.
fn compare(case: &str, reference: &str) -> (f32, f32) {
    let dir = fixtures().join(case);
    let text = std::fs::read_to_string(dir.join(reference)).unwrap_or_else(|e| {
        panic!("{}: {e}", dir.join(reference).display());
    });
    let r: Reference = serde_json::from_str(&text).unwrap();
    let decoder = load(&dir).decoder;
    let t = r.ids[0].len();
    let ids = Tensor::new(r.ids[0].as_slice(), &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let ours = decoder.forward(&ids, &[t]).unwrap().squeeze(0).unwrap();
    let ours: Vec<Vec<f32>> = ours.to_vec2().unwrap();
    let theirs = &r.logits[0];
    assert_eq!(ours.len(), theirs.len(), "{case}: positions");
    let mut worst = 0f32;
    let mut largest = 0f32;
    for (a, b) in ours.iter().zip(theirs) {
        assert_eq!(a.len(), b.len(), "{case}: vocabulary");
        for (x, y) in a.iter().zip(b) {
            worst = worst.max((x - y).abs());
            largest = largest.max(y.abs());
        }
    }
    (worst, largest)
}

/// Within f32 rounding: transformers sums in other orders (its attention, its matmuls).
fn assert_matches(case: &str, reference: &str) {
    let (worst, largest) = compare(case, reference);
    eprintln!("{case}/{reference}: largest difference {worst}, largest logit {largest}");
    assert!(
        worst <= 1e-4 * largest.max(1.0),
        "{case}/{reference}: logits differ from transformers' by up to {worst} (largest {largest})"
    );
}

#[test]
fn llama_matches_transformers() {
    assert_matches("llama-generate", "reference.json");
}

#[test]
fn gemma2_matches_transformers() {
    assert_matches("gemma2", "reference.json");
}

#[test]
fn gemma3_matches_transformers() {
    assert_matches("gemma3", "reference.json");
}

#[test]
fn phi3_matches_transformers() {
    assert_matches("phi3", "reference.json");
}

#[test]
fn phi3_longrope_matches_transformers_beyond_and_within_the_original_context() {
    assert_matches("phi3-longrope", "reference.json");
    assert_matches("phi3-longrope", "reference_short.json");
}

#[test]
fn olmo2_matches_transformers() {
    assert_matches("olmo2", "reference.json");
}

#[test]
fn mixtral_matches_transformers() {
    assert_matches("mixtral", "reference.json");
}

#[test]
fn qwen3_moe_matches_transformers_with_and_without_renormalized_weights() {
    assert_matches("qwen3moe", "reference.json");
    assert_matches("qwen3moe-unnormalized", "reference.json");
}

/// `synth-model --family` makes a model of every family that loads and runs.
#[test]
fn synth_model_makes_every_family() {
    for family in FAMILIES {
        let dir = ScratchDir::new(&format!("synth-{}", family.name));
        let shape = SynthShape {
            family: family.name.into(),
            layers: 2,
            hidden: 32,
            intermediate: 48,
            heads: 4,
            kv_heads: 2,
            head_dim: Some(8),
            max_positions: 64,
            tie_embeddings: false,
            seed: 1,
            vocab: 300,
            preset: None,
            rope_theta: 10000.0,
            dtype: crate::config::ModelDtype::F32,
            experts: None,
            experts_per_token: None,
            moe_intermediate: None,
        };
        write_model(&dir, &shape).unwrap();
        let loaded = load(&dir);
        assert_eq!(loaded.decoder.family.spec().name, family.name);
        let ids = Tensor::new(&[[0u32, 5, 9, 200, 7]], &Device::Cpu).unwrap();
        let logits = loaded.decoder.forward(&ids, &[5]).unwrap();
        assert_eq!(logits.dims(), [1, 5, 300], "{}", family.name);
        let values: Vec<f32> = logits.flatten_all().unwrap().to_vec1().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{}", family.name);
    }
}
