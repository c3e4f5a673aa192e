//! splitbench: runs a decoder LLM split into simulated nodes, sends the hidden state through a
//! codec plugin at every node boundary, and reports perplexity, traffic and divergence.

pub mod bench;
pub mod cli;
pub mod codec_host;
pub mod config;
#[cfg(feature = "cuda")]
pub mod cuda_link;
pub mod data;
pub mod device;
pub mod device_check;
pub mod eval;
pub mod model;
pub mod plan;
pub mod plots;
pub mod plugin_cmds;
pub mod plugin_search;
pub mod protocol;
pub mod record;
pub mod report;
pub mod run;
pub mod stats;
pub mod synth;
