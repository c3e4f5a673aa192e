//! Short evals of a real model, SmolLM2-135M-Instruct (GGUF, Q4_1), on WikiText-2 test.
//! The model comes from `scripts/fetch-smollm2.sh` (`.ci/run` runs it): found through
//! `SPLITBENCH_SMOLLM2_GGUF` or in `models/`; the text is the WikiText-2 built into splitbench.
//! Without the model these tests print SKIPPED and return; in CI they fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{missing_input, root, tempdir};

fn model(test: &str) -> Option<PathBuf> {
    let gguf = std::env::var_os("SPLITBENCH_SMOLLM2_GGUF")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if !gguf.is_file() {
        missing_input(
            test,
            format!(
                "model `{}` not found (run scripts/fetch-smollm2.sh, or set \
                 SPLITBENCH_SMOLLM2_GGUF)",
                gguf.display()
            ),
        );
        return None;
    }
    Some(gguf)
}

/// Runs an experiment with the given eval and codec sections; returns the records by codec.
fn run(gguf: &Path, stride: usize, codecs: &str) -> Vec<serde_json::Value> {
    let dir = tempdir("real");
    let config = format!(
        "[model]\ngguf = {:?}\nweights = \"dequantize\"\ndtype = \"f32\"\n\
         [data]\nfirst_k_tokens = 4096\n\
         [eval]\nmax_length = 1024\nstride = {stride}\nbatch_size = 2\n\
         {codecs}\n[output]\ndir = \"out\"\n",
        gguf.display().to_string(),
    );
    std::fs::write(dir.join("exp.toml"), config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_splitbench"))
        .arg("run")
        .arg(dir.join("exp.toml"))
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let run_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut names: Vec<PathBuf> = std::fs::read_dir(&run_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn ppl(r: &serde_json::Value) -> f64 {
    r["results"]["ppl"].as_f64().unwrap()
}

const NONE_IDENTITY_FP16: &str = "[[codec]]\nname = \"none\"\n\
    [[codec]]\nplugin = \"identity\"\ncodec = \"identity\"\n\
    [[codec]]\nplugin = \"cast\"\ncodec = \"fp16\"\n";

#[test]
fn disjoint_windows_none_identity_fp16_and_repeatability() {
    let Some(gguf) = model("disjoint_windows_none_identity_fp16_and_repeatability") else {
        return;
    };
    let records = run(&gguf, 1024, NONE_IDENTITY_FP16);
    let (none, identity, fp16) = (&records[0], &records[1], &records[2]);
    let p = ppl(none);
    assert!(
        (10.0..40.0).contains(&p),
        "PPL {p} is outside the plausible band for SmolLM2-135M"
    );
    // Disjoint windows: 4 windows of 1024, each loses its first token.
    assert_eq!(none["results"]["scored_tokens"], 4096 - 4);
    assert_eq!(
        none["results"]["total_nll"],
        identity["results"]["total_nll"]
    );
    let rel = (ppl(fp16) / p - 1.0).abs();
    assert!(
        rel < 1e-3,
        "fp16 PPL {} differs from none {p} by {rel}",
        ppl(fp16)
    );
    // fp16 halves the f32 hidden state on the wire.
    assert_eq!(
        fp16["traffic"]["bytes"].as_u64().unwrap() * 2,
        none["traffic"]["bytes"].as_u64().unwrap()
    );
    // A second process gives bit-identical NLL.
    let again = run(&gguf, 1024, "[[codec]]\nname = \"none\"\n");
    assert_eq!(
        again[0]["results"]["total_nll"],
        none["results"]["total_nll"]
    );
}

#[test]
fn sliding_windows_score_every_token_but_the_first() {
    let Some(gguf) = model("sliding_windows_score_every_token_but_the_first") else {
        return;
    };
    let records = run(&gguf, 512, "[[codec]]\nname = \"none\"\n");
    let p = ppl(&records[0]);
    assert!((10.0..40.0).contains(&p), "PPL {p}");
    assert_eq!(records[0]["results"]["scored_tokens"], 4095);
}
