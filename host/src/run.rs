//! `splitbench run`: load the model and data once, then evaluate each codec in turn.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{quantized::GgmlDType, DType, Device};
use indicatif::{ProgressBar, ProgressStyle};
use tokenizers::Tokenizer;

use crate::codec_host::{CodecHost, LinkTraffic};
use crate::config::{CodecSpec, LoadedExperiment};
use crate::data;
use crate::eval::{eval_batch, perplexity, Links, WindowResult};
use crate::model::gguf::{load_gguf, GgufWeights};
use crate::model::load::{self, ModelFiles, Projections};
use crate::model::Decoder;
use crate::plan::Plan;
use crate::plugin_search::PluginSearch;
use crate::protocol::{self, Window};
use crate::record::{
    self, CodecRecord, DatasetInfo, FileInfo, JsonlWriter, LinkRecord, ModelInfo, Results,
    TrafficRecord,
};
use crate::report::{summary_table, SummaryRow};

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => bail!("model.dtype `{other}` is not supported; use f32, f16 or bf16"),
    }
}

pub fn parse_device(s: &str) -> Result<Device> {
    match s {
        "cpu" => Ok(Device::Cpu),
        "auto" => {
            eprintln!("splitbench: model.device = \"auto\": this build has no CUDA support, running on the CPU");
            Ok(Device::Cpu)
        }
        other if other.starts_with("cuda") => bail!(
            "model.device = \"{other}\", but this splitbench was built without CUDA; use \"cpu\" or \"auto\""
        ),
        other => bail!("model.device `{other}` is not understood; use \"cpu\", \"auto\" or \"cuda:N\""),
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

/// Everything a codec's evaluation needs that does not change between codecs.
pub struct Job<'a> {
    pub exp: &'a LoadedExperiment,
    pub model: &'a LoadedModel,
    pub tokens: &'a Tokens,
    pub windows: Vec<Window>,
    pub plan: Plan,
    pub run_id: String,
    pub run_dir: PathBuf,
}

fn file_stem_for(label: &str) -> String {
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

fn progress_bar(total: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{bar:30}] {pos}/{len} windows {elapsed_precise} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

#[derive(serde::Serialize)]
struct BatchLine<'a> {
    codec: &'a str,
    batch: usize,
    windows: usize,
    tokens_processed: u64,
    tokens_scored: usize,
    batch_nll: f64,
    batch_ppl: f64,
    running_ppl: f64,
    bytes: u64,
    running_bytes: u64,
    transmissions: u64,
}

/// Evaluates one codec over all windows; writes its JSONL curve and record.
pub fn run_codec(
    job: &Job<'_>,
    host: &mut CodecHost,
    index: usize,
    spec: &CodecSpec,
) -> Result<CodecRecord> {
    let label = spec.display_name();
    let started = chrono::Utc::now();
    let clock = Instant::now();
    let (codecs, plugins) = host
        .link_codecs(spec, &job.plan, &job.exp.base_dir)
        .with_context(|| format!("setting up codec `{label}`"))?;
    let link_labels: Vec<String> = codecs.iter().map(|c| c.label().to_string()).collect();
    let mut links = Links::new(&job.plan, codecs);
    let stem = format!("{index:02}-{}", file_stem_for(&label));
    let mut jsonl = JsonlWriter::create(job.run_dir.join(format!("{stem}.batches.jsonl")))?;
    let batch_size = job.exp.experiment.eval.batch_size;
    let bar = progress_bar(job.windows.len(), &label);
    let mut windows: Vec<WindowResult> = Vec::with_capacity(job.windows.len());
    let mut traffic = vec![LinkTraffic::default(); job.plan.links.len()];
    let mut model_tokens: u64 = 0;
    let (mut nll, mut scored) = (0f64, 0usize);
    for (b, batch) in job.windows.chunks(batch_size).enumerate() {
        let (results, batch_traffic) =
            eval_batch(&job.model.decoder, &job.tokens.ids, batch, &mut links)
                .with_context(|| format!("codec `{label}`, batch {b}"))?;
        let padded = batch.iter().map(Window::len).max().unwrap_or(0) as u64;
        model_tokens += batch.len() as u64 * padded;
        let batch_nll: f64 = results.iter().map(|r| r.nll).sum();
        let batch_scored: usize = results.iter().map(|r| r.scored).sum();
        nll += batch_nll;
        scored += batch_scored;
        let mut batch_total = LinkTraffic::default();
        for (t, bt) in traffic.iter_mut().zip(&batch_traffic) {
            t.add(bt);
            batch_total.add(bt);
        }
        let running_bytes: u64 = traffic.iter().map(|t| t.bytes).sum();
        let transmissions: u64 = traffic.iter().map(|t| t.transmissions).sum();
        jsonl.write(&BatchLine {
            codec: &label,
            batch: b,
            windows: batch.len(),
            tokens_processed: batch.len() as u64 * padded,
            tokens_scored: batch_scored,
            batch_nll,
            batch_ppl: perplexity(batch_nll, batch_scored),
            running_ppl: perplexity(nll, scored),
            bytes: batch_total.bytes,
            running_bytes,
            transmissions,
        })?;
        windows.extend(results);
        bar.inc(batch.len() as u64);
        bar.set_message(format!(
            "PPL {:.3} (batch {:.3}) | {:.0} B/tok | {} | {} tx",
            perplexity(nll, scored),
            perplexity(batch_nll, batch_scored),
            running_bytes as f64 / model_tokens.max(1) as f64,
            human_bytes(running_bytes),
            transmissions
        ));
    }
    bar.finish();
    let mut total = LinkTraffic::default();
    traffic.iter().for_each(|t| total.add(t));
    let finished = chrono::Utc::now();
    let record = CodecRecord {
        run_id: job.run_id.clone(),
        splitbench_version: env!("CARGO_PKG_VERSION"),
        started: started.to_rfc3339(),
        finished: finished.to_rfc3339(),
        duration_s: clock.elapsed().as_secs_f64(),
        device: format!("{:?}", job.model.decoder.device()),
        codec: label.clone(),
        codec_spec: spec.clone(),
        config: job.exp.experiment.clone(),
        model: job.model.info.clone(),
        dataset: job.tokens.info.clone(),
        plan: job.plan.clone(),
        results: Results {
            ppl: perplexity(nll, scored),
            total_nll: nll,
            scored_tokens: scored,
            windows,
        },
        traffic: TrafficRecord {
            bytes_per_processed_token: total.bytes as f64 / model_tokens.max(1) as f64,
            bytes_per_scored_token: total.bytes as f64 / scored.max(1) as f64,
            total,
            model_tokens_processed: model_tokens,
            tokens_scored: scored,
            links: job
                .plan
                .links
                .iter()
                .zip(traffic)
                .zip(link_labels)
                .map(|((link, t), codec)| LinkRecord {
                    name: link.name.clone(),
                    codec,
                    bytes_per_processed_token: t.bytes as f64 / t.tokens_processed.max(1) as f64,
                    traffic: t,
                })
                .collect(),
        },
        plugins,
    };
    record::write_new_json(&job.run_dir.join(format!("{stem}.json")), &record)?;
    Ok(record)
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

/// Runs every codec of the experiment; prints the summary table.
pub fn run(exp: &LoadedExperiment) -> Result<Vec<CodecRecord>> {
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
    let (run_id, run_dir) =
        record::create_run_dir(&exp.resolve(&exp.experiment.output.dir), &stem)?;
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
    let job = Job {
        exp,
        model: &model,
        tokens: &tokens,
        windows,
        plan,
        run_id,
        run_dir,
    };
    let mut host = CodecHost::new(PluginSearch::from_env());
    let mut records = Vec::new();
    for (i, spec) in exp.experiment.codec.iter().enumerate() {
        records.push(run_codec(&job, &mut host, i, spec)?);
    }
    let rows: Vec<SummaryRow> = records.iter().map(SummaryRow::from_record).collect();
    println!("{}", summary_table(&rows));
    Ok(records)
}
