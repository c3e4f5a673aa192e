//! Models from the Hugging Face Hub, served by a local HTTP server through HF_ENDPOINT.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::hub_server::{serve, Reply};
use crate::util::{bin, synth_model, tempdir, text, write_text};

/// Serves the files of `dir` as the model repo `repo` at `main`; returns the endpoint and the
/// count of requests answered.
fn serve_counted(dir: PathBuf, repo: &'static str) -> (String, Arc<AtomicUsize>) {
    let prefix = format!("/{repo}/resolve/main/");
    serve(
        move |path| match path.strip_prefix(&prefix).map(|f| dir.join(f)) {
            Some(f) if f.is_file() => Reply::File {
                body: std::fs::read(f).unwrap(),
                commit: "0123456789abcdef0123456789abcdef01234567".into(),
            },
            _ => Reply::NotFound,
        },
    )
}

fn serve_as_hub(dir: PathBuf, repo: &'static str) -> String {
    serve_counted(dir, repo).0
}

#[test]
fn hub_model_through_a_local_server_then_from_the_cache() {
    let dir = tempdir("hub");
    synth_model(&dir);
    write_text(&dir);
    let endpoint = serve_as_hub(dir.join("tiny"), "test-org/tiny");
    std::fs::write(
        dir.join("exp.toml"),
        "[model]\nid = \"test-org/tiny\"\ncache_dir = \"hf-cache\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
         [eval]\nmax_length = 128\nstride = 128\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    let run = |endpoint: &str| {
        Command::new(bin())
            .args(["run", dir.join("exp.toml").to_str().unwrap()])
            .env("HF_ENDPOINT", endpoint)
            .output()
            .unwrap()
    };
    let out = run(&endpoint);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dir.join("hf-cache/models--test-org--tiny").is_dir());
    // The files are in the cache now: a second run needs no server at all.
    let out = run("http://127.0.0.1:9");
    assert!(out.status.success(), "{}", text(&out));
    let records: Vec<PathBuf> = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(records.len(), 2);
    let first: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(records[0].join("00-none.json")).unwrap())
            .unwrap();
    assert_eq!(first["model"]["id"], "test-org/tiny");
    assert_eq!(first["model"]["revision"], "main");
}

/// Models take the same Hub client as datasets: the cache HF_HUB_CACHE names (no
/// `model.cache_dir`), and with HF_HUB_OFFLINE nothing is asked of the network.
#[test]
fn hub_model_honours_hf_hub_cache_and_hf_hub_offline() {
    let dir = tempdir("hubenv");
    synth_model(&dir);
    write_text(&dir);
    let (endpoint, served) = serve_counted(dir.join("tiny"), "test-org/tiny");
    std::fs::write(
        dir.join("exp.toml"),
        "[model]\nid = \"test-org/tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
         [eval]\nmax_length = 128\nstride = 128\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    let cache = dir.join("hub-cache");
    let run = |offline: &str| {
        Command::new(bin())
            .args(["run", dir.join("exp.toml").to_str().unwrap()])
            .env("HF_ENDPOINT", &endpoint)
            .env("HF_HUB_CACHE", &cache)
            .env("HF_HUB_OFFLINE", offline)
            .env_remove("HF_HOME")
            .output()
            .unwrap()
    };
    let out = run("0");
    assert!(out.status.success(), "{}", text(&out));
    assert!(cache.join("models--test-org--tiny").is_dir());
    let online = served.load(Ordering::SeqCst);
    assert!(online > 0);
    let out = run("1");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        served.load(Ordering::SeqCst),
        online,
        "offline asked the server"
    );
    // Offline, a file the cache lacks is refused, not fetched.
    std::fs::remove_dir_all(&cache).unwrap();
    let out = run("1");
    assert!(!out.status.success());
    assert!(text(&out).contains("HF_HUB_OFFLINE"), "{}", text(&out));
    assert_eq!(served.load(Ordering::SeqCst), online);
}
