//! `splitbench run`: load the model and data once, then sweep the codecs batch by batch
//! against the uncompressed baseline.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{quantized::GgmlDType, DType, Device, Tensor};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokenizers::Tokenizer;

use crate::codec_host::{CodecHost, LinkTraffic, PluginProvenance};
use crate::config::{CodecSpec, LinkModel, LoadedExperiment};
use crate::data;
use crate::device::parse_device;
use crate::eval::{perplexity, sweep_batch, Links, TokenComparison, WindowResult, WindowScores};
use crate::model::gguf::{load_gguf, GgufWeights};
use crate::model::load::{self, ModelFiles, Projections};
use crate::model::Decoder;
use crate::plan::Plan;
use crate::plugin_search::PluginSearch;
use crate::protocol::{self, Window};
use crate::record::{
    self, CodecRecord, DatasetInfo, FileInfo, JsonlWriter, LinkRecord, LinkTime, ModelInfo,
    Results, TrafficRecord,
};
use crate::stats::{
    bootstrap_ppl, divergence, ppl_stderr, Accumulator, PplStats, BOOTSTRAP_RESAMPLES,
    BOOTSTRAP_SEED,
};

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => bail!("model.dtype `{other}` is not supported; use f32, f16 or bf16"),
    }
}

fn parse_weights(s: &str) -> Result<Projections> {
    Ok(match s {
        "dense" => Projections::Dense,
        "q8_0" => Projections::Quantize(GgmlDType::Q8_0),
        "q4_0" => Projections::Quantize(GgmlDType::Q4_0),
        "q4k" => Projections::Quantize(GgmlDType::Q4K),
        "q6k" => Projections::Quantize(GgmlDType::Q6K),
        other => {
            bail!("model.weights `{other}` is not supported; use dense, q8_0, q4_0, q4k or q6k")
        }
    })
}

/// The model, tokenizer and where they came from.
pub struct LoadedModel {
    pub decoder: Decoder,
    pub tokenizer: Tokenizer,
    pub info: ModelInfo,
}

fn load_gguf_model(
    exp: &LoadedExperiment,
    gguf: &std::path::Path,
    dtype: DType,
    device: &Device,
) -> Result<LoadedModel> {
    let m = &exp.experiment.model;
    let weights = match m.weights.as_deref().unwrap_or("native") {
        "native" => GgufWeights::Native,
        "dequantize" => GgufWeights::Dequantize,
        other => {
            bail!("model.weights `{other}` does not apply to GGUF files; use native or dequantize")
        }
    };
    let path = match &m.id {
        Some(id) => load::hub_file(
            id,
            &m.revision,
            &gguf.to_string_lossy(),
            m.cache_dir.as_ref().map(|c| exp.resolve(c)).as_deref(),
        )?,
        None => exp.resolve(gguf),
    };
    if !path.is_file() {
        bail!("GGUF file `{}` does not exist; check model.gguf (relative paths start at the config's folder)", path.display());
    }
    let model = load_gguf(&path, dtype, device, weights)?;
    let decoder = model.decoder;
    let info = ModelInfo {
        id: m.id.clone(),
        revision: m.id.as_ref().map(|_| m.revision.clone()),
        path: Some(path.clone()),
        family: decoder.family,
        dtype: m.dtype.clone(),
        weights: m.weights.clone().unwrap_or_else(|| "native".into()),
        kept_dense: Vec::new(),
        layers: decoder.num_layers(),
        hidden_size: decoder.hidden_size(),
        vocab_size: decoder.vocab_size(),
        files: vec![FileInfo {
            bytes: std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            path,
        }],
    };
    Ok(LoadedModel {
        decoder,
        tokenizer: model.tokenizer,
        info,
    })
}

