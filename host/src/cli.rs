//! Command-line interface.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand};

use crate::link::PluginSearch;

#[derive(Debug, Parser)]
#[command(
    name = "splitbench",
    version,
    about = "What compressing the hidden states between nodes does to a split LLM"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// On an error, also print where it came from (the chain of causes and a backtrace); same
    /// as SPLITBENCH_BACKTRACE=1. RUST_BACKTRACE alone does not change what is printed.
    #[arg(long, global = true)]
    pub verbose: bool,
}

impl Cli {
    /// Whether errors are printed with their backtrace (`--verbose` or SPLITBENCH_BACKTRACE=1).
    pub fn wants_backtrace(&self) -> bool {
        self.verbose
            || std::env::var("SPLITBENCH_BACKTRACE").is_ok_and(|v| !v.is_empty() && v != "0")
    }
}

/// The error as one paragraph: each cause once, in order, without backtraces. A cause whose
/// text an earlier one already quotes (a wrapper that prints its source) is left out.
pub fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::from("splitbench: error: ");
    for (i, cause) in err.chain().enumerate() {
        let text = match cause.downcast_ref::<candle_core::Error>() {
            Some(e) => without_backtrace(e).to_string(),
            None => cause.to_string(),
        };
        let text = text.trim();
        if text.is_empty() || (i > 0 && message.contains(text)) {
            continue;
        }
        if i > 0 {
            message.push_str(": ");
        }
        message.push_str(text);
    }
    message
}

/// candle's error without the backtrace it captured (it prints it as part of the message).
fn without_backtrace(e: &candle_core::Error) -> &candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(inner),
        other => other,
    }
}

