//! Bad configs and inputs: each refused with a message that names the cause.

use crate::util::{root, splitbench, synth_model, tempdir, text, write_text};

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
        ("unknown link profile", format!("[model]\npath = \"tiny\"\n[links]\nprofile = \"moon\"\n{base}"), "expected `datacenter` or `broadband`"),
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