pub fn load_model(exp: &LoadedExperiment) -> Result<LoadedModel> {
    let m = &exp.experiment.model;
    let dtype = parse_dtype(&m.dtype)?;
    let device = parse_device(&m.device)?;
    crate::device::configure_gemm(&device, dtype);
    if let Some(gguf) = &m.gguf {
        return load_gguf_model(exp, gguf, dtype, &device);
    }
    let projections = parse_weights(m.weights.as_deref().unwrap_or("dense"))?;
    let files: ModelFiles = match (&m.path, &m.id) {
        (Some(path), _) => load::local_files(&exp.resolve(path))?,
        (None, Some(id)) => {
            let cache = m.cache_dir.as_ref().map(|c| exp.resolve(c));
            load::hub_files(id, &m.revision, cache.as_deref())?
        }
        (None, None) => bail!("[model] needs `path` or `id`"),
    };
    let tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| {
        anyhow::anyhow!(
            "cannot load the tokenizer `{}`: {e}",
            files.tokenizer.display()
        )
    })?;
    let loaded = load::load_safetensors(&files, dtype, &device, projections)?;
    let decoder = loaded.decoder;
    let tokenizer_vocab = tokenizer.get_vocab_size(true);
    if tokenizer_vocab > decoder.vocab_size() {
        bail!(
            "the tokenizer has {tokenizer_vocab} tokens but the model's embedding has only {} rows: \
             tokenizer.json does not belong to this model",
            decoder.vocab_size()
        );
    }
    let info = ModelInfo {
        id: m.id.clone(),
        revision: m.id.as_ref().map(|_| m.revision.clone()),
        path: m.path.as_ref().map(|p| exp.resolve(p)),
        family: decoder.family,
        dtype: m.dtype.clone(),
        weights: m.weights.clone().unwrap_or_else(|| "dense".into()),
        kept_dense: loaded.kept_dense,
        layers: decoder.num_layers(),
        hidden_size: decoder.hidden_size(),
        vocab_size: decoder.vocab_size(),
        files: files
            .all()
            .into_iter()
            .map(|p| FileInfo {
                path: p.to_path_buf(),
                bytes: std::fs::metadata(p).map(|m| m.len()).unwrap_or(0),
            })
            .collect(),
    };
    Ok(LoadedModel {
        decoder,
        tokenizer,
        info,
    })
}

/// The token stream and its provenance.
pub struct Tokens {
    pub ids: Vec<u32>,
    pub info: DatasetInfo,
}

pub fn data_path(exp: &LoadedExperiment) -> Result<PathBuf> {
    let d = &exp.experiment.data;
    if let Some(p) = &d.path {
        return Ok(exp.resolve(p));
    }
    match std::env::var_os("SPLITBENCH_WIKITEXT_DIR") {
        Some(dir) => Ok(PathBuf::from(dir).join(format!("wiki.{}.raw", d.split))),
        None => bail!(
            "no data file: set data.path to a wiki.{}.raw (or any text file with format = \"text\"), \
             or set SPLITBENCH_WIKITEXT_DIR to the folder holding WikiText-2's raw files",
            d.split
        ),
    }
}

pub fn load_tokens(exp: &LoadedExperiment, tokenizer: &Tokenizer) -> Result<Tokens> {
    let d = &exp.experiment.data;
    let source = data_path(exp)?;
    let text = data::read_text(&source, d.format)?;
    let mut ids = data::tokenize(tokenizer, &text, d.add_special_tokens)?;
    let text_tokens = ids.len();
    if d.first_k_tokens > 0 {
        if d.first_k_tokens > ids.len() {
            eprintln!(
                "splitbench: data.first_k_tokens = {} but the text has only {} tokens; using all of them",
                d.first_k_tokens,
                ids.len()
            );
        }
        ids.truncate(d.first_k_tokens);
    }
    if ids.len() < 2 {
        return Err(data::DataError::TooShort(ids.len()).into());
    }
    Ok(Tokens {
        info: DatasetInfo {
            source,
            format: d.format,
            add_special_tokens: d.add_special_tokens,
            text_sha256: data::sha256_hex(text.as_bytes()),
            text_tokens,
            tokens: ids.len(),
        },
        ids,
    })
}

pub fn make_plan(exp: &LoadedExperiment, layers: usize) -> Result<Plan> {
    let p = &exp.experiment.plan;
    let plan = if let Some(assign) = &p.layer_to_node {
        if assign.len() != layers {
            bail!(
                "plan.layer_to_node has {} entries; the model has {layers} layers",
                assign.len()
            );
        }
        let embed = p.embed_node.unwrap_or(assign[0]);
        Plan::from_assignment(assign.clone(), embed, p.head_node.unwrap_or(embed))?
    } else if let Some(cuts) = &p.split_after {
        Plan::split_after(layers, cuts)?
    } else {
        Plan::default_split(layers, p.nodes.unwrap_or(4))?
    };
    Ok(plan)
}

pub fn file_stem_for(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    format!("{v:.1} {}", UNITS[u])
}

/// What a batch adds to a codec's totals: everything `--resume` needs to rebuild them.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct BatchState {
    windows: Vec<WindowResult>,
    /// Σ of squared per-token NLL (for llama.cpp's PPL error).
    nll_sq: f64,
    tokens_processed: u64,
    traffic: Vec<LinkTraffic>,
    /// Against the baseline (absent for the baseline).
    comparison: Option<Accumulator>,
}