/// One codec of one plugin, as `codec-check` and `codec-roundtrip` name it.
#[derive(Debug, Args)]
pub struct CodecChoice {
    /// Plugin path or name on the search path.
    #[arg(long)]
    plugin: String,
    #[arg(long)]
    codec: String,
    /// Codec params as a JSON object.
    #[arg(long, default_value = "{}")]
    params: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run an experiment TOML: perplexity and traffic for each codec.
    Run {
        config: PathBuf,
        /// Override a config value: section.key=value (repeatable).
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
        /// Same as --set data.first_k_tokens=N.
        #[arg(long)]
        first_k_tokens: Option<usize>,
        /// Same as --set eval.batch_size=N.
        #[arg(long)]
        batch_size: Option<usize>,
        /// Same as --set model.dtype=D.
        #[arg(long, value_enum)]
        dtype: Option<crate::config::ModelDtype>,
        /// Only read and validate the experiment, print it resolved, and exit.
        #[arg(long)]
        check: bool,
        /// Also run each codec at one link at a time (the others uncompressed), to see which
        /// link hurts.
        #[arg(long)]
        per_link: bool,
        /// Continue an interrupted run in this folder (output.dir/<run id>).
        #[arg(long, value_name = "RUN_DIR")]
        resume: Option<PathBuf>,
        /// Evaluate only shard I of N (contiguous ranges of batches), into its own run folder;
        /// `splitbench merge` combines the N folders into the whole run.
        #[arg(long, value_name = "I/N")]
        shard: Option<crate::eval::Shard>,
        /// On a GPU: copy every device-path wire to the host, check that the host path
        /// writes the same bytes and decodes it to the same state (same as --set
        /// eval.verify_wire=true).
        #[arg(long)]
        verify_wire: bool,
    },
    /// Combine the run folders of `run --shard 0/N … N-1/N` into the folder of the whole run
    /// (records, summary and plots), checking that they are one run's shards, each once.
    Merge {
        /// The merged run's folder (must not exist).
        out: PathBuf,
        /// The shards' run folders, in any order.
        #[arg(required = true)]
        shards: Vec<PathBuf>,
    },
    /// Print the summary table and draw the plots again from a finished run's records.
    Report {
        /// The run folder (output.dir/<run id>).
        dir: PathBuf,
        /// Also print, per codec, llama-perplexity's --kl-divergence statistics (PPL ± with
        /// covariance, KLD and Δp percentiles, same top p), reverse KLD and top-10 overlap.
        #[arg(long)]
        detail: bool,
    },
    /// List the plugins on the search path (SPLITBENCH_PLUGIN_PATH, then the binary's folder).
    Plugins,
    /// Plugin commands.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Run the conformance kit on a codec and print size, error and speed.
    CodecCheck {
        #[command(flatten)]
        codec: CodecChoice,
        /// Shape of the synthetic hidden state: batch,tokens,hidden.
        #[arg(long, default_value = "2,2048,1024", value_parser = parse_shape)]
        shape: [usize; 3],
        #[arg(long, default_value = "bf16")]
        dtype: String,
    },
    /// Feed the tensors of a safetensors file (hidden states) through a codec: decoded tensors
    /// and wire sizes out.
    CodecRoundtrip {
        #[command(flatten)]
        codec: CodecChoice,
        /// Tensors `[batch, tokens, hidden]` (or `[tokens, hidden]`) in f32, f16 or bf16.
        #[arg(long)]
        input: PathBuf,
        /// Decoded tensors under the same names; metadata `wire_bytes` gives each wire length.
        #[arg(long)]
        output: PathBuf,
    },
    /// Measure forward-pass throughput (tokens/s) of an experiment's model and first codec.
    Bench {
        config: PathBuf,
        /// Batches to time (after one warm-up batch).
        #[arg(long, default_value_t = 3)]
        batches: usize,
        /// Skip the comparison of one sweep against separate runs.
        #[arg(long)]
        no_sweep: bool,
        /// Then time the same batches again with the device synchronized around each phase
        /// (embedding, matmuls, attention, norms and elementwise, head, scoring, links) and
        /// print each phase's share of that run's time.
        #[arg(long)]
        profile: bool,
        /// Also write the throughput rows as JSON here.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// Time the decode phase instead: greedy generation of `[generate]`'s prompts with a KV
        /// cache, ms per step (with --peer, beside Hugging Face `generate`).
        #[arg(long)]
        decode: bool,
        /// With --decode: timed rounds of each engine, alternating.
        #[arg(long, default_value_t = 3, requires = "decode")]
        rounds: usize,
        /// With --decode: the peer script (scripts/peer_hf.py) that times Hugging Face
        /// `generate` on the same model, prompts, dtype and threads, run with $PYTHON or python3.
        #[arg(long, value_name = "SCRIPT", requires = "decode")]
        peer: Option<PathBuf>,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Tokenize an experiment's data as `run` does; print the count and text hash, write the ids.
    Tokenize {
        config: PathBuf,
        /// Write {"text_sha256", "ids"} as JSON here.
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Save the uncompressed hidden states entering each link, for the first tokens of the
    /// experiment's text, as safetensors (one tensor `[1, tokens, hidden]` per link).
    Capture {
        config: PathBuf,
        #[arg(long)]
        out: PathBuf,
        /// Tokens from the start of the text (at most eval.max_length).
        #[arg(long, default_value_t = 128)]
        tokens: usize,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Run the first batch on the CPU and on model.device (a GPU) and compare the logits.
    CheckDevice {
        config: PathBuf,
        /// Largest |Δlogit| allowed, relative to the largest |logit| (default: 1e-4 for f32,
        /// 1e-2 for f16, 5e-2 for bf16).
        #[arg(long)]
        bound: Option<f64>,
        #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
        set: Vec<String>,
    },
    /// Write a random-weight model (config.json, model.safetensors, tokenizer.json).
    SynthModel {
        /// Output folder.
        out: PathBuf,
        #[command(flatten)]
        shape: crate::model::synth::SynthShape,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Show one plugin file: name, version, plugin-api version, codecs and their parameters.
    Inspect { file: PathBuf },
}

fn parse_shape(s: &str) -> Result<[usize; 3], String> {
    let dims: Vec<usize> = s
        .split(',')
        .map(|d| d.trim().parse::<usize>().map_err(|e| format!("`{d}`: {e}")))
        .collect::<Result<_, _>>()?;
    dims.try_into().map_err(|d: Vec<usize>| {
        format!("expected 3 dimensions batch,tokens,hidden, got {}", d.len())
    })
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            config,
            mut set,
            first_k_tokens,
            batch_size,
            dtype,
            check,
            per_link,
            resume,
            shard,
            verify_wire,
        } => {
            if verify_wire {
                set.push("eval.verify_wire=true".into());
            }
            if let Some(k) = first_k_tokens {
                set.push(format!("data.first_k_tokens={k}"));
            }
            if let Some(b) = batch_size {
                set.push(format!("eval.batch_size={b}"));
            }
            if let Some(d) = dtype {
                set.push(format!("model.dtype=\"{d}\""));
            }
            let exp = crate::setup::load_experiment(&config, &set)?;
            if check {
                println!("{}", toml::to_string_pretty(&exp.experiment)?);
                return Ok(());
            }
            crate::commands::run::run(&exp, per_link, resume.as_deref(), shard)?;
            Ok(())
        }
        Command::Merge { out, shards } => crate::commands::merge::merge(&out, &shards),
        Command::Report { dir, detail } => crate::commands::report::report(&dir, detail),
        Command::Plugins => crate::commands::plugins::list(&PluginSearch::from_env()),
        Command::Plugin {
            command: PluginCommand::Inspect { file },
        } => crate::commands::plugins::inspect(&file),
        Command::CodecCheck {
            codec,
            shape,
            dtype,
        } => {
            let dtype = dtype.parse().map_err(anyhow::Error::msg)?;
            crate::commands::plugins::codec_check(
                &PluginSearch::from_env(),
                &crate::commands::plugins::CheckArgs {
                    plugin: &codec.plugin,
                    codec: &codec.codec,
                    params: &codec.params,
                    shape,
                    dtype,
                },
            )
        }
        Command::CodecRoundtrip {
            codec,
            input,
            output,
        } => crate::commands::codec_roundtrip::codec_roundtrip(
            &PluginSearch::from_env(),
            &crate::commands::codec_roundtrip::RoundtripArgs {
                plugin: &codec.plugin,
                codec: &codec.codec,
                params: &codec.params,
                input: &input,
                output: &output,
            },
        ),
        Command::Bench {
            config,
            batches,
            no_sweep,
            profile,
            json,
            decode,
            rounds,
            peer,
            set,
        } => {
            if batches == 0 || rounds == 0 {
                bail!("--batches and --rounds must be at least 1");
            }
            let exp = crate::setup::load_experiment(&config, &set)?;
            if decode {
                let options = crate::commands::bench_decode::DecodeOptions {
                    rounds,
                    peer: peer.as_deref(),
                    profile,
                };
                return crate::commands::bench_decode::bench_decode(&exp, &options);
            }
            let options = crate::commands::bench::BenchOptions {
                batches,
                sweep: !no_sweep,
                profile,
                json: json.as_deref(),
            };
            crate::commands::bench::bench(&exp, &options)
        }
        Command::Tokenize { config, out, set } => {
            let exp = crate::setup::load_experiment(&config, &set)?;
            crate::commands::tokenize::tokenize(&exp, out.as_deref())
        }
        Command::Capture {
            config,
            out,
            tokens,
            set,
        } => {
            let exp = crate::setup::load_experiment(&config, &set)?;
            crate::commands::capture::capture(&exp, &out, tokens)
        }
        Command::CheckDevice { config, bound, set } => {
            let exp = crate::setup::load_experiment(&config, &set)?;
            crate::commands::check_device::check_device(&exp, bound)
        }
        Command::SynthModel { out, shape } => {
            crate::commands::synth_model::synth_model(&out, &shape)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_prints_each_cause_once_without_backtrace() {
        let os = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = anyhow::Error::new(std::io::Error::new(os.kind(), os.to_string()))
            .context(format!("cannot read `x.txt`: {os}"))
            .context("loading the data");
        assert_eq!(
            error_message(&err),
            format!("splitbench: error: loading the data: cannot read `x.txt`: {os}")
        );
        let traced = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("shape mismatch".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert!(traced.to_string().len() > "shape mismatch".len() + 20);
        let err = anyhow::Error::new(traced).context("running layer 3");
        assert_eq!(
            error_message(&err),
            "splitbench: error: running layer 3: shape mismatch"
        );
    }
}
