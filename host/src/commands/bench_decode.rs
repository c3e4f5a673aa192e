//! `splitbench bench --decode`: greedy decode steps per second of the uncompressed model on the
//! prompts of `[generate]`, side by side with Hugging Face `generate` run by the peer script
//! (`scripts/peer_hf.py --generate`) on the same model, prompts, dtype, device and threads, the
//! two engines alternating round by round in one invocation.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, DeviceLocation};

use crate::config::LoadedExperiment;
use crate::eval::generate::{generate, Feed};
use crate::model::Decoder;
use crate::profile::{self, Phase};
use crate::setup::{Checked, ModelInfo};

/// What `bench --decode` runs.
pub struct DecodeOptions<'a> {
    /// Timed rounds of each engine, after one untimed warm-up each.
    pub rounds: usize,
    /// The peer script (scripts/peer_hf.py); without it only splitbench is timed.
    pub peer: Option<&'a Path>,
    /// Then one more generation profiled by phase.
    pub profile: bool,
}

/// One engine's timed round: ms per step and its continuations.
struct Round {
    ms_per_step: f64,
    continuations: Vec<Vec<u32>>,
}

/// Times `rounds` greedy generations of `[generate]`'s prompts with splitbench and, with a
/// peer, with Hugging Face `generate`, alternating, and prints ms per step of each.
pub fn bench_decode(exp: &LoadedExperiment, options: &DecodeOptions<'_>) -> Result<()> {
    let Some(spec) = &exp.experiment.generate else {
        bail!("bench --decode times the decode phase of [generate]; the config has no [generate] section");
    };
    if spec.new_tokens < 2 {
        bail!("bench --decode times the steps after the first: [generate] new_tokens must be at least 2");
    }
    let prepared = Checked::new(exp)?.prepare()?;
    let (model, decoder) = (&prepared.model, &prepared.model.decoder);
    let prompts = crate::sweep::generation::prompts(
        &prepared.tokens.ids,
        spec,
        decoder.config.max_position_embeddings,
    )?;
    let threads = rayon::current_num_threads();
    let mut peer = options
        .peer
        .map(|script| Peer::start(script, &model.info, exp, decoder.device(), threads))
        .transpose()?;
    let request = serde_json::json!({ "prompts": prompts, "new_tokens": spec.new_tokens });
    println!(
        "decode: {} prompts of {} tokens, {} new tokens each, greedy with a KV cache, no codec; \
         {}, weights {} ({}); device {:?}; {threads} threads; ms per step between consecutive \
         steps' logits (the prefill excluded), {} rounds after a warm-up{}",
        prompts.len(),
        spec.prompt_tokens,
        spec.new_tokens,
        exp.experiment.model.dtype,
        model.info.weights,
        peer_weights(&model.info),
        decoder.device(),
        options.rounds,
        if peer.is_some() { ", alternating" } else { "" },
    );
    time_splitbench(decoder, &prompts, spec.new_tokens)?;
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 1..=options.rounds {
        if let Some(peer) = &mut peer {
            theirs.push(peer.time(&request)?);
        }
        ours.push(time_splitbench(decoder, &prompts, spec.new_tokens)?);
        let hf = theirs
            .last()
            .map(|r: &Round| format!("HF {:.1} ms/step, ", r.ms_per_step))
            .unwrap_or_default();
        println!(
            "  round {round}/{}: {hf}splitbench {:.1} ms/step",
            options.rounds,
            ours[round - 1].ms_per_step
        );
    }
    let rows = prompts.len() as f64;
    println!(
        "{:<56} {:>8} {:>15} {:>9} {:>9}",
        "engine", "ms/step", "min-max", "steps/s", "tokens/s"
    );
    let ours_ms = print_row(
        &format!("splitbench {}", env!("CARGO_PKG_VERSION")),
        &ours,
        rows,
    );
    if let Some(peer) = &peer {
        let theirs_ms = print_row(&format!("HF generate ({})", peer.versions), &theirs, rows);
        println!(
            "splitbench / HF: {:.2}x steps/s (medians)",
            theirs_ms / ours_ms
        );
        println!(
            "continuations: {}",
            compare(&ours[0].continuations, &theirs[0].continuations)
        );
    }
    if options.profile {
        print_phase_shares(decoder, &prompts, spec.new_tokens)?;
    }
    Ok(())
}

/// One more generation, the device synchronized around each phase: each phase's share of its
/// time (the prefill included), and what no phase holds.
fn print_phase_shares(decoder: &Decoder, prompts: &[Vec<u32>], new: usize) -> Result<()> {
    profile::start();
    let start = Instant::now();
    generate(decoder, prompts, new, Feed::Greedy, None, &mut |_, _| {})?;
    let (elapsed, times) = (start.elapsed().as_secs_f64(), profile::stop());
    let shares: Vec<String> = Phase::ALL
        .iter()
        .map(|&p| (p.name(), times.get(p)))
        .chain([("other", (elapsed - times.total()).max(0.0))])
        .map(|(name, s)| format!("{name} {:.1}%", 100.0 * s / elapsed))
        .collect();
    println!(
        "share of one profiled generation's time by phase: {}",
        shares.join(", ")
    );
    Ok(())
}