/// One JSONL line: the live curve (batch, tokens, PPL, bytes) and the batch's state.
#[derive(serde::Serialize, serde::Deserialize)]
struct BatchLine {
    codec: String,
    batch: usize,
    tokens_scored: usize,
    batch_nll: f64,
    batch_ppl: f64,
    running_ppl: f64,
    bytes: u64,
    running_bytes: u64,
    transmissions: u64,
    /// Mean KL(base ‖ codec) over this batch's scored tokens (absent for the baseline).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    batch_kld: Option<f64>,
    state: BatchState,
}

/// A JSONL line that marks a codec failed at a batch.
#[derive(serde::Serialize, serde::Deserialize)]
struct FailureLine {
    codec: String,
    failure: String,
}

/// One codec's evaluation in progress.
struct CodecRun<'p> {
    index: usize,
    spec: CodecSpec,
    label: String,
    links: Links<'p>,
    link_labels: Vec<String>,
    link_paths: Vec<&'static str>,
    plugins: Vec<PluginProvenance>,
    traffic: Vec<LinkTraffic>,
    windows: Vec<WindowResult>,
    acc: Accumulator,
    nll: f64,
    nll_sq: f64,
    scored: usize,
    model_tokens: u64,
    jsonl: JsonlWriter,
    jsonl_path: PathBuf,
    bar: ProgressBar,
    started: chrono::DateTime<chrono::Utc>,
    clock: Instant,
    failure: Option<String>,
}

impl CodecRun<'_> {
    /// Adds a batch's state to the totals; returns (batch NLL, batch scored).
    fn apply(&mut self, state: &BatchState) -> (f64, usize) {
        let batch_nll: f64 = state.windows.iter().map(|w| w.nll).sum();
        let batch_scored: usize = state.windows.iter().map(|w| w.scored).sum();
        self.nll += batch_nll;
        self.scored += batch_scored;
        self.nll_sq += state.nll_sq;
        self.model_tokens += state.tokens_processed;
        self.windows.extend_from_slice(&state.windows);
        for (t, bt) in self.traffic.iter_mut().zip(&state.traffic) {
            t.add(bt);
        }
        if let Some(c) = &state.comparison {
            self.acc.merge(c);
        }
        self.bar.inc(state.windows.len() as u64);
        (batch_nll, batch_scored)
    }

    /// Adds one batch's results; writes its JSONL line and moves its progress bar.
    fn record_batch(
        &mut self,
        batch: usize,
        lps: &[WindowScores],
        tokens_processed: u64,
        traffic: Vec<LinkTraffic>,
        comparisons: Option<&[TokenComparison]>,
    ) -> Result<()> {
        let comparison = comparisons.map(|cs| {
            let mut acc = Accumulator::default();
            cs.iter().for_each(|c| acc.add(c));
            acc
        });
        let state = BatchState {
            windows: lps.iter().map(|w| w.result).collect(),
            nll_sq: lps
                .iter()
                .flat_map(|w| w.target_lp.iter())
                .map(|&lp| f64::from(lp) * f64::from(lp))
                .sum(),
            tokens_processed,
            traffic,
            comparison,
        };
        let (batch_nll, batch_scored) = self.apply(&state);
        let running_bytes: u64 = self.traffic.iter().map(|t| t.bytes).sum();
        let transmissions: u64 = self.traffic.iter().map(|t| t.transmissions).sum();
        let batch_kld = state
            .comparison
            .as_ref()
            .map(|c| c.kld.iter().map(|&k| f64::from(k)).sum::<f64>() / c.tokens().max(1) as f64);
        self.jsonl.write(&BatchLine {
            codec: self.label.clone(),
            batch,
            tokens_scored: batch_scored,
            batch_nll,
            batch_ppl: perplexity(batch_nll, batch_scored),
            running_ppl: perplexity(self.nll, self.scored),
            bytes: state.traffic.iter().map(|t| t.bytes).sum(),
            running_bytes,
            transmissions,
            batch_kld,
            state,
        })?;
        self.bar.set_message(format!(
            "PPL {:.3} (batch {:.3}) | {:.0} B/tok | {} | {} tx",
            perplexity(self.nll, self.scored),
            perplexity(batch_nll, batch_scored),
            running_bytes as f64 / self.model_tokens.max(1) as f64,
            human_bytes(running_bytes),
            transmissions
        ));
        Ok(())
    }

    fn fail(&mut self, message: String) -> Result<()> {
        self.bar.abandon_with_message(format!("FAILED: {message}"));
        self.jsonl.write(&FailureLine {
            codec: self.label.clone(),
            failure: message.clone(),
        })?;
        self.failure = Some(message);
        Ok(())
    }

    /// Reads this codec's curve back for `--resume`: applies its first `batches` lines (or up
    /// to a failure line) and rewrites the file to hold exactly those.
    fn restore(&mut self, batches: usize) -> Result<()> {
        let lines = read_lines(&self.jsonl_path)?;
        let mut kept = Vec::new();
        for line in lines.into_iter().take(batches) {
            if let Ok(f) = serde_json::from_str::<FailureLine>(&line) {
                self.failure = Some(f.failure);
                kept.push(line);
                break;
            }
            let parsed: BatchLine = serde_json::from_str(&line).with_context(|| {
                format!(
                    "`{}` has a line that is not a batch",
                    self.jsonl_path.display()
                )
            })?;
            self.apply(&parsed.state);
            kept.push(line);
        }
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(&self.jsonl_path, text)
            .with_context(|| format!("rewriting `{}`", self.jsonl_path.display()))?;
        if let Some(f) = &self.failure {
            self.bar.abandon_with_message(format!("FAILED: {f}"));
        }
        Ok(())
    }
}

