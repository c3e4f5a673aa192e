//! The subcommands, one module each; `cli` parses the arguments and calls one of these.

pub mod bench;
pub mod capture;
pub mod check_device;
pub mod codec_roundtrip;
pub mod merge;
pub mod plugins;
pub mod report;
pub mod run;
pub mod synth_model;
pub mod tokenize;
