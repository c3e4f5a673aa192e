//! `splitbench plugins`, `splitbench plugin inspect` and `splitbench codec-check`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use splitbench_plugin_api::{testkit, Codec, DType, Plugin};

use crate::link::PluginSearch;

/// Lists every shared library on the search path: what it offers, or why it failed to load.
pub fn list(search: &PluginSearch) -> Result<()> {
    println!(
        "search path: {}",
        search
            .dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    );
    let candidates = search.candidates();
    if candidates.is_empty() {
        println!("no plugins found; build them with `cargo build --release --workspace`");
    }
    for path in candidates {
        match Plugin::load(&path) {
            Ok(plugin) => {
                let info = plugin.info();
                println!(
                    "{}\n    {} {} (plugin-api {}): {}\n    codecs: {}",
                    path.display(),
                    info.name,
                    info.version,
                    plugin.api_version(),
                    info.description,
                    info.codec_names().join(", ")
                );
            }
            Err(e) => println!("{}\n    not loaded: {e}", path.display()),
        }
    }
    Ok(())
}

pub fn inspect(path: &Path) -> Result<()> {
    let plugin = Plugin::load(path)?;
    let info = plugin.info();
    println!("file:        {}", path.display());
    println!("plugin:      {} {}", info.name, info.version);
    println!("plugin-api:  {}", plugin.api_version());
    println!("description: {}", info.description);
    match plugin.device_entry_problem() {
        None => println!("device:      CUDA entry point present"),
        Some(problem) => println!("device:      none ({problem}); codecs run in host memory"),
    }
    for codec in &info.codecs {
        println!("\ncodec `{}`: {}", codec.name, codec.description);
        if plugin.needs_calibration(&codec.name, "{}").unwrap_or(false) {
            println!(
                "    calibrated: fitted at each link on the calibration text before a run \
                 ([calibration])"
            );
        }
        if plugin.has_device_entry() {
            let device = match plugin.new_device_codec(&codec.name, "{}") {
                Ok(Some(_)) => "yes (used when the model runs on a GPU)".to_string(),
                Ok(None) => "no (host path only)".to_string(),
                Err(e) => format!("unknown ({e})"),
            };
            println!("    device path with default params: {device}");
        }
        if codec.params.is_empty() {
            println!("    (no parameters)");
        }
        for p in &codec.params {
            println!(
                "    {:<12} default {:<10} {}",
                p.name,
                p.default.to_string(),
                p.description
            );
        }
    }
    Ok(())
}

pub struct CheckArgs<'a> {
    pub plugin: &'a str,
    pub codec: &'a str,
    pub params: &'a str,
    pub shape: [usize; 3],
    pub dtype: DType,
}

/// Runs the conformance kit on a loaded plugin and prints the measurement table.
pub fn codec_check(search: &PluginSearch, args: &CheckArgs<'_>) -> Result<()> {
    let path = search.resolve(args.plugin, Path::new("."))?;
    let plugin = Plugin::load(&path)?;
    if plugin.needs_calibration(args.codec, args.params)? {
        bail!(
            "codec `{}` is calibrated: it is fitted to a link's real activations, which \
             codec-check has none of; run it in an experiment (its record has the error per link), \
             and check the family with splitbench_plugin_api::testkit::assert_calibrated_conformance",
            args.codec
        );
    }
    // Fail early, with the plugin's own message, on unknown codecs or bad params.
    let mut codec = plugin.new_codec(args.codec, args.params)?;
    println!(
        "{} {} `{}` params {}  ({})",
        plugin.info().name,
        plugin.info().version,
        args.codec,
        args.params,
        path.display()
    );
    let checks = testkit::conformance(|| {
        plugin
            .new_codec(args.codec, args.params)
            .map(|c| Box::new(c) as Box<dyn Codec>)
            .map_err(|e| splitbench_plugin_api::CodecError::new(e.to_string()))
    });
    let mut failed = 0;
    for check in &checks {
        match &check.outcome {
            Ok(()) => println!("  ok    {}", check.name),
            Err(e) => {
                failed += 1;
                println!("  FAIL  {}: {e}", check.name);
            }
        }
    }
    let m = testkit::measure(&mut codec, args.shape, args.dtype, 1, 3)
        .with_context(|| format!("measuring `{}` on shape {:?}", args.codec, args.shape))?;
    println!("\n{}", measurement_header());
    println!("{}", measurement_row(args.codec, &m));
    if failed > 0 {
        bail!(
            "{failed} conformance check(s) failed for codec `{}`",
            args.codec
        );
    }
    Ok(())
}

pub fn measurement_header() -> String {
    format!(
        "{:<24} {:>8} {:>10} {:>7} {:>10} {:>9} {:>11} {:>9} {:>9}",
        "codec", "dtype", "B/elem", "ratio", "rel L2", "SNR dB", "max abs", "enc GB/s", "dec GB/s"
    )
}

pub fn measurement_row(name: &str, m: &testkit::Measurement) -> String {
    format!(
        "{:<24} {:>8} {:>10.4} {:>6.2}x {:>10.3e} {:>9.2} {:>11.4e} {:>9.3} {:>9.3}",
        name,
        m.dtype.as_str(),
        m.bytes_per_element,
        m.ratio,
        m.error.rel_l2,
        m.error.snr_db,
        m.error.max_abs,
        m.encode_gbps,
        m.decode_gbps
    )
}