fn read_lines(path: &std::path::Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line cut short by a kill is not a batch: only newline-terminated lines count.
    let complete = text.rsplit_once('\n').map(|(head, _)| head).unwrap_or("");
    Ok(complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// Batches of a codec's curve that count for resuming: its batch lines, or all of them up to
/// its failure (a failed codec never holds the others back).
fn resumable_batches(path: &std::path::Path) -> Result<Option<usize>> {
    let lines = read_lines(path)?;
    if lines
        .iter()
        .any(|l| serde_json::from_str::<FailureLine>(l).is_ok())
    {
        return Ok(None);
    }
    Ok(Some(lines.len()))
}

/// Everything a sweep shares between codecs.
pub struct Sweep<'a> {
    pub exp: &'a LoadedExperiment,
    pub model: &'a LoadedModel,
    pub tokens: &'a Tokens,
    pub windows: Vec<Window>,
    pub plan: Plan,
    pub run_id: String,
    pub run_dir: PathBuf,
    pub per_link: bool,
    /// Continue the run in `run_dir` instead of starting one.
    pub resume: bool,
}

/// What must not change between a run and its resumption.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct RunIdentity {
    /// The resolved experiment, output folder left out.
    config: serde_json::Value,
    /// Model files: name and size.
    model_files: Vec<(String, u64)>,
    text_sha256: String,
    tokens: usize,
    /// Codec label and sha256 of each plugin binary it uses.
    plugins: Vec<(String, Vec<String>)>,
    per_link: bool,
}

impl RunIdentity {
    /// The first thing that differs, said for a user.
    fn difference(&self, before: &RunIdentity) -> Option<String> {
        if self.config != before.config {
            return Some(
                "the experiment config differs (compare it with the `config` of the run's records)"
                    .into(),
            );
        }
        if self.model_files != before.model_files {
            return Some(format!(
                "the model files differ: {:?} then, {:?} now",
                before.model_files, self.model_files
            ));
        }
        if self.text_sha256 != before.text_sha256 || self.tokens != before.tokens {
            return Some(format!(
                "the data differs: text sha256 {} and {} tokens then, {} and {} now",
                before.text_sha256, before.tokens, self.text_sha256, self.tokens
            ));
        }
        if self.plugins != before.plugins {
            let changed = self
                .plugins
                .iter()
                .find(|p| !before.plugins.contains(p))
                .map(|p| p.0.clone())
                .unwrap_or_default();
            return Some(format!(
                "the plugin binary of codec `{changed}` changed (its sha256 differs)"
            ));
        }
        if self.per_link != before.per_link {
            return Some("--per-link was given to one run and not the other".into());
        }
        None
    }
}

static INTERRUPTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Ctrl-C once: finish the batch, write records marked incomplete, exit non-zero. Twice: now.
fn watch_interrupts() {
    // Fails only if a handler is already installed, which then serves the same purpose.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
            std::process::exit(130);
        }
        eprintln!("\nsplitbench: stopping after this batch (Ctrl-C again to stop now)");
    });
}

