//! Our decoder against candle-transformers' own implementations, on tiny random-weight models:
//! last-token logits in f32 must agree to 1e-5.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;

use super::load::{load_safetensors, local_files, Projections};
use crate::model::synth::{write_model, SynthShape};
use crate::scratch::ScratchDir;

fn synth(family: &str, tie: bool) -> ScratchDir {
    let dir = ScratchDir::new(&format!("ref-{family}"));
    let shape = SynthShape {
        family: family.into(),
        layers: 3,
        hidden: 64,
        intermediate: 96,
        heads: 4,
        kv_heads: 2,
        head_dim: if family == "qwen3" { Some(32) } else { None },
        max_positions: 128,
        tie_embeddings: tie,
        seed: 3,
        vocab: 320,
        preset: None,
        rope_theta: 10000.0,
        dtype: crate::config::ModelDtype::F32,
        experts: None,
        experts_per_token: None,
        moe_intermediate: None,
    };
    write_model(&dir, &shape).unwrap();
    dir
}

fn ids() -> Tensor {
    Tensor::new(
        &[[0u32, 17, 250, 3, 99, 42, 7, 123, 5, 64, 200, 11]],
        &Device::Cpu,
    )
    .unwrap()
}

fn ours(dir: &Path) -> Vec<f32> {
    let files = local_files(dir).unwrap();
    let model = load_safetensors(&files, DType::F32, &Device::Cpu, Projections::Dense)
        .unwrap()
        .decoder;
    let ids = ids();
    let t = ids.dims2().unwrap().1;
    let logits = model.forward(&ids, &[t]).unwrap();
    logits
        .narrow(1, t - 1, 1)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn config_json(dir: &Path) -> serde_json::Value {
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    // Fields the reference configs require and our synthetic config leaves to defaults.
    c["sliding_window"] = 4096.into();
    c["max_window_layers"] = 0.into();
    c["use_sliding_window"] = false.into();
    c["attention_bias"] = (c["model_type"] == "qwen2").into();
    c
}

fn vb(dir: &Path) -> VarBuilder<'static> {
    unsafe {
        VarBuilder::from_mmaped_safetensors(
            &[dir.join("model.safetensors")],
            DType::F32,
            &Device::Cpu,
        )
        .unwrap()
    }
}

fn assert_close(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max <= 1e-5, "max abs difference {max}");
}

fn flat(t: Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn llama_matches_candle_transformers() {
    use candle_transformers::models::llama;
    for tie in [false, true] {
        let dir = synth("llama", tie);
        let cfg: llama::LlamaConfig = serde_json::from_value(config_json(&dir)).unwrap();
        let cfg = cfg.into_config(false);
        let model = llama::Llama::load(vb(&dir), &cfg).unwrap();
        let mut cache = llama::Cache::new(false, DType::F32, &cfg, &Device::Cpu).unwrap();
        let theirs = flat(model.forward(&ids(), 0, &mut cache).unwrap());
        assert_close(&ours(&dir), &theirs);
    }
}

#[test]
fn mistral_matches_candle_transformers() {
    use candle_transformers::models::mistral;
    let dir = synth("mistral", false);
    let cfg: mistral::Config = serde_json::from_value(config_json(&dir)).unwrap();
    let mut model = mistral::Model::new(&cfg, vb(&dir)).unwrap();
    let theirs = flat(model.forward(&ids(), 0).unwrap());
    assert_close(&ours(&dir), &theirs);
}

#[test]
fn qwen2_matches_candle_transformers() {
    use candle_transformers::models::qwen2;
    let dir = synth("qwen2", true);
    let cfg: qwen2::Config = serde_json::from_value(config_json(&dir)).unwrap();
    let mut model = qwen2::ModelForCausalLM::new(&cfg, vb(&dir)).unwrap();
    let theirs = flat(model.forward(&ids(), 0).unwrap());
    assert_close(&ours(&dir), &theirs);
}

#[test]
fn qwen3_matches_candle_transformers() {
    use candle_transformers::models::qwen3;
    let dir = synth("qwen3", false);
    let cfg: qwen3::Config = serde_json::from_value(config_json(&dir)).unwrap();
    let mut model = qwen3::ModelForCausalLM::new(&cfg, vb(&dir)).unwrap();
    let theirs = flat(model.forward(&ids(), 0).unwrap());
    assert_close(&ours(&dir), &theirs);
}
