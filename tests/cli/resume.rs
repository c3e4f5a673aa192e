//! Interrupted and killed runs: Ctrl-C, --resume, the same numbers as an unbroken run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{
    bin, newest_run, records_of, require_builtins, splitbench, synth_model, tempdir, text,
};

/// Waits until `path` holds at least `lines` lines (bounded: 60 s). Polls often: the run it
/// watches has to be stopped well before its end.
fn wait_for_lines(path: &Path, lines: usize) {
    for _ in 0..12_000 {
        let n = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    panic!("{} never reached {lines} lines", path.display());
}

fn resume_experiment(dir: &Path) -> PathBuf {
    synth_model(dir);
    let para = "Resumable runs lose no finished work, whatever stops them. ";
    std::fs::write(dir.join("long.txt"), para.repeat(150)).unwrap();
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        "[model]\npath = \"tiny\"\n[data]\npath = \"long.txt\"\nformat = \"text\"\n[eval]\nmax_length = 128\nstride = 64\nbatch_size = 1\n\
         [[codec]]\nplugin = \"intq\"\ncodec = \"int8-token\"\n[[codec]]\nplugin = \"topk\"\ncodec = \"topk\"\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    exp
}

#[test]
fn killed_run_resumes_to_the_same_numbers() {
    require_builtins();
    let dir = tempdir("resume");
    let exp = resume_experiment(&dir);
    let exp_s = exp.to_str().unwrap();
    let out = splitbench(&["run", exp_s]);
    assert!(out.status.success(), "{}", text(&out));
    let full = newest_run(&dir.join("out"), &[]);

    let mut child = Command::new(bin())
        .args(["run", exp_s])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let partial = loop {
        let runs: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        if let Some(p) = runs.into_iter().find(|p| p != &full) {
            break p;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    wait_for_lines(&partial.join("02-topk.batches.jsonl"), 3);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();

    // Another config is refused, with what differs.
    let refused = splitbench(&[
        "run",
        exp_s,
        "--resume",
        partial.to_str().unwrap(),
        "--set",
        "eval.stride=32",
    ]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).contains("the experiment config differs"),
        "{}",
        text(&refused)
    );

    let out = splitbench(&["run", exp_s, "--resume", partial.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("resuming"), "{}", text(&out));
    for (a, b) in records_of(&full).iter().zip(records_of(&partial)) {
        assert_eq!(
            a["results"]["total_nll"], b["results"]["total_nll"],
            "{}",
            a["codec"]
        );
        assert_eq!(a["results"]["windows"], b["results"]["windows"]);
        assert_eq!(a["traffic"]["bytes"], b["traffic"]["bytes"]);
        assert_eq!(a["divergence"], b["divergence"]);
    }
    let again = splitbench(&["run", exp_s, "--resume", partial.to_str().unwrap()]);
    assert!(
        text(&again).contains("nothing to resume"),
        "{}",
        text(&again)
    );
}

#[test]
fn ctrl_c_finishes_the_batch_and_writes_incomplete_records() {
    require_builtins();
    let dir = tempdir("sigint");
    let exp = resume_experiment(&dir);
    let exp_s = exp.to_str().unwrap();
    let child = Command::new(bin())
        .args(["run", exp_s])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let run_dir = loop {
        if let Some(Ok(e)) = std::fs::read_dir(dir.join("out"))
            .ok()
            .and_then(|mut d| d.next())
        {
            break e.path();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    wait_for_lines(&run_dir.join("00-none.batches.jsonl"), 2);
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("interrupted") && t.contains("--resume"), "{t}");
    let partial: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("01-int8-token.partial.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(partial["incomplete"], true);
    let out = splitbench(&["run", exp_s, "--resume", run_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(run_dir.join("01-int8-token.json").is_file());
}