/// The baseline and the codecs of the experiment (each `none` entry is the baseline itself);
/// with `per_link`, also each codec at one link only, every other link uncompressed.
fn codec_specs(exp: &LoadedExperiment, plan: &Plan, per_link: bool) -> Vec<CodecSpec> {
    let codecs: Vec<CodecSpec> = exp
        .experiment
        .codec
        .iter()
        .filter(|c| !c.is_none() || !c.links.is_empty())
        .cloned()
        .collect();
    let mut specs = vec![CodecSpec::none()];
    specs.extend(codecs.iter().cloned());
    if per_link {
        for spec in &codecs {
            for link in &plan.links {
                let mut only = spec.clone();
                only.label = Some(format!("{}@{}", spec.display_name(), link.name));
                for other in plan.links.iter().filter(|l| l.name != link.name) {
                    only.links.insert(other.name.clone(), CodecSpec::none());
                }
                specs.push(only);
            }
        }
    }
    specs
}

impl<'a> Sweep<'a> {
    fn identity(&self, runs: &[CodecRun<'_>]) -> Result<RunIdentity> {
        let mut config = serde_json::to_value(&self.exp.experiment)?;
        if let Some(c) = config.as_object_mut() {
            c.remove("output");
        }
        Ok(RunIdentity {
            config,
            model_files: self
                .model
                .info
                .files
                .iter()
                .map(|f| {
                    let name = f.path.file_name().map(|n| n.to_string_lossy().to_string());
                    (name.unwrap_or_default(), f.bytes)
                })
                .collect(),
            text_sha256: self.tokens.info.text_sha256.clone(),
            tokens: self.tokens.ids.len(),
            plugins: runs
                .iter()
                .map(|r| {
                    (
                        r.label.clone(),
                        r.plugins.iter().map(|p| p.sha256.clone()).collect(),
                    )
                })
                .collect(),
            per_link: self.per_link,
        })
    }

    /// For a new run, writes `run.json`; for a resumed one, checks it and restores every
    /// codec's totals. Returns the batch to start from.
    fn prepare(&self, runs: &mut [CodecRun<'_>]) -> Result<usize> {
        let identity = self.identity(runs)?;
        let path = self.run_dir.join("run.json");
        if !self.resume {
            record::write_new_json(&path, &identity)?;
            return Ok(0);
        }
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "`{}` is not a run folder splitbench can resume (no run.json)",
                self.run_dir.display()
            )
        })?;
        let before: RunIdentity = serde_json::from_str(&text)
            .with_context(|| format!("`{}` is not a splitbench run identity", path.display()))?;
        if let Some(difference) = identity.difference(&before) {
            bail!(
                "cannot resume {}: {difference}. Resume with the same experiment, model, data and \
                 plugins, or start a new run",
                self.run_dir.display()
            );
        }
        let finished = std::fs::read_dir(&self.run_dir)?.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.ends_with(".json")
                && !name.ends_with(".partial.json")
                && name.as_bytes().first().is_some_and(u8::is_ascii_digit)
        });
        if finished {
            bail!(
                "{} holds a finished run: there is nothing to resume",
                self.run_dir.display()
            );
        }
        let mut start = usize::MAX;
        for run in runs.iter() {
            if let Some(n) = resumable_batches(&run.jsonl_path)? {
                start = start.min(n);
            }
        }
        let start = if start == usize::MAX { 0 } else { start };
        for run in runs.iter_mut() {
            run.restore(start)?;
        }
        eprintln!(
            "splitbench: resuming {} after batch {start}",
            self.run_dir.display()
        );
        Ok(start)
    }

    fn start_run<'p>(
        &'p self,
        host: &mut CodecHost,
        multi: &MultiProgress,
        index: usize,
        spec: &CodecSpec,
    ) -> Result<CodecRun<'p>> {
        let label = spec.display_name();
        let (codecs, plugins) = host
            .link_codecs(spec, &self.plan, &self.exp.base_dir)
            .with_context(|| format!("setting up codec `{label}`"))?;
        let link_labels = codecs.iter().map(|c| c.label().to_string()).collect();
        let link_paths = codecs.iter().map(|c| c.path()).collect();
        let stem = format!("{index:02}-{}", file_stem_for(&label));
        let bar = multi.add(ProgressBar::new(self.windows.len() as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>16} [{bar:24}] {pos}/{len} {elapsed_precise} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_prefix(label.clone());
        Ok(CodecRun {
            index,
            spec: spec.clone(),
            label,
            links: Links::new(&self.plan, codecs),
            link_labels,
            link_paths,
            plugins,
            traffic: vec![LinkTraffic::default(); self.plan.links.len()],
            windows: Vec::with_capacity(self.windows.len()),
            acc: Accumulator::default(),
            nll: 0.0,
            nll_sq: 0.0,
            scored: 0,
            model_tokens: 0,
            jsonl: JsonlWriter::append(self.run_dir.join(format!("{stem}.batches.jsonl")))?,
            jsonl_path: self.run_dir.join(format!("{stem}.batches.jsonl")),
            bar,
            started: chrono::Utc::now(),
            clock: Instant::now(),
            failure: None,
        })
    }

    /// Evaluates the baseline and every codec, batch by batch: the layers before the first
    /// link run once per batch, and the baseline's log-probabilities live only while that
    /// batch is compared.
    pub fn run(&self, host: &mut CodecHost) -> Result<Vec<CodecRecord>> {
        let decoder = &self.model.decoder;
        let multi = MultiProgress::new();
        let specs = codec_specs(self.exp, &self.plan, self.per_link);
        let mut runs = specs
            .iter()
            .enumerate()
            .map(|(i, spec)| self.start_run(host, &multi, i, spec))
            .collect::<Result<Vec<_>>>()?;
        let start_batch = self.prepare(&mut runs)?;
        watch_interrupts();
        let (base, codecs) = runs
            .split_first_mut()
            .context("the baseline is always present")?;
        let batch_size = self.exp.experiment.eval.batch_size;
        let batches = self.windows.len().div_ceil(batch_size);
        let mut interrupted = false;
        for (b, windows) in self
            .windows
            .chunks(batch_size)
            .enumerate()
            .skip(start_batch)
        {
            let mut codec_links: Vec<Option<&mut Links<'_>>> = codecs
                .iter_mut()
                .map(|r| r.failure.is_none().then_some(&mut r.links))
                .collect();
            let (base_pass, outcomes) = sweep_batch(
                decoder,
                &self.tokens.ids,
                windows,
                &mut base.links,
                &mut codec_links,
            )?;
            let tokens_processed = base_pass.scores.len() as u64
                * windows.iter().map(Window::len).max().unwrap_or(0) as u64;
            base.record_batch(
                b,
                &base_pass.scores,
                tokens_processed,
                base_pass.traffic,
                None,
            )?;
            for (run, outcome) in codecs.iter_mut().zip(outcomes) {
                match outcome {
                    None => {}
                    // A codec that fails is marked failed; the others go on.
                    Some(Err(e)) => run.fail(format!("batch {b}: {e}"))?,
                    Some(Ok(pass)) => run.record_batch(
                        b,
                        &pass.scores,
                        tokens_processed,
                        pass.traffic,
                        Some(&pass.comparisons),
                    )?,
                }
            }
            if INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) > 0 && b + 1 < batches {
                interrupted = true;
                break;
            }
        }
        let link_model = self
            .exp
            .experiment
            .links
            .model()
            .map_err(anyhow::Error::msg)?;
        let base_windows = runs[0].windows.clone();
        let mut records = Vec::with_capacity(runs.len());
        for run in runs {
            run.bar.finish();
            // Not measured for a failed codec; a codec that fails at this size gets no estimate.
            let one_token = match (&run.failure, interrupted) {
                (None, false) => match self.one_token_costs(host, &run.spec) {
                    Ok(costs) => Some(costs),
                    Err(e) => {
                        eprintln!(
                            "splitbench: no batch-1 generation estimate for `{}`: {e:#}",
                            run.label
                        );
                        None
                    }
                },
                _ => None,
            };
            records.push(self.finish(
                run,
                &base_windows,
                &link_model,
                one_token.as_deref(),
                interrupted,
            )?);
        }
        if interrupted {
            bail!(
                "interrupted: records marked incomplete are in {} (*.partial.json); continue with \
                 `splitbench run {} --resume {}`",
                self.run_dir.display(),
                self.exp.path.display(),
                self.run_dir.display()
            );
        }
        Ok(records)
    }

    /// Wire bytes and encode+decode seconds of one token's hidden vector at each link, for the
    /// batch-1 generation estimate (median of repeated runs on a synthetic activation).
    fn one_token_costs(&self, host: &mut CodecHost, spec: &CodecSpec) -> Result<Vec<(u64, f64)>> {
        let decoder = &self.model.decoder;
        let hidden = decoder.hidden_size();
        let values = splitbench_plugin_api::testkit::synthetic_activations([1, 1, hidden], 1);
        let h = Tensor::from_vec(values, (1, 1, hidden), decoder.device())?
            .to_dtype(decoder.dtype())?;
        let (mut codecs, _) = host.link_codecs(spec, &self.plan, &self.exp.base_dir)?;
        let mut out = Vec::with_capacity(codecs.len());
        for (codec, link) in codecs.iter_mut().zip(&self.plan.links) {
            let mut times = Vec::new();
            let mut bytes = 0;
            for _ in 0..21 {
                let mut t = LinkTraffic::default();
                codec.transmit(&h, link, &mut t)?;
                bytes = t.bytes;
                times.push(t.encode_s + t.decode_s);
            }
            times.sort_by(f64::total_cmp);
            out.push((bytes, times[times.len() / 2]));
        }
        Ok(out)
    }

    fn finish(
        &self,
        run: CodecRun<'_>,
        base_windows: &[WindowResult],
        link_model: &LinkModel,
        one_token: Option<&[(u64, f64)]>,
        incomplete: bool,
    ) -> Result<CodecRecord> {
        let mut total = LinkTraffic::default();
        run.traffic.iter().for_each(|t| total.add(t));
        let bits_per_ms = link_model.bandwidth_mbps * 1e3;
        let wire_ms: f64 = run
            .traffic
            .iter()
            .map(|t| {
                t.bytes as f64 * 8.0 / bits_per_ms + t.transmissions as f64 * link_model.latency_ms
            })
            .sum();
        let generation_ms = one_token.map(|costs| {
            costs
                .iter()
                .map(|&(bytes, codec_s)| {
                    link_model.latency_ms + bytes as f64 * 8.0 / bits_per_ms + codec_s * 1e3
                })
                .sum::<f64>()
        });
        let (ppl, stderr) = ppl_stderr(run.nll, run.nll_sq, run.scored);
        let is_baseline = run.index == 0;
        let stem = format!("{:02}-{}", run.index, file_stem_for(&run.label));
        let record = CodecRecord {
            run_id: self.run_id.clone(),
            splitbench_version: env!("CARGO_PKG_VERSION").into(),
            started: run.started.to_rfc3339(),
            finished: chrono::Utc::now().to_rfc3339(),
            duration_s: run.clock.elapsed().as_secs_f64(),
            device: format!("{:?}", self.model.decoder.device()),
            codec: run.label.clone(),
            codec_spec: run.spec.clone(),
            failure: run.failure.clone(),
            incomplete,
            config: self.exp.experiment.clone(),
            model: self.model.info.clone(),
            dataset: self.tokens.info.clone(),
            plan: self.plan.clone(),
            results: Results {
                ppl: perplexity(run.nll, run.scored),
                ppl_stats: PplStats {
                    ppl,
                    stderr,
                    ci95: bootstrap_ppl(&run.windows, BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED),
                },
                total_nll: run.nll,
                scored_tokens: run.scored,
                windows: run.windows.clone(),
            },
            divergence: (!is_baseline && run.failure.is_none())
                .then(|| divergence(&run.acc, base_windows, &run.windows)),
            traffic: TrafficRecord {
                bytes_per_processed_token: total.bytes as f64 / run.model_tokens.max(1) as f64,
                bytes_per_scored_token: total.bytes as f64 / run.scored.max(1) as f64,
                total,
                model_tokens_processed: run.model_tokens,
                tokens_scored: run.scored,
                links: self
                    .plan
                    .links
                    .iter()
                    .zip(&run.traffic)
                    .zip(run.link_labels.iter().zip(&run.link_paths))
                    .enumerate()
                    .map(|(k, ((link, t), (codec, path)))| LinkRecord {
                        name: link.name.clone(),
                        codec: codec.clone(),
                        path: path.to_string(),
                        bytes_per_processed_token: t.bytes as f64
                            / t.tokens_processed.max(1) as f64,
                        bytes_per_scored_token: t.bytes as f64 / run.scored.max(1) as f64,
                        bytes_per_element: t.bytes as f64 / t.elements.max(1) as f64,
                        ratio: t.raw_bytes as f64 / t.bytes.max(1) as f64,
                        reconstruction: t.reconstruction(),
                        encode_gbps: t.raw_bytes as f64 / t.encode_s.max(1e-12) / 1e9,
                        decode_gbps: t.raw_bytes as f64 / t.decode_s.max(1e-12) / 1e9,
                        one_token_bytes: one_token.map(|c| c[k].0),
                        one_token_codec_ms: one_token.map(|c| c[k].1 * 1e3),
                        traffic: t.clone(),
                    })
                    .collect(),
            },
            link_time: LinkTime {
                model: link_model.clone(),
                wire_ms_per_processed_token: wire_ms / run.model_tokens.max(1) as f64,
                generation_ms_per_token: generation_ms,
            },
            plugins: run.plugins.clone(),
        };
        if incomplete {
            let path = self.run_dir.join(format!("{stem}.partial.json"));
            std::fs::write(&path, serde_json::to_string_pretty(&record)?)
                .with_context(|| format!("writing `{}`", path.display()))?;
        } else {
            record::write_new_json(&self.run_dir.join(format!("{stem}.json")), &record)?;
        }
        Ok(record)
    }
}

