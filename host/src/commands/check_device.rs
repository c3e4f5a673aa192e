//! `splitbench check-device`: the same batch through the model on the CPU and on the
//! configured GPU, and how far the logits differ.

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, IndexOp, Tensor};

use crate::config::{DeviceSpec, LoadedExperiment};
use crate::eval::windows::windows;
use crate::eval::{embed_batch, run_layers};
use crate::setup::load_model_and_tokens;

/// Largest |logit difference| allowed, relative to the largest |logit|, per model dtype: f32
/// differs only in summation order; bf16/f16 round every op's output to 8/11 bits.
pub fn default_bound(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-4,
        DType::F16 => 1e-2,
        _ => 5e-2,
    }
}

/// Logits `[tokens, vocab]` (f32, on the CPU) of each window of the first batch.
fn batch_logits(exp: &LoadedExperiment) -> Result<(Vec<Tensor>, String)> {
    let (model, tokens) = load_model_and_tokens(exp)?;
    let decoder = &model.decoder;
    let eval = &exp.experiment.eval;
    let windows = windows(tokens.ids.len(), eval.max_length, eval.stride);
    let windows = &windows[..eval.batch_size.min(windows.len())];
    let (batch, h) = embed_batch(decoder, &tokens.ids, windows)?;
    let h = run_layers(decoder, &batch, h, 0..decoder.num_layers())?;
    let logits = decoder.head(&h)?.to_device(&Device::Cpu)?;
    let per_window = windows
        .iter()
        .enumerate()
        .map(|(row, w)| logits.i((row, 0..w.len())))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((per_window, decoder.device_names()))
}

/// Runs the check; fails when the relative difference exceeds `bound` (default:
/// [`default_bound`] for the model's dtype).
pub fn check_device(exp: &LoadedExperiment, bound: Option<f64>) -> Result<()> {
    let device = exp.experiment.model.device;
    let on_gpu = match &exp.experiment.plan.devices {
        Some(devices) => devices.iter().any(|d| *d != DeviceSpec::Cpu),
        None => device != DeviceSpec::Cpu,
    };
    if !on_gpu {
        bail!("check-device compares the CPU with model.device (or plan.devices); set model.device = \"cuda:0\" (or pass --set model.device='\"cuda:0\"')");
    }
    let dtype = exp.experiment.model.dtype.candle();
    let bound = bound.unwrap_or_else(|| default_bound(dtype));
    let mut on_cpu = exp.clone();
    on_cpu.experiment.model.device = DeviceSpec::Cpu;
    on_cpu.experiment.plan.devices = None;
    let (cpu, _) = batch_logits(&on_cpu).context("running the batch on the CPU")?;
    let (gpu, gpu_name) =
        batch_logits(exp).context("running the batch on the configured devices")?;
    let (mut diff, mut scale) = (0f64, 0f64);
    for (a, b) in cpu.iter().zip(&gpu) {
        diff = diff.max(f64::from((a - b)?.abs()?.max_all()?.to_scalar::<f32>()?));
        scale = scale.max(f64::from(a.abs()?.max_all()?.to_scalar::<f32>()?));
    }
    let relative = diff / scale.max(f64::MIN_POSITIVE);
    let tokens: usize = cpu.iter().map(|t| t.dim(0).unwrap_or(0)).sum();
    println!(
        "check-device: {} windows, {tokens} tokens, {} model: CPU vs {gpu_name}: max |Δlogit| {diff:.3e}, \
         largest |logit| {scale:.3e}, relative {relative:.3e} (bound {bound:.0e})",
        cpu.len(),
        exp.experiment.model.dtype
    );
    if relative.is_nan() || relative > bound {
        bail!(
            "the GPU's logits differ from the CPU's by {relative:.3e} of the largest logit, above \
             the bound {bound:.0e} for {}",
            exp.experiment.model.dtype
        );
    }
    Ok(())
}
