//! Shards: a run split with `--shard I/N` and put together with `merge` gives the numbers of
//! the whole run; merge refuses what is not one run's shards, each once, finished.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::util::{assert_fails, bin, root, splitbench, synth_model, tempdir, text, write_text};

const EXPERIMENT: &str = "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n[eval]\nmax_length = 48\nstride = 24\nbatch_size = 2\n[[codec]]\nname = \"none\"\n[[codec]]\nplugin = \"intq\"\ncodec = \"int8-token\"\n[[codec]]\nplugin = \"topk\"\ncodec = \"topk\"\nparams = { fraction = 0.25 }\n[output]\ndir = \"out\"\n";

/// Measured times, and what is named after the folder: the only fields that may differ
/// between a whole run and its merged shards.
const NOT_COMPARED: [&str; 11] = [
    "run_id",
    "started",
    "finished",
    "duration_s",
    "encode_s",
    "decode_s",
    "transfer_s",
    "encode_gbps",
    "decode_gbps",
    "one_token_codec_ms",
    "generation_ms_per_token",
];

fn without_times(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !NOT_COMPARED.contains(&k.as_str()));
            map.values_mut().for_each(without_times);
        }
        Value::Array(items) => items.iter_mut().for_each(without_times),
        _ => {}
    }
}

fn json(path: &Path) -> Value {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    without_times(&mut v);
    v
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            without_times(&mut v);
            v
        })
        .collect()
}

/// The run folder a `splitbench run` printed.
fn run_folder(output: &str) -> PathBuf {
    let line = output
        .lines()
        .find(|l| l.contains("records in "))
        .unwrap_or_else(|| panic!("no run folder in:\n{output}"));
    PathBuf::from(line.rsplit("records in ").next().unwrap().trim())
}

fn run(dir: &Path, args: &[&str]) -> PathBuf {
    let exp = dir.join("exp.toml");
    let mut all = vec!["run", exp.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = splitbench(&all);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    run_folder(&text(&out))
}

fn files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(suffix))
        .collect();
    names.sort();
    names
}

fn merge(dir: &Path, name: &str, shards: &[&PathBuf]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec!["merge", out.to_str().unwrap()];
    args.extend(shards.iter().map(|s| s.to_str().unwrap()));
    let o = splitbench(&args);
    assert!(o.status.success(), "{}", text(&o));
    out
}

#[test]
fn three_shards_merged_equal_the_whole_run() {
    let dir = tempdir("shards");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(dir.join("exp.toml"), EXPERIMENT).unwrap();
    let whole = run(&dir, &[]);
    // Given in the wrong order on purpose: merge orders them by index.
    let shards: Vec<PathBuf> = [2, 0, 1]
        .iter()
        .map(|i| run(&dir, &["--shard", &format!("{i}/3")]))
        .collect();
    let merged = merge(&dir, "merged", &shards.iter().collect::<Vec<_>>());

    let records = files(&whole, ".json");
    assert_eq!(records, files(&merged, ".json"));
    assert_eq!(records.len(), 5, "{records:?}"); // 3 codecs, run.json, summary.json
    for name in &records {
        let (a, b) = (json(&whole.join(name)), json(&merged.join(name)));
        assert!(a == b, "{name} differs:\nwhole:  {a}\nmerged: {b}");
    }
    for name in files(&whole, ".batches.jsonl") {
        assert_eq!(
            jsonl(&whole.join(&name)),
            jsonl(&merged.join(&name)),
            "{name}"
        );
    }
    // Bit-identical total NLL (serde_json writes the shortest exact f64), windows in order.
    let base = json(&merged.join("00-none.json"));
    assert!(base["results"]["total_nll"].as_f64().unwrap() > 0.0);
    assert!(base["results"]["windows"].as_array().unwrap().len() > 6);
    // Each shard holds its part only, and says which.
    let part = json(&shards[1].join("00-none.json"));
    assert_eq!(part["shard"], serde_json::json!({"index": 0, "count": 3}));
    let windows = |v: &Value| v["results"]["windows"].as_array().unwrap().len();
    let sum: usize = shards
        .iter()
        .map(|s| windows(&json(&s.join("00-none.json"))))
        .sum();
    assert_eq!(sum, windows(&base));
}

