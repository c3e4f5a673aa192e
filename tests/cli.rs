//! Drives the built `splitbench` binary. Run after `cargo build --workspace`, which puts the
//! built-in plugins next to the binary where it finds them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_splitbench"))
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn splitbench(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .output()
        .expect("the splitbench binary runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn tempdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "splitbench-it-{name}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn lib_name(crate_name: &str) -> String {
    format!(
        "{}{}.{}",
        std::env::consts::DLL_PREFIX,
        crate_name.replace('-', "_"),
        std::env::consts::DLL_EXTENSION
    )
}

/// Runs cargo `command` (build, test) on a crate outside the workspace, in a target dir under
/// the workspace's, so CI's cached dependencies serve the fixtures too; returns that dir.
fn cargo_outside_workspace(command: &str, manifest_dir: &Path) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
        .join("fixtures");
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
fn build_plugin_crate(manifest_dir: &Path, crate_name: &str) -> PathBuf {
    cargo_outside_workspace("build", manifest_dir)
        .join("debug")
        .join(lib_name(crate_name))
}

/// Runs splitbench expecting exit code 1 and every `expected` piece in its output.
fn assert_fails(args: &[&str], expected: &[&str]) -> String {
    let out = splitbench(args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {t}");
    for e in expected {
        assert!(t.contains(e), "{args:?}: expected `{e}` in:\n{t}");
    }
    t
}

const BUILTINS: [&str; 6] = ["identity", "cast", "intq", "topk", "zstd", "outlier"];

fn require_builtins() {
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

#[test]
fn plugins_lists_every_builtin() {
    require_builtins();
    let out = splitbench(&["plugins"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for p in BUILTINS {
        assert!(
            t.contains(&format!(
                "    {p} {v} (plugin-api {v})",
                v = env!("CARGO_PKG_VERSION")
            )),
            "{p} missing:\n{t}"
        );
    }
    assert!(!t.contains("not loaded"), "{t}");
}

#[test]
fn codec_check_prints_a_table_for_every_builtin_codec() {
    require_builtins();
    for (plugin, codec, params) in [
        ("identity", "identity", "{}"),
        ("cast", "fp16", "{}"),
        ("cast", "fp8-e4m3", r#"{"scale":"per-token"}"#),
        ("intq", "int8-token", "{}"),
        ("intq", "intn-block", r#"{"bits":4}"#),
        ("intq", "intn-block-asym", "{}"),
        ("topk", "topk", "{}"),
        ("zstd", "zstd", r#"{"shuffle":true}"#),
        ("outlier", "outlier", "{}"),
    ] {
        let out = splitbench(&[
            "codec-check",
            "--plugin",
            plugin,
            "--codec",
            codec,
            "--params",
            params,
            "--shape",
            "1,64,256",
        ]);
        let t = text(&out);
        assert!(out.status.success(), "{plugin}/{codec}: {t}");
        assert!(t.contains("B/elem") && t.contains("SNR dB"), "{t}");
        assert!(!t.contains("FAIL"), "{t}");
    }
    // Known values: identity is exact, int8 per token uses 1 byte + 4/256 of scale.
    let t = text(&splitbench(&[
        "codec-check",
        "--plugin",
        "intq",
        "--codec",
        "int8-token",
        "--shape",
        "1,64,256",
        "--dtype",
        "f32",
    ]));
    assert!(t.contains("1.0156"), "{t}");
}

#[test]
fn unknown_codec_lists_what_the_plugin_offers() {
    require_builtins();
    assert_fails(
        &["codec-check", "--plugin", "intq", "--codec", "int3"],
        &["no codec `int3`", "int8-token, intn-block, intn-block-asym"],
    );
}

#[test]
fn bad_params_name_the_field() {
    require_builtins();
    assert_fails(
        &[
            "codec-check",
            "--plugin",
            "intq",
            "--codec",
            "intn-block",
            "--params",
            r#"{"bitz":3}"#,
        ],
        &["unknown parameter `bitz`", "bits, block"],
    );
}

#[test]
fn missing_plugin_lists_folders_and_names() {
    let exe_dir = bin().parent().unwrap().display().to_string();
    assert_fails(
        &["codec-check", "--plugin", "nosuch", "--codec", "x"],
        &[
            "plugin `nosuch` not found",
            "libsplitbench_codec_nosuch.so",
            &exe_dir,
        ],
    );
}

#[test]
fn non_plugins_are_refused_with_the_reason() {
    let dir = tempdir("notplugin");
    let junk = dir.join("junk.so");
    std::fs::write(&junk, "not a library").unwrap();
    assert_fails(
        &["plugin", "inspect", junk.to_str().unwrap()],
        &["not a splitbench codec plugin: it is not a loadable shared library"],
    );

    // Another shared library: the Rust standard library of the toolchain that built us.
    let libdir = Command::new("rustc")
        .args(["--print", "target-libdir"])
        .output()
        .unwrap();
    let lib = PathBuf::from(String::from_utf8_lossy(&libdir.stdout).trim());
    let libstd = std::fs::read_dir(&lib)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libstd-")
        })
        .expect("the toolchain ships libstd as a shared library");
    assert_fails(
        &["plugin", "inspect", libstd.to_str().unwrap()],
        &["exports no abi_stable root module"],
    );
}

#[test]
fn plugin_built_against_an_older_layout_is_refused() {
    let so = build_plugin_crate(
        &root().join("tests/fixtures/old-api-plugin"),
        "old-api-plugin",
    );
    let t = assert_fails(
        &["plugin", "inspect", so.to_str().unwrap()],
        &[
            "was built against splitbench-plugin-api 0.1.0",
            "rebuild the plugin against splitbench-plugin-api 0.1",
        ],
    );
    assert!(
        t.lines().count() <= 2,
        "expected a short message, got:\n{t}"
    );
}

#[test]
fn a_panicking_codec_is_an_error_and_the_process_survives() {
    let so = build_plugin_crate(
        &root().join("tests/fixtures/faulty-plugin"),
        "faulty-plugin",
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "boom",
        "--shape",
        "1,4,64",
    ]);
    // Exit code 1 from our error path: an abort would be a signal, not a code.
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("the plugin panicked: boom on a tensor of shape"),
        "{t}"
    );
    assert!(t.contains("FAIL"), "{t}");
}

#[test]
fn a_plugin_crate_outside_the_workspace_loads_into_the_unchanged_binary() {
    let dir = tempdir("collaborator").join("mulaw");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    let template = root().join("examples/codec-template");
    for file in std::fs::read_dir(template.join("src")).unwrap() {
        let file = file.unwrap().path();
        std::fs::copy(&file, dir.join("src").join(file.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(template.join("Cargo.toml"))
        .unwrap()
        .replace(
            "path = \"../../plugin-api\"",
            &format!(
                "path = {:?}",
                root().join("plugin-api").display().to_string()
            ),
        );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    let so = build_plugin_crate(&dir, "splitbench-codec-mulaw");
    let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("codec `mulaw`"), "{}", text(&out));
    assert!(
        text(&out).contains("device path with default params: yes"),
        "{}",
        text(&out)
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "mulaw",
        "--shape",
        "1,16,128",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

fn synth_model(dir: &Path) {
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

fn write_text(dir: &Path) {
    let para =
        "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs.\n";
    std::fs::write(dir.join("text.txt"), para.repeat(20)).unwrap();
}

#[test]
fn end_to_end_run_writes_records_and_counts_bytes() {
    require_builtins();
    let dir = tempdir("e2e");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(
        dir.join("exp.toml"),
        r#"
[model]
path = "tiny"
[data]
path = "text.txt"
format = "text"
[eval]
max_length = 128
stride = 64
batch_size = 2
[plan]
nodes = 3
[[codec]]
name = "none"
[[codec]]
plugin = "identity"
codec = "identity"
[[codec]]
plugin = "intq"
codec = "int8-token"
[output]
dir = "out"
"#,
    )
    .unwrap();
    let out = splitbench(&["run", dir.join("exp.toml").to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("ΔPPL [95% CI]") && t.contains("top-1"), "{t}");
    let run_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run_dir.join(name)).unwrap()).unwrap()
    };
    let none = read("00-none.json");
    let identity = read("01-identity.json");
    let int8 = read("02-int8-token.json");
    // Bit-identical NLL through the identity plugin; the same bytes as `none`.
    assert_eq!(
        none["results"]["total_nll"],
        identity["results"]["total_nll"]
    );
    assert_eq!(none["traffic"]["bytes"], identity["traffic"]["bytes"]);
    // none: elements × 4 bytes (f32) = processed tokens × hidden 32 × 4 per link, 3 links.
    let processed = none["traffic"]["model_tokens_processed"].as_u64().unwrap();
    assert_eq!(
        none["traffic"]["bytes"].as_u64().unwrap(),
        processed * 32 * 4 * 3
    );
    // int8 per token: 32 bytes + a 4-byte scale per token per link.
    assert_eq!(
        int8["traffic"]["bytes"].as_u64().unwrap(),
        processed * 36 * 3
    );
    assert_ne!(none["results"]["total_nll"], int8["results"]["total_nll"]);
    // The identity codec against the baseline: KLD 0 and full top-1 agreement.
    assert_eq!(identity["divergence"]["kld"]["max"].as_f64().unwrap(), 0.0);
    assert_eq!(
        identity["divergence"]["top1_agreement"].as_f64().unwrap(),
        1.0
    );
    assert!(none["divergence"].is_null());
    assert!(int8["divergence"]["kld"]["mean"].as_f64().unwrap() > 0.0);
    // Reconstruction error per link: exact for identity, small for int8.
    let link = &int8["traffic"]["links"][0];
    let rel = link["reconstruction"]["rel_l2"].as_f64().unwrap();
    assert!(rel > 0.0 && rel < 0.02, "int8 relative L2 error {rel}");
    assert_eq!(
        identity["traffic"]["links"][0]["reconstruction"]["rel_l2"]
            .as_f64()
            .unwrap(),
        0.0
    );
    assert!(run_dir.join("summary.json").is_file());
    // Two different plugins in one process gave two different codecs.
    assert_eq!(identity["plugins"][0]["name"], "identity");
    assert_eq!(int8["plugins"][0]["name"], "intq");
    let lines = std::fs::read_to_string(run_dir.join("02-int8-token.batches.jsonl")).unwrap();
    assert!(lines.lines().count() >= 2);
    let scored = none["results"]["scored_tokens"].as_u64().unwrap();
    let n = none["dataset"]["tokens"].as_u64().unwrap();
    assert_eq!(
        scored,
        n - 1,
        "sliding windows score every token but the first"
    );
}

#[test]
fn wikitext_run_on_the_shared_data() {
    let data = root().join("../shared/data/wikitext-2-raw-v1/wiki.test.raw");
    let data = std::env::var_os("SPLITBENCH_WIKITEXT_DIR")
        .map(|d| PathBuf::from(d).join("wiki.test.raw"))
        .unwrap_or(data);
    if !data.is_file() {
        eprintln!(
            "SKIPPED wikitext_run_on_the_shared_data: {} not found (set SPLITBENCH_WIKITEXT_DIR)",
            data.display()
        );
        return;
    }
    let dir = tempdir("wikitext");
    synth_model(&dir);
    std::fs::write(
        dir.join("exp.toml"),
        format!(
            "[model]\npath = \"tiny\"\n[data]\npath = {:?}\nfirst_k_tokens = 2000\n[eval]\nmax_length = 256\nstride = 256\n[output]\ndir = \"out\"\n",
            data.display().to_string()
        ),
    )
    .unwrap();
    let out = splitbench(&["run", dir.join("exp.toml").to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let run_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let none: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run_dir.join("00-none.json")).unwrap())
            .unwrap();
    assert_eq!(none["dataset"]["tokens"], 2000);
    // Disjoint windows of 256 over 2000 tokens: 8 windows, each loses its first token.
    assert_eq!(none["results"]["scored_tokens"], 2000 - 8);
    assert_eq!(none["dataset"]["text_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn config_errors_name_the_cause() {
    let dir = tempdir("configerr");
    let cases: [(&str, &str); 4] = [
        ("[model]\npath = \"m\"\n[eval]\nbatch_sise = 2\n", "line 4"),
        (
            "[model]\npath = \"nowhere\"\n[data]\npath = \"x\"\n",
            "model folder",
        ),
        (
            "[model]\npath = \"m\"\n[eval]\nstride = 0\n",
            "eval.stride = 0",
        ),
        ("[model\npath = 1\n", "TOML parse error"),
    ];
    for (i, (toml, expected)) in cases.iter().enumerate() {
        let p = dir.join(format!("c{i}.toml"));
        std::fs::write(&p, toml).unwrap();
        let out = splitbench(&["run", p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let t = text(&out);
        assert!(t.contains(expected), "case {i}: {t}");
        assert!(
            !t.contains("panicked") && !t.contains("Error {"),
            "case {i}: {t}"
        );
    }
}

#[test]
fn every_config_in_configs_parses() {
    let configs = std::fs::read_dir(root().join("configs")).unwrap();
    let gpu = std::fs::read_dir(root().join("configs/gpu")).unwrap();
    for entry in configs.chain(gpu) {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let source = std::fs::read_to_string(&path).unwrap();
            let parsed: Result<toml::Table, _> = toml::from_str(&source);
            assert!(parsed.is_ok(), "{}: {:?}", path.display(), parsed.err());
            let out = splitbench(&["run", path.to_str().unwrap(), "--check"]);
            assert!(out.status.success(), "{}: {}", path.display(), text(&out));
        }
    }
}

#[test]
fn safetensors_quantized_at_load() {
    let dir = tempdir("q8");
    synth_model(&dir);
    write_text(&dir);
    let config = "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n[eval]\nmax_length = 64\nstride = 64\n[output]\ndir = \"out\"\n";
    std::fs::write(dir.join("exp.toml"), config).unwrap();
    let exp = dir.join("exp.toml");
    let records = |weights: &str| -> serde_json::Value {
        let out = splitbench(&[
            "run",
            exp.to_str().unwrap(),
            "--set",
            &format!("model.weights=\"{weights}\""),
        ]);
        assert!(out.status.success(), "{weights}: {}", text(&out));
        let newest = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        serde_json::from_str(&std::fs::read_to_string(newest.join("00-none.json")).unwrap())
            .unwrap()
    };
    // hidden 32 and intermediate 64 are multiples of q8_0's block of 32: every projection is quantized.
    let q8 = records("q8_0");
    assert_eq!(q8["model"]["weights"], "q8_0");
    assert_eq!(q8["model"]["kept_dense"].as_array().unwrap().len(), 0);
    assert!(q8["results"]["ppl"].as_f64().unwrap().is_finite());
    // q4k's block is 256: no projection of this model fits, and the record lists them all.
    let q4k = records("q4k");
    assert_eq!(
        q4k["model"]["kept_dense"].as_array().unwrap().len(),
        6 * 7 + 1
    );
    let bad = splitbench(&[
        "run",
        exp.to_str().unwrap(),
        "--set",
        "model.weights=\"q3\"",
    ]);
    assert!(
        text(&bad).contains("use dense, q8_0, q4_0, q4k or q6k"),
        "{}",
        text(&bad)
    );
}

#[test]
fn faulty_codecs_fail_alone_and_name_codec_link_and_batch() {
    require_builtins();
    let so = build_plugin_crate(
        &root().join("tests/fixtures/faulty-plugin"),
        "faulty-plugin",
    );
    let dir = tempdir("faults");
    synth_model(&dir);
    write_text(&dir);
    let faulty = |codec: &str| {
        format!(
            "[[codec]]\nplugin = {:?}\ncodec = \"{codec}\"\n",
            so.display().to_string()
        )
    };
    let config = format!(
        "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
         [eval]\nmax_length = 64\nstride = 64\n[plan]\nnodes = 2\n\
         [[codec]]\nplugin = \"intq\"\ncodec = \"int8-token\"\n{}{}{}{}[output]\ndir = \"out\"\n",
        faulty("boom"),
        faulty("short"),
        faulty("nan"),
        faulty("late-error")
    );
    std::fs::write(dir.join("exp.toml"), config).unwrap();
    let out = splitbench(&["run", dir.join("exp.toml").to_str().unwrap()]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("the other codecs' records are in"), "{t}");
    let run_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(run_dir.join(name)).unwrap()).unwrap()
    };
    let failure = |name: &str| {
        read(name)["failure"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let boom = failure("02-boom.json");
    assert!(
        boom.contains("batch 0")
            && boom.contains("`boom` on link `layer:")
            && boom.contains("panicked"),
        "{boom}"
    );
    let short = failure("03-short.json");
    assert!(
        short.contains("decoded") && short.contains("bytes; the hidden state needs"),
        "{short}"
    );
    let nan = failure("04-nan.json");
    assert!(
        nan.contains("NaN/Inf values") && nan.contains("eval.nonfinite"),
        "{nan}"
    );
    let late = failure("05-late-error.json");
    assert!(
        late.contains("batch 1") && late.contains("the remote end hung up"),
        "{late}"
    );
    // The healthy codec ran to the end.
    let int8 = read("01-int8-token.json");
    assert!(int8["failure"].is_null());
    assert_eq!(
        int8["results"]["scored_tokens"],
        read("00-none.json")["results"]["scored_tokens"]
    );
    // With eval.nonfinite = "report" the NaN codec runs through and its NaNs are counted.
    let out = splitbench(&[
        "run",
        dir.join("exp.toml").to_str().unwrap(),
        "--set",
        "eval.nonfinite=\"report\"",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let second = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p != &run_dir)
        .unwrap();
    let nan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(second.join("04-nan.json")).unwrap())
            .unwrap();
    assert!(nan["failure"].is_null(), "{}", nan["failure"]);
    assert!(nan["traffic"]["nonfinite_decoded"].as_u64().unwrap() > 0);
}

/// Every mistake a user can make gets a message naming the cause and the fix, and no Rust
/// debug dump or backtrace.
#[test]
fn bad_input_messages() {
    let dir = tempdir("badinput");
    synth_model(&dir);
    write_text(&dir);
    let small = dir.join("small-vocab");
    let out = splitbench(&[
        "synth-model",
        small.to_str().unwrap(),
        "--layers",
        "2",
        "--hidden",
        "32",
        "--intermediate",
        "64",
        "--vocab",
        "200",
    ]);
    assert!(out.status.success());
    let gpt2 = dir.join("gpt2");
    std::fs::create_dir_all(&gpt2).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join("tiny").join(f), gpt2.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("tiny/config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt2\"");
    std::fs::write(gpt2.join("config.json"), config).unwrap();
    let base = "[data]\npath = \"text.txt\"\nformat = \"text\"\n[output]\ndir = \"out\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("unknown key", format!("[model]\npath = \"tiny\"\n[eval]\nbatch_sise = 2\n{base}"), "did you mean `batch_size`?"),
        ("wrong type", format!("[model]\npath = \"tiny\"\n[eval]\nstride = \"big\"\n{base}"), "expected usize"),
        ("missing gguf", format!("[model]\ngguf = \"none.gguf\"\n{base}"), "GGUF file"),
        ("unsupported architecture", format!("[model]\npath = \"gpt2\"\n{base}"), "unsupported architecture `gpt2`"),
        ("tokenizer does not fit", format!("[model]\npath = \"small-vocab\"\n{base}"), "tokenizer.json does not belong to this model"),
        ("max_length above context", format!("[model]\npath = \"tiny\"\n[eval]\nmax_length = 4096\nstride = 4096\n{base}"), "exceeds the model's context (2048 positions)"),
        ("stride above max_length", format!("[model]\npath = \"tiny\"\n[eval]\nmax_length = 64\nstride = 128\n{base}"), "must be between 1 and eval.max_length"),
        ("more nodes than layers", format!("[model]\npath = \"tiny\"\n[plan]\nnodes = 9\n{base}"), "more nodes than the model has layers (6)"),
        ("split_after out of range", format!("[model]\npath = \"tiny\"\n[plan]\nsplit_after = [2, 5]\n{base}"), "outside 0..=4"),
        ("output not writable", "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n[output]\ndir = \"/proc/splitbench\"\n".to_string(), "Check that output.dir is writable"),
        ("unknown link profile", format!("[model]\npath = \"tiny\"\n[links]\nprofile = \"moon\"\n{base}"), "known: datacenter, broadband"),
    ];
    for (name, toml, expected) in cases {
        let p = dir.join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&p, toml).unwrap();
        let out = splitbench(&["run", p.to_str().unwrap()]);
        let t = text(&out);
        assert_eq!(out.status.code(), Some(1), "{name}: {t}");
        assert!(
            t.contains(expected),
            "{name}: expected `{expected}` in:\n{t}"
        );
        assert!(
            !t.contains("panicked") && !t.contains("stack backtrace") && !t.contains(" { "),
            "{name}: {t}"
        );
    }
    // More tokens asked for than the text has: said, and the run goes on with all of them.
    let p = dir.join("first-k.toml");
    std::fs::write(&p, "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\nfirst_k_tokens = 1000000\n[eval]\nmax_length = 256\nstride = 256\n[output]\ndir = \"out\"\n").unwrap();
    let out = splitbench(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("but the text has only"),
        "{}",
        text(&out)
    );
}

/// Serves the files of `dir` the way the Hugging Face Hub does for hf-hub
/// (`/{repo}/resolve/{revision}/{file}`, ranged GETs, ETag and X-Repo-Commit headers) on
/// 127.0.0.1, for at most `max_requests` requests. Returns the endpoint.
fn serve_as_hub(dir: PathBuf, repo: &'static str, max_requests: usize) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(max_requests) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut range: Option<(usize, Option<usize>)> = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = v.trim().split_once('-').unwrap();
                    range = Some((a.parse().unwrap(), b.parse().ok()));
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
            let prefix = format!("/{repo}/resolve/main/");
            let file = path.strip_prefix(&prefix).map(|f| dir.join(f));
            let response = match file
                .filter(|f| f.is_file())
                .map(|f| std::fs::read(f).unwrap())
            {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                Some(body) => {
                    let (start, end) = match range {
                        Some((a, b)) => (a, b.unwrap_or(body.len() - 1).min(body.len() - 1)),
                        None => (0, body.len() - 1),
                    };
                    let etag = format!(
                        "{:x}",
                        body.iter()
                            .fold(0u64, |h, &b| h.wrapping_mul(31).wrapping_add(b as u64))
                    );
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{}\r\n\
                         ETag: \"{etag}\"\r\nX-Repo-Commit: 0123456789abcdef0123456789abcdef01234567\r\nConnection: close\r\n\r\n",
                        end + 1 - start,
                        body.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(&body[start..=end]);
                    r
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    endpoint
}

#[test]
fn hub_model_through_a_local_server_then_from_the_cache() {
    let dir = tempdir("hub");
    synth_model(&dir);
    write_text(&dir);
    let endpoint = serve_as_hub(dir.join("tiny"), "test-org/tiny", 64);
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

fn records_of(run_dir: &Path) -> Vec<serde_json::Value> {
    ["00-none.json", "01-int8-token.json", "02-topk.json"]
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(run_dir.join(f)).unwrap()).unwrap())
        .collect()
}

fn newest_run(out: &Path, not: &[PathBuf]) -> PathBuf {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| !not.contains(p))
        .unwrap()
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

#[test]
fn the_boundary_keeps_the_model_dtype() {
    require_builtins();
    let dir = tempdir("dtype");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(
        dir.join("exp.toml"),
        "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n[eval]\nmax_length = 128\nstride = 128\n\
         [[codec]]\nplugin = \"identity\"\ncodec = \"identity\"\n[output]\ndir = \"out\"\n",
    )
    .unwrap();
    for (dtype, size) in [("bf16", 2u64), ("f16", 2), ("f32", 4)] {
        let out = splitbench(&[
            "run",
            dir.join("exp.toml").to_str().unwrap(),
            "--dtype",
            dtype,
        ]);
        assert!(out.status.success(), "{dtype}: {}", text(&out));
        let run_dir = std::fs::read_dir(dir.join("out"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap();
        for name in ["00-none.json", "01-identity.json"] {
            let r: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(run_dir.join(name)).unwrap())
                    .unwrap();
            assert_eq!(r["model"]["dtype"], dtype);
            let processed = r["traffic"]["model_tokens_processed"].as_u64().unwrap();
            // Default plan over 6 layers and 4 nodes: 4 links of hidden 32 in the model dtype.
            assert_eq!(
                r["traffic"]["bytes"].as_u64().unwrap(),
                processed * 32 * size * 4,
                "{dtype} {name}"
            );
            assert!(r["results"]["ppl"].as_f64().unwrap().is_finite());
        }
    }
}

/// A tiny model, a text and an experiment with int8-token, in a fresh folder.
fn int8_experiment(name: &str, extra_codec_line: &str) -> PathBuf {
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

#[test]
fn records_say_which_path_each_link_used() {
    require_builtins();
    let dir = int8_experiment("paths", "");
    let out = splitbench(&[
        "run",
        dir.join("exp.toml").to_str().unwrap(),
        "--verify-wire",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // On the CPU nothing runs on a device, so there is no wire to verify, and it says so.
    assert!(!text(&out).contains("verify-wire:"), "{}", text(&out));
    assert!(
        text(&out).contains("--verify-wire had nothing to check"),
        "{}",
        text(&out)
    );
    let run = newest_run(&dir.join("out"), &[]);
    let path_of = |file: &str| -> String {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join(file)).unwrap()).unwrap();
        r["traffic"]["links"][0]["path"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(path_of("00-none.json"), "none");
    assert_eq!(path_of("01-int8-token.json"), "host");
}

#[test]
fn device_path_without_a_gpu_is_refused_by_name() {
    require_builtins();
    let dir = int8_experiment("nodevice", "path = \"device\"");
    assert_fails(
        &["run", dir.join("exp.toml").to_str().unwrap()],
        &[
            "int8-token",
            "path = \"device\"",
            "not on a GPU",
            "\"host\"",
        ],
    );
}

#[test]
fn check_device_compares_cpu_with_the_configured_device() {
    require_builtins();
    let dir = int8_experiment("checkdev", "");
    let exp = dir.join("exp.toml");
    assert_fails(
        &["check-device", exp.to_str().unwrap()],
        &["compares the CPU with model.device", "cuda:0"],
    );
    // "auto" without a GPU is the CPU again: the same logits, bit for bit.
    let out = splitbench(&[
        "check-device",
        exp.to_str().unwrap(),
        "--set",
        "model.device=\"auto\"",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("relative 0.000e0 (bound 1e-4)"),
        "{}",
        text(&out)
    );
    if !cfg!(feature = "cuda") {
        assert_fails(
            &[
                "check-device",
                exp.to_str().unwrap(),
                "--set",
                "model.device=\"cuda:0\"",
            ],
            &["built without CUDA", "scripts/build-cuda.sh"],
        );
    }
}

#[test]
fn bench_writes_its_rows_as_json() {
    require_builtins();
    let dir = int8_experiment("benchjson", "");
    let json = dir.join("bench.json");
    let out = splitbench(&[
        "bench",
        dir.join("exp.toml").to_str().unwrap(),
        "--batches",
        "1",
        "--no-sweep",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("one sweep"), "{}", text(&out));
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["codec"], "int8-token");
    assert_eq!(rows[1]["path"], "host");
    assert!(rows[1]["tokens_per_s"].as_f64().unwrap() > 0.0);
}

#[test]
fn plugin_inspect_tells_whether_codecs_have_a_device_path() {
    require_builtins();
    let dir = bin().parent().unwrap().to_path_buf();
    let inspect = |plugin: &str| {
        let so = dir.join(lib_name(&format!("splitbench-codec-{plugin}")));
        let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let intq = inspect("intq");
    assert!(intq.contains("CUDA entry point present"), "{intq}");
    assert_eq!(
        intq.matches("device path with default params: yes").count(),
        3,
        "{intq}"
    );
    let topk = inspect("topk");
    assert!(
        topk.contains("device path with default params: no (host path only)"),
        "{topk}"
    );
}

/// A plugin built against splitbench-plugin-api 0.1.0, before device codecs: the `identity`
/// crate and the plugin API as commit d2ae2bb left them, from this repository's history.
#[test]
fn a_plugin_from_before_device_codecs_still_loads_and_runs() {
    require_builtins();
    const COMMIT: &str = "d2ae2bb";
    let dir = tempdir("api010");
    let archive = Command::new("git")
        .args([
            "-C",
            root().to_str().unwrap(),
            "archive",
            "--format=tar",
            COMMIT,
        ])
        .args(["Cargo.toml", "Cargo.lock", "plugin-api", "plugins/identity"])
        .output();
    let tar = match archive {
        Ok(out) if out.status.success() => out.stdout,
        other => {
            eprintln!(
                "SKIPPED: this checkout has no commit {COMMIT} (shallow clone?) to build a \
                 plugin-api 0.1.0 plugin from: {other:?}"
            );
            return;
        }
    };
    let mut untar = Command::new("tar")
        .args(["-x", "-C", dir.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(untar.stdin.as_mut().unwrap(), &tar).unwrap();
    assert!(untar.wait().unwrap().success());
    // Only the two crates of that workspace are here.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let start = manifest.find("members = [").unwrap();
    let end = start + manifest[start..].find(']').unwrap() + 1;
    let manifest = format!(
        "{}members = [\"plugin-api\", \"plugins/identity\"]{}",
        &manifest[..start],
        &manifest[end..]
    );
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    let so = build_plugin_crate(&dir.join("plugins/identity"), "splitbench-codec-identity");
    let old = dir.join("old");
    std::fs::create_dir_all(&old).unwrap();
    std::fs::copy(&so, old.join(so.file_name().unwrap())).unwrap();
    let so = old.join(so.file_name().unwrap());

    let out = splitbench(&["plugin", "inspect", so.to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("plugin-api:  0.1.0"), "{t}");
    assert!(
        t.contains("built against splitbench-plugin-api 0.1.0, before device codecs"),
        "{t}"
    );
    let out = splitbench(&[
        "codec-check",
        "--plugin",
        so.to_str().unwrap(),
        "--codec",
        "identity",
        "--shape",
        "1,16,64",
    ]);
    assert!(out.status.success(), "{}", text(&out));
}

/// The template's own tests: conformance, its companding tables, and its device path against
/// its host path through the plugin API's CUDA emulation.
#[test]
fn the_codec_template_passes_its_own_tests() {
    cargo_outside_workspace("test", &root().join("examples/codec-template"));
}
