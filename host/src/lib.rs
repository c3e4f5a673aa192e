//! splitbench: runs a decoder LLM split into simulated nodes, sends the hidden state through a
//! codec plugin at every node boundary, and reports perplexity, traffic and divergence.
//!
//! The modules follow the pipeline; each depends only on those after it in this list:
//!
//! - `cli` — the arguments; calls one of `commands`.
//! - `commands` — one module per subcommand (`run`, `report`, `bench`, …).
//! - `sweep` — the batch loop of `run`: baseline and codecs, resume, interrupts, records.
//! - `output` — the run folder and everything written into it: records, summary, plots.
//! - `setup` — loading the model (safetensors or GGUF, local or Hub) and the tokens.
//! - `stats` — KLD, agreement and intervals over scored tokens.
//! - `eval` — the sliding-window protocol, the split forward pass, scoring.
//! - `link` — the codec at each link (plugins, host and device paths) and its traffic.
//! - `plan` — which node runs which layer; where the links are.
//! - `model` — the decoder and its weights.
//! - `config` — the experiment TOML as types, with `--set` and validation.
//! - `digest` — content hashes for records.
//! - `profile` — time per phase of a forward pass, for `bench --profile`.
//!
//! docs/architecture.md draws the same map with the plugin ABI beside it.

pub mod cli;
mod commands;
mod config;
mod digest;
mod eval;
mod link;
mod model;
mod output;
mod plan;
mod profile;
#[cfg(test)]
mod scratch;
mod setup;
mod stats;
mod sweep;