#[test]
fn merge_refuses_what_is_not_one_finished_run() {
    let dir = tempdir("badshards");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(dir.join("exp.toml"), EXPERIMENT).unwrap();
    let s: Vec<PathBuf> = (0..3)
        .map(|i| run(&dir, &["--shard", &format!("{i}/3")]))
        .collect();
    let out = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let arg = |p: &PathBuf| p.to_str().unwrap().to_string();
    let merge_fails = |shards: &[&PathBuf], expected: &[&str]| {
        let o = out("never");
        let mut args = vec!["merge".to_string(), o.clone()];
        args.extend(shards.iter().map(|p| arg(p)));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_fails(&refs, expected);
        assert!(!Path::new(&o).exists(), "a refused merge wrote {o}");
    };
    merge_fails(&[&s[0], &s[2]], &["shard 1/3 of this run is missing"]);
    merge_fails(&[&s[0], &s[1], &s[1], &s[2]], &["shard 1/3 is given twice"]);
    // A shard of another experiment (another stride).
    std::fs::write(
        dir.join("exp.toml"),
        EXPERIMENT.replace("stride = 24", "stride = 48"),
    )
    .unwrap();
    let other = run(&dir, &["--shard", "1/3"]);
    merge_fails(
        &[&s[0], &other, &s[2]],
        &["shards of different runs", "experiment config differs"],
    );
    // A whole run is no shard.
    let whole = run(&dir, &[]);
    merge_fails(&[&whole], &["holds a whole run (made without --shard)"]);
    // An unfinished shard: its last batches and records gone, as after a kill.
    std::fs::write(dir.join("exp.toml"), EXPERIMENT).unwrap();
    let cut = &s[1];
    for name in files(cut, ".json") {
        if name != "run.json" {
            std::fs::remove_file(cut.join(name)).unwrap();
        }
    }
    for name in files(cut, ".batches.jsonl") {
        let text = std::fs::read_to_string(cut.join(&name)).unwrap();
        let first = text.lines().next().unwrap();
        std::fs::write(cut.join(&name), format!("{first}\n")).unwrap();
    }
    merge_fails(
        &[&s[0], cut, &s[2]],
        &["shard 1/3", "did not finish", "--resume"],
    );
    // Resumed as another shard: refused; as its own: finishes, and the merge goes through.
    let exp = dir.join("exp.toml");
    assert_fails(
        &[
            "run",
            exp.to_str().unwrap(),
            "--shard",
            "2/3",
            "--resume",
            cut.to_str().unwrap(),
        ],
        &["it ran shard 1/3, this run asks for shard 2/3"],
    );
    let o = splitbench(&[
        "run",
        exp.to_str().unwrap(),
        "--shard",
        "1/3",
        "--resume",
        cut.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let merged = merge(&dir, "merged", &[&s[0], cut, &s[2]]);
    assert!(merged.join("summary.json").is_file());
    // More shards than batches.
    assert_fails(
        &["run", exp.to_str().unwrap(), "--shard", "0/999"],
        &["--shard 0/999", "at most"],
    );
    let o = splitbench(&["run", exp.to_str().unwrap(), "--shard", "3/3"]);
    assert_eq!(o.status.code(), Some(2), "a usage error: {}", text(&o));
    assert!(text(&o).contains("`3/3` is not a shard"), "{}", text(&o));
}

/// The command line a Kubernetes manifest's container runs (its `args` entry that calls a
/// cluster script), to run here with the pod's variables set by hand.
fn manifest_command(manifest: &str) -> String {
    let text = std::fs::read_to_string(root().join("scripts/cluster").join(manifest)).unwrap();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("- exec scripts/cluster/"))
        .unwrap_or_else(|| panic!("{manifest} runs no cluster script"));
    line.trim_start().trim_start_matches("- ").to_string()
}

fn bash(script: &str, args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .current_dir(root())
        .env("SPLITBENCH", bin())
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{script} {args:?} {env:?}: {t}");
    t
}

/// The Slurm and Kubernetes scripts of docs/cluster.md, run with the index each scheduler
/// would set, set by hand (no scheduler here): shards, a requeued finished shard, a
/// restarted unfinished one, and the merge, whose numbers equal the whole run's.
#[test]
fn cluster_scripts_shard_resume_and_merge() {
    let dir = tempdir("cluster");
    synth_model(&dir);
    write_text(&dir);
    let exp = dir.join("exp.toml");
    std::fs::write(&exp, EXPERIMENT).unwrap();
    let whole = run(&dir, &[]);
    let total_nll =
        |run: &Path| json(&run.join("01-int8-token.json"))["results"]["total_nll"].clone();

    let slurm = dir.join("slurm");
    let task = |i: usize| {
        let env = [
            ("SLURM_ARRAY_TASK_ID", i.to_string()),
            ("SLURM_ARRAY_TASK_COUNT", "3".to_string()),
        ];
        let args = [exp.to_str().unwrap(), slurm.to_str().unwrap()];
        bash("scripts/cluster/slurm-shards.sbatch", &args, &env)
    };
    (0..3).for_each(|i| {
        task(i);
    });
    assert!(
        task(1).contains("shard 1/3: finished in"),
        "a requeued task redoes nothing"
    );
    // A task killed after its first batch: restarted, it resumes its folder.
    let cut = std::fs::read_dir(slurm.join("shard-2"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for name in files(&cut, ".json") {
        if name != "run.json" {
            std::fs::remove_file(cut.join(name)).unwrap();
        }
    }
    for name in files(&cut, ".batches.jsonl") {
        let text = std::fs::read_to_string(cut.join(&name)).unwrap();
        std::fs::write(
            cut.join(&name),
            format!("{}\n", text.lines().next().unwrap()),
        )
        .unwrap();
    }
    assert!(task(2).contains("resuming"), "the restarted task resumes");
    bash(
        "scripts/cluster/slurm-merge.sbatch",
        &[slurm.to_str().unwrap()],
        &[],
    );
    assert_eq!(total_nll(&slurm.join("merged")), total_nll(&whole));

    let k8s = dir.join("k8s");
    let pod = |index: usize| {
        vec![
            ("EXPERIMENT", exp.to_str().unwrap().to_string()),
            ("SHARDS", "3".to_string()),
            ("OUT", k8s.to_str().unwrap().to_string()),
            ("JOB_COMPLETION_INDEX", index.to_string()),
        ]
    };
    let shard_command = manifest_command("k8s-shards.yaml");
    for i in 0..3 {
        bash("-c", &[&shard_command], &pod(i));
    }
    bash("-c", &[&manifest_command("k8s-merge.yaml")], &pod(0));
    assert_eq!(total_nll(&k8s.join("merged")), total_nll(&whole));
}
