//! Integration tests: each drives the built `splitbench` binary as a user would. Run after
//! `cargo build --workspace`, which puts the built-in plugins next to the binary where it finds
//! them.
//!
//! One module per area; a new test goes in the area it exercises, through `util`'s harness:
//! - `plugins`: listing, inspecting and loading plugin files (foreign, old, hostile ones too).
//! - `run`: experiments end to end on synthetic models; records, traffic.
//! - `bench`: throughput rows and what `bench` shares with `run`.
//! - `calibration`: calibrated codecs, their calibration text and fitted states.
//! - `errors`: bad configs and inputs, refused by name.
//! - `generate`: the decode phase (`[generate]`) through compressed links.
//! - `data`: the built-in WikiText-2 and text datasets from a local stand-in for the Hub.
//! - `hub`: models from a local stand-in for the Hugging Face Hub (`hub_server`).
//! - `resume`: interrupted and killed runs.
//! - `shards`: `run --shard` and `merge`, and the cluster scripts that call them.
//! - `gpu`: the device path, as far as a machine without a GPU can check it.
//! - `real_model`: short evals of SmolLM2-135M on WikiText-2 (SKIPPED without them).

mod bench;
mod calibration;
mod data;
mod errors;
mod generate;
mod gpu;
mod hub;
mod hub_server;
mod plugins;
mod real_model;
mod resume;
mod run;
mod shards;
mod util;