/// Runs the experiment's sweep; writes records and summary.json; prints the summary table.
/// Prints what `--verify-wire` found; fails when a device wire differed from the host path's.
fn report_wire_checks(records: &[CodecRecord], requested: bool) -> Result<()> {
    let on_device = records
        .iter()
        .flat_map(|r| &r.traffic.links)
        .any(|l| l.path == "device");
    if requested && !on_device {
        eprintln!(
            "splitbench: no link ran on the device path, so --verify-wire had nothing to check \
             (the model is not on a GPU, or no codec of this run has a device path)"
        );
    }
    let mut mismatched = Vec::new();
    for r in records {
        for l in &r.traffic.links {
            let t = &l.traffic;
            if t.wire_checks == 0 {
                continue;
            }
            println!(
                "verify-wire: {} at {}: {} wires checked, {} differ from the host path's; \
                 device vs host decode of one wire: max |diff| {:.3e}",
                r.codec, l.name, t.wire_checks, t.wire_mismatches, t.verify_max_decode_diff
            );
            if t.wire_mismatches > 0 || t.verify_max_decode_diff > 0.0 {
                mismatched.push(format!("{} at {}", r.codec, l.name));
            }
        }
    }
    if !mismatched.is_empty() {
        bail!(
            "the device path disagrees with the host path for {}; the plugin's kernels do not \
             reproduce its host implementation",
            mismatched.join(", ")
        );
    }
    Ok(())
}