/// One greedy generation of `prompts`, timed from the first step's logits to the last's.
fn time_splitbench(decoder: &Decoder, prompts: &[Vec<u32>], new: usize) -> Result<Round> {
    let mut ready = Vec::with_capacity(new);
    let continuations = generate(decoder, prompts, new, Feed::Greedy, None, &mut |_, _| {
        ready.push(Instant::now())
    })?;
    let span = ready[new - 1].duration_since(ready[0]).as_secs_f64();
    Ok(Round {
        ms_per_step: span * 1e3 / (new - 1) as f64,
        continuations,
    })
}

/// Prints one engine's median ms/step, range, steps/s and tokens/s; returns the median.
fn print_row(name: &str, rounds: &[Round], rows: f64) -> f64 {
    let mut ms: Vec<f64> = rounds.iter().map(|r| r.ms_per_step).collect();
    ms.sort_by(f64::total_cmp);
    let median = match ms.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    };
    let (low, high) = (ms.first().copied(), ms.last().copied());
    println!(
        "{name:<56} {median:>8.1} {:>15} {:>9.1} {:>9.1}",
        format!(
            "{:.1}-{:.1}",
            low.unwrap_or(f64::NAN),
            high.unwrap_or(f64::NAN)
        ),
        1e3 / median,
        rows * 1e3 / median
    );
    median
}

/// Whether splitbench's continuations are HF's: equal, or the first prompt and step that
/// differ.
fn compare(ours: &[Vec<u32>], theirs: &[Vec<u32>]) -> String {
    let tokens: usize = ours.iter().map(Vec::len).sum();
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        if let Some(step) = (0..a.len().max(b.len())).find(|&s| a.get(s) != b.get(s)) {
            return format!("differ from HF's (prompt {i}, first at generated token {step})");
        }
    }
    if ours.len() != theirs.len() {
        return format!("HF returned {} prompts, not {}", theirs.len(), ours.len());
    }
    format!("equal to HF's ({tokens} generated tokens)")
}

/// How the peer holds the weights: a GGUF is dequantized by transformers to model.dtype.
fn peer_weights(info: &ModelInfo) -> &'static str {
    match is_gguf(info) {
        true => "HF: the GGUF dequantized to model.dtype",
        false => "HF: the checkpoint's in model.dtype",
    }
}

fn is_gguf(info: &ModelInfo) -> bool {
    info.path
        .as_ref()
        .is_some_and(|p| p.extension().is_some_and(|e| e == "gguf"))
}

/// The peer process: loads the model once, then answers one timing request per line.
struct Peer {
    child: Child,
    /// Closed (None) before waiting for the peer to end.
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    /// Collects what the peer writes to stderr (transformers' progress bars and warnings),
    /// shown only if it fails.
    stderr: Option<JoinHandle<String>>,
    command: String,
    versions: String,
}

impl Peer {
    fn start(
        script: &Path,
        info: &ModelInfo,
        exp: &LoadedExperiment,
        device: &Device,
        threads: usize,
    ) -> Result<Peer> {
        let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
        let mut command = Command::new(&python);
        command.arg(script);
        match (is_gguf(info), &info.path, info.files.first()) {
            (true, Some(gguf), _) => command.arg("--gguf").arg(gguf),
            (false, _, Some(first)) => command
                .arg("--model")
                .arg(first.path.parent().unwrap_or(Path::new("."))),
            _ => bail!("bench --decode: no model files to hand to the peer"),
        };
        let device = match device.location() {
            DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
            DeviceLocation::Metal { gpu_id } => format!("mps:{gpu_id}"),
            DeviceLocation::Cpu => "cpu".into(),
        };
        command.args(["--dtype", exp.experiment.model.dtype.as_str()]);
        command.args(["--device", &device]);
        command.args(["--threads", &threads.to_string(), "--generate"]);
        command.env("OMP_NUM_THREADS", threads.to_string());
        let text = format!("{command:?}");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start the peer {text} (PYTHON names the Python)"))?;
        let (Some(stdin), Some(stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            bail!("the peer {text} has no pipes");
        };
        let stderr = std::thread::spawn(move || {
            let mut said = String::new();
            let _ = stderr.read_to_string(&mut said);
            said
        });
        Ok(Peer {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr: Some(stderr),
            command: text,
            versions: String::new(),
        })
    }

    /// One timed `generate` of the request's prompts.
    fn time(&mut self, request: &serde_json::Value) -> Result<Round> {
        let mut line = String::new();
        let answered = match self.stdin.as_mut() {
            Some(stdin) => writeln!(stdin, "{request}")
                .and_then(|_| stdin.flush())
                .and_then(|_| self.stdout.read_line(&mut line)),
            None => Ok(0),
        };
        if !matches!(answered, Ok(n) if n > 0) {
            self.stdin.take();
            let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
            let said = self
                .stderr
                .take()
                .and_then(|t| t.join().ok())
                .unwrap_or_default();
            let tail: Vec<&str> = said.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            bail!(
                "the peer {} stopped ({status}):\n{}",
                self.command,
                tail.join("\n")
            );
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            torch: String,
            transformers: String,
            ms_per_step: f64,
            continuations: Vec<Vec<u32>>,
        }
        let answer: Answer = serde_json::from_str(&line)
            .with_context(|| format!("the peer's answer `{}`", line.trim()))?;
        self.versions = format!(
            "transformers {}, torch {}",
            answer.transformers, answer.torch
        );
        Ok(Round {
            ms_per_step: answer.ms_per_step,
            continuations: answer.continuations,
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        // The peer ends at the end of its input.
        self.stdin.take();
        let _ = self.child.wait();
    }
}
