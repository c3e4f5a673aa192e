//! The harness every area shares: the built binary, temp folders, plugin builds, synthetic
//! models and the assertions on what splitbench prints.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbench"))
}

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn splitbench(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .output()
        .expect("the splitbench binary runs")
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A fresh folder for one test, removed with what it holds when dropped.
pub struct TestDir(tempfile::TempDir);

impl Deref for TestDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

pub fn tempdir(name: &str) -> TestDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("splitbench-it-{name}-"))
        .tempdir()
        .expect("a folder in the system's temp folder");
    TestDir(dir)
}

pub fn lib_name(crate_name: &str) -> String {
    format!(
        "{}{}.{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    )
}

/// Runs cargo `command` (build, test) on a crate outside the workspace, in a target dir under
/// the workspace's, so CI's cached dependencies serve the fixtures too; returns that dir.
pub fn cargo_outside_workspace(command: &str, manifest_dir: &Path) -> PathBuf {
    cargo_outside_workspace_in(command, manifest_dir, "fixtures")
}

/// The same in the target dir `fixtures` under the workspace's: one of its own for crates
/// whose library has the same file name as another fixture's, which it would overwrite.
pub fn cargo_outside_workspace_in(command: &str, manifest_dir: &Path, fixtures: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join(fixtures);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([command, "--quiet", "--manifest-path"])
        .arg(manifest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {command} in {}: {}",
        manifest_dir.display(),
        text(&out)
    );
    target
}

/// Builds a plugin crate outside the workspace with cargo; returns its .so.
pub fn build_plugin_crate(manifest_dir: &Path, crate_name: &str) -> PathBuf {
    cargo_outside_workspace("build", manifest_dir)
        .join("debug")
        .join(lib_name(crate_name))
}

/// Runs splitbench expecting exit code 1 and every `expected` piece in its output.
pub fn assert_fails(args: &[&str], expected: &[&str]) -> String {
    let out = splitbench(args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
    for e in expected {
        assert!(t.contains(e), "{args:?}: expected `{e}` in:\n{t}");
    }
    t
}

pub const BUILTINS: [&str; 12] = [
    "identity",
    "cast",
    "intq",
    "topk",
    "zstd",
    "outlier",
    "lut4",
    "hqq",
    "blockmean",
    "rotate",
    "mx",
    "learned",
];

pub fn require_builtins() {
    let dir = bin().parent().unwrap().to_path_buf();
    for p in BUILTINS {
        let lib = dir.join(lib_name(&format!("splitbench-codec-{p}")));
        assert!(
            lib.is_file(),
            "{} is missing: run `cargo build --workspace` before the tests",
            lib.display()
        );
    }
}

pub fn synth_model(dir: &Path) {
    let out = splitbench(&[
        "synth-model",
        dir.join("tiny").to_str().unwrap(),
        "--layers",
        "6",
        "--hidden",
        "32",
        "--intermediate",
        "64",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

pub fn write_text(dir: &Path) {
    let para =
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n";
    std::fs::write(dir.join("text.txt"), para.repeat(20)).unwrap();
}

pub fn records_of(run_dir: &Path) -> Vec<serde_json::Value> {
    ["00-none.json", "01-int8-token.json", "02-topk.json"]
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(run_dir.join(f)).unwrap()).unwrap())
        .collect()
}

pub fn newest_run(out: &Path, not: &[PathBuf]) -> PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !not.contains(p))
        .unwrap()
}

/// A tiny model, a text and an experiment with int8-token, in a fresh folder.
pub fn int8_experiment(name: &str, extra_codec_line: &str) -> TestDir {
    let dir = tempdir(name);
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(
        dir.join("exp.toml"),
        format!(
            "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
             [eval]\nmax_length = 64\nstride = 64\n[plan]\nsplit_after = [2]\n\
             [[codec]]\nplugin = \"intq\"\ncodec = \"int8-token\"\n{extra_codec_line}\n\
             [output]\ndir = \"out\"\n"
        ),
    )
    .unwrap();
    dir
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("{:x}", sha2::Sha256::digest(bytes))
}

pub use splitbench_plugin_api::testkit::missing_input;
