//! Calibrated codecs: fitted at each link on a calibration text that is never the evaluation
//! text; the fitted state kept in the run folder, reused by resume and carried by merge.

use std::path::{Path, PathBuf};

use serde_json::Value;
use splitbench_plugin_api::Plugin;

use crate::util::{bin, lib_name, require_builtins, splitbench, synth_model, tempdir, text};

/// The built-in WikiText-2 test split, a tiny model on three nodes, pca fitted on 2048
/// tokens of the validation split.
fn experiment(dir: &Path, codecs: &str, calibration: &str) -> PathBuf {
    synth_model(dir);
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            "[model]\npath = \"tiny\"\n[data]\nfirst_k_tokens = 640\n[eval]\nmax_length = 128\n\
             stride = 64\nbatch_size = 2\n[plan]\nnodes = 3\n[calibration]\ntokens = 2048\n\
             {calibration}{codecs}[output]\ndir = \"out\"\n"
        ),
    )
    .unwrap();
    exp
}

const PCA: &str =
    "[[codec]]\nplugin = \"learned\"\ncodec = \"pca\"\nparams = { rank = 8, coeff = \"f16\" }\n";

fn run(exp: &Path, args: &[&str]) -> (PathBuf, String) {
    let mut all = vec!["run", exp.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = splitbench(&all);
    let t = text(&out);
    assert!(out.status.success(), "{args:?}: {t}");
    let line = t.lines().find(|l| l.contains("records in ")).unwrap();
    (
        PathBuf::from(line.rsplit("records in ").next().unwrap().trim()),
        t,
    )
}

fn states(run: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(run.join("calibration"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The run's records (`NN-<codec>.json`), in codec order.
fn records_of(run: &Path) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.ends_with(".json") && name.as_bytes()[0].is_ascii_digit()
        })
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect()
}

fn results(record: &Value) -> (&Value, &Value) {
    (&record["results"]["total_nll"], &record["divergence"])
}

#[test]
fn a_calibrated_codec_is_fitted_on_another_split_and_its_state_kept_in_the_run() {
    require_builtins();
    let dir = tempdir("calibrated");
    let exp = experiment(&dir, PCA, "");
    let (run_dir, out) = run(&exp, &[]);
    assert!(out.contains("splitbench: fitted `pca`"), "{out}");
    let records = records_of(&run_dir);
    let pca = &records[1];
    assert!(pca["dataset"]["source"]
        .as_str()
        .unwrap()
        .ends_with("/test"));
    let cal = &pca["calibration"];
    assert!(
        cal["text"]["source"]
            .as_str()
            .unwrap()
            .ends_with("/validation"),
        "{cal}"
    );
    assert_eq!(cal["text"]["tokens"], 2048);
    let files = states(&run_dir);
    let links = cal["links"].as_array().unwrap();
    // Three nodes: two links forward and the one back to node 0 for the head.
    assert_eq!(links.len(), 3, "{cal}");
    assert_eq!(files.len(), 3);
    for (link, (_, bytes)) in links.iter().zip(&files) {
        assert_eq!(link["state_bytes"], bytes.len() as u64);
        assert_eq!(link["state_sha256"], crate::util::sha256_hex(bytes));
    }
    let total: u64 = links
        .iter()
        .map(|l| l["state_bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(cal["state_bytes"], total);
    // Mean and 8 directions of 32 values, in f32, at least, at each link.
    assert!(total >= 3 * 9 * 32 * 4, "{total}");
    assert!(records[0].get("calibration").is_none());
    let report = splitbench(&["report", run_dir.to_str().unwrap(), "--detail"]);
    let t = text(&report);
    assert!(report.status.success(), "{t}");
    assert!(
        t.contains(&format!("state sent once per link, {total} bytes in all")),
        "{t}"
    );
}

#[test]
fn a_resumed_run_reuses_the_fitted_state_and_merged_shards_carry_it() {
    require_builtins();
    let dir = tempdir("calibrated-resume");
    let exp = experiment(&dir, PCA, "");
    let (whole, _) = run(&exp, &[]);
    let shards: Vec<PathBuf> = (0..2)
        .map(|i| run(&exp, &["--shard", &format!("{i}/2")]).0)
        .collect();
    let merged = dir.join("merged");
    let out = splitbench(&[
        "merge",
        merged.to_str().unwrap(),
        shards[0].to_str().unwrap(),
        shards[1].to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(states(&merged), states(&whole));
    let (a, b) = (records_of(&whole), records_of(&merged));
    assert_eq!(results(&a[1]), results(&b[1]));
    assert_eq!(a[1]["calibration"], b[1]["calibration"]);

    // An interrupted run: the finished files gone, one batch left of each curve.
    let (partial, _) = run(&exp, &[]);
    for entry in std::fs::read_dir(&partial).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".batches.jsonl") {
            let first = std::fs::read_to_string(&path).unwrap();
            std::fs::write(&path, format!("{}\n", first.lines().next().unwrap())).unwrap();
        } else if name == "summary.json" || (name.ends_with(".json") && name != "run.json") {
            std::fs::remove_file(&path).unwrap();
        }
    }
    let (resumed, out) = run(&exp, &["--resume", partial.to_str().unwrap()]);
    assert_eq!(resumed, partial);
    assert!(
        !out.contains("fitted `pca`"),
        "fitted again on resume: {out}"
    );
    let c = records_of(&resumed);
    assert_eq!(results(&a[1]), results(&c[1]));
}

#[test]
fn calibrating_on_the_evaluation_text_is_refused() {
    require_builtins();
    let dir = tempdir("calibrated-leak");
    let exp = experiment(&dir, PCA, "split = \"test\"\n");
    let out = splitbench(&["run", exp.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the calibration text is the evaluation text"),
        "{}",
        text(&out)
    );
}

/// PCA at full rank with f16 coefficients rounds like fp16 does: its KLD stays within twice
/// fp16's.
#[test]
fn pca_at_full_rank_is_within_fp16s_kld() {
    require_builtins();
    let dir = tempdir("calibrated-full-rank");
    let codecs =
        "[[codec]]\nplugin = \"cast\"\ncodec = \"fp16\"\n[[codec]]\nplugin = \"learned\"\n\
                  codec = \"pca\"\nparams = { rank = 32, coeff = \"f16\" }\n";
    let exp = experiment(&dir, codecs, "");
    let (run_dir, _) = run(&exp, &[]);
    let records = records_of(&run_dir);
    let kld = |r: &Value| r["divergence"]["kld"]["mean"].as_f64().unwrap();
    let (fp16, pca) = (kld(&records[1]), kld(&records[2]));
    assert!(fp16 > 0.0);
    assert!(pca <= 2.0 * fp16, "pca {pca:e} vs fp16 {fp16:e}");
}

/// What a host from before calibration does with a calibrated codec: it calls the root
/// module's `new_codec`, which refuses, naming the codec.
#[test]
fn an_older_host_is_refused_a_calibrated_codec_by_name() {
    require_builtins();
    let so = bin()
        .parent()
        .unwrap()
        .join(lib_name("splitbench-codec-learned"));
    let plugin = Plugin::load(&so).unwrap();
    let err = plugin.new_codec("pca", "{}").err().unwrap().to_string();
    assert!(err.contains("codec `pca` must be calibrated"), "{err}");
    assert!(plugin.needs_calibration("pca", "{}").unwrap());
}