pub fn run(
    exp: &LoadedExperiment,
    per_link: bool,
    resume: Option<&std::path::Path>,
) -> Result<Vec<CodecRecord>> {
    let model = load_model(exp)?;
    let tokens = load_tokens(exp, &model.tokenizer)?;
    let eval = &exp.experiment.eval;
    let max_positions = model.decoder.config.max_position_embeddings;
    if eval.max_length > max_positions {
        bail!(
            "eval.max_length = {} exceeds the model's context ({max_positions} positions); lower it with --set eval.max_length={max_positions}",
            eval.max_length
        );
    }
    let windows = protocol::windows(tokens.ids.len(), eval.max_length, eval.stride);
    let plan = make_plan(exp, model.decoder.num_layers())?;
    let stem = exp
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "run".into());
    let (run_id, run_dir) = match resume {
        Some(dir) => {
            let id = dir.file_name().map(|n| n.to_string_lossy().to_string());
            (id.unwrap_or_default(), dir.to_path_buf())
        }
        None => record::create_run_dir(&exp.resolve(&exp.experiment.output.dir), &stem)?,
    };
    eprintln!(
        "splitbench: {} tokens, {} windows, {} links ({}), records in {}",
        tokens.ids.len(),
        windows.len(),
        plan.links.len(),
        plan.links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        run_dir.display()
    );
    let sweep = Sweep {
        exp,
        model: &model,
        tokens: &tokens,
        windows,
        plan,
        run_id,
        run_dir: run_dir.clone(),
        per_link,
        resume: resume.is_some(),
    };
    let mut host = CodecHost::new(PluginSearch::from_env(), eval.nonfinite)
        .for_device(model.decoder.device(), eval.verify_wire);
    let records = sweep.run(&mut host)?;
    let rows = crate::report::render(&run_dir, &records)?;
    record::write_new_json(&run_dir.join("summary.json"), &rows)?;
    report_wire_checks(&records, eval.verify_wire)?;
    if let Some(failed) = records.iter().find(|r| r.failure.is_some()) {
        bail!(
            "codec `{}` failed ({}); the other codecs' records are in {}",
            failed.codec,
            failed.failure.as_deref().unwrap_or_default(),
            run_dir.display()
        );
    }
    Ok(records)
}
