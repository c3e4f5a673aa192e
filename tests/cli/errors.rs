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
    // A 2-layer model in `dir/name` with `extra` synth-model arguments.
    let small_model = |name: &str, extra: &[&str]| {
        let to = dir.join(name);
        let mut args = vec!["synth-model", to.to_str().unwrap()];
        args.extend(["--layers", "2", "--hidden", "32", "--intermediate", "64"]);
        args.extend(extra);
        let out = splitbench(&args);
        assert!(out.status.success(), "{}", text(&out));
    };
    small_model("small-vocab", &["--vocab", "200"]);
    let gpt2 = dir.join("gpt2");
    std::fs::create_dir_all(&gpt2).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(dir.join("tiny").join(f), gpt2.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("tiny/config.json"))
        .unwrap()
        .replace("\"llama\"", "\"gpt2\"");
    std::fs::write(gpt2.join("config.json"), config).unwrap();
    // The tiny model with one config.json key changed, as a user would edit it.
    let variant = |from: &str, name: &str, key: &str, value: serde_json::Value| {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in ["model.safetensors", "tokenizer.json"] {
            std::fs::copy(dir.join(from).join(f), to.join(f)).unwrap();
        }
        let text = std::fs::read_to_string(dir.join(from).join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        config[key] = value;
        std::fs::write(to.join("config.json"), config.to_string()).unwrap();
    };
    variant("tiny", "relu", "hidden_act", serde_json::json!("relu"));
    // A key of another family (Gemma's soft-capping) in a Llama config.
    variant(
        "tiny",
        "softcap",
        "final_logit_softcapping",
        serde_json::json!(30.0),
    );
    variant(
        "tiny",
        "yarn",
        "rope_scaling",
        serde_json::json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 512}),
    );
    // A model whose head is its embedding, then a config that says it is not.
    small_model("tied", &["--tie-embeddings"]);
    variant(
        "tied",
        "untied",
        "tie_word_embeddings",
        serde_json::json!(false),
    );
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
        ("hidden_act not applied", format!("[model]\npath = \"relu\"\n{base}"), "hidden_act = \"relu\""),
        ("key of another family", format!("[model]\npath = \"softcap\"\n{base}"), "final_logit_softcapping = 30, which splitbench's decoder does not apply (the llama family has no such parameter)"),
        ("rope scaling not applied", format!("[model]\npath = \"yarn\"\n{base}"), "rope_scaling.rope_type = \"yarn\""),
        ("untied head missing", format!("[model]\npath = \"untied\"\n{base}"), "tie_word_embeddings = false, but the weights hold no"),
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

/// A splitbench run in `dir` with RUST_BACKTRACE=1, as on the development machines.
fn run_with_backtrace_env(
    dir: &std::path::Path,
    toml: &str,
    extra: &[&str],
) -> (Option<i32>, String) {
    let p = dir.join("case.toml");
    std::fs::write(&p, toml).unwrap();
    let out = std::process::Command::new(crate::util::bin())
        .arg("run")
        .arg(&p)
        .args(extra)
        .env_remove("SPLITBENCH_PLUGIN_PATH")
        .env_remove("SPLITBENCH_BACKTRACE")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    (out.status.code(), text(&out))
}

/// A GGUF file whose one tensor has a type no GGML build knows (99): candle's reader fails
/// with an error that carries a backtrace when RUST_BACKTRACE is set.
fn gguf_with_unknown_tensor_type(path: &std::path::Path) {
    let mut b: Vec<u8> = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes()); // tensors
    b.extend(1u64.to_le_bytes()); // metadata entries
    let string = |b: &mut Vec<u8>, s: &str| {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    };
    string(&mut b, "general.architecture");
    b.extend(8u32.to_le_bytes()); // string value
    string(&mut b, "llama");
    string(&mut b, "token_embd.weight");
    b.extend(1u32.to_le_bytes());
    b.extend(32u64.to_le_bytes());
    b.extend(99u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.resize(b.len().next_multiple_of(32) + 128, 0);
    std::fs::write(path, b).unwrap();
}

/// Every mistake the issue tracker listed, and one per config key: refused with the cause and
/// the fix, exit status 1, no backtrace even with RUST_BACKTRACE=1, and nothing written (no
/// run folder). Mistakes that need no model are reported before it loads: the cases that
/// pair them with a damaged model show it.
#[test]
fn mistakes_are_refused_before_anything_is_written() {
    let dir = tempdir("refused");
    synth_model(&dir);
    write_text(&dir);
    std::fs::write(dir.join("not-a-plugin.so"), "text, not ELF").unwrap();
    let damaged = dir.join("damaged");
    std::fs::create_dir_all(&damaged).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::copy(dir.join("tiny").join(f), damaged.join(f)).unwrap();
    }
    let st = std::fs::OpenOptions::new()
        .write(true)
        .open(damaged.join("model.safetensors"))
        .unwrap();
    st.set_len(st.metadata().unwrap().len() / 2).unwrap();
    let other = dir.join("other-config");
    std::fs::create_dir_all(&other).unwrap();
    for f in ["tokenizer.json", "model.safetensors"] {
        std::fs::copy(dir.join("tiny").join(f), other.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("tiny/config.json"))
        .unwrap()
        .replace("\"intermediate_size\": 64", "\"intermediate_size\": 128");
    assert!(
        config.contains("128"),
        "the synthetic config changed: {config}"
    );
    std::fs::write(other.join("config.json"), config).unwrap();
    gguf_with_unknown_tensor_type(&dir.join("odd.gguf"));
    std::fs::write(dir.join("one-word.txt"), "a").unwrap();

    let data = "[data]\npath = \"text.txt\"\nformat = \"text\"\nfirst_k_tokens = 300\n[eval]\nmax_length = 64\nstride = 64\n[output]\ndir = \"out\"\n";
    let tiny = format!("[model]\npath = \"tiny\"\n{data}");
    let broken = format!("[model]\npath = \"damaged\"\n{data}");
    let codec = |body: &str| format!("{tiny}[[codec]]\n{body}\n");
    let intq = "plugin = \"intq\"\ncodec = \"intn-block\"";
    let cases: Vec<(&str, String, &[&str])> = vec![
        // Class 1: plugin and codec mistakes, found before the (here damaged) model loads.
        ("unknown plugin", format!("{broken}[[codec]]\nplugin = \"nosuch\"\ncodec = \"x\"\n"), &["plugin `nosuch` not found", "SPLITBENCH_PLUGIN_PATH"]),
        ("not a plugin", format!("{broken}[[codec]]\nplugin = \"not-a-plugin.so\"\ncodec = \"x\"\n"), &["is not a splitbench codec plugin"]),
        ("unknown codec", format!("{broken}[[codec]]\nplugin = \"intq\"\ncodec = \"int3\"\n"), &["has no codec `int3`", "it offers: int8-token"]),
        ("param of the wrong type", format!("{broken}[[codec]]\n{intq}\nparams = {{ bits = \"four\" }}\n"), &["invalid type: string \"four\""]),
        ("param out of range", format!("{broken}[[codec]]\n{intq}\nparams = {{ bits = 99 }}\n"), &["`bits` must be in 2..=8, got 99"]),
        ("unknown param", format!("{broken}[[codec]]\n{intq}\nparams = {{ bitz = 4 }}\n"), &["unknown parameter `bitz`", "it takes: bits"]),
        ("bad param in a per-link override", format!("{broken}[[codec]]\n{intq}\n[codec.links.\"layer:1\"]\n{intq}\nparams = {{ bits = 1 }}\n"), &["`bits` must be in 2..=8, got 1"]),
        ("output folder is a file", broken.replace("dir = \"out\"", "dir = \"text.txt/out\""), &["text.txt", "it is a file, not a folder", "output.dir"]),
        ("resume of a folder that is no run", broken.clone(), &["not a run folder splitbench can resume", "--resume"]),
        // Class 2: nonsense.
        ("two codecs with one label", codec(&format!("{intq}\n[[codec]]\n{intq}")), &["codecs #1 and #2 are both named `intn-block`", "label"]),
        ("label naming the baseline", codec(&format!("{intq}\nlabel = \"none\"")), &["reported as `none`"]),
        ("label on the baseline", codec("name = \"none\"\nlabel = \"base\""), &["remove its label"]),
        ("label that is a path", codec(&format!("{intq}\nlabel = \"../x\"")), &["label \"../x\", which reads as a path"]),
        ("override of a link the plan lacks", codec(&format!("{intq}\n[codec.links.\"layer:5\"]\nname = \"none\"")), &["overrides link `layer:5`", "its links are embed:node0->node1"]),
        ("override key that is no link name", codec(&format!("{intq}\n[codec.links.\"layer4\"]\nname = \"none\"")), &["links.\"layer4\"", "`layer:N`"]),
        ("cut listed twice", format!("{tiny}[plan]\nsplit_after = [1, 1, 3]\n"), &["lists layer 1 twice"]),
        ("node numbers with a gap", format!("{tiny}[plan]\nlayer_to_node = [0, 0, 3, 3, 0, 0]\n"), &["no layer or end of the model is on node 1, 2"]),
        ("head_node without layer_to_node", format!("{tiny}[plan]\nnodes = 2\nhead_node = 1\n"), &["plan.head_node applies only with plan.layer_to_node"]),
        ("codec with no link to run on", format!("{tiny}[plan]\nnodes = 1\n[[codec]]\n{intq}\n"), &["no link for codec `intn-block`"]),
        ("device path on a CPU model", codec(&format!("{intq}\npath = \"device\"")), &["path = \"device\"", "model.device = \"cpu\""]),
        // Class 3: impossible protocol values.
        ("window of one token", tiny.replace("max_length = 64", "max_length = 1").replace("stride = 64", "stride = 1"), &["eval.max_length = 1 leaves no token to score"]),
        ("one token kept", tiny.replace("first_k_tokens = 300", "first_k_tokens = 1"), &["data.first_k_tokens = 1"]),
        ("text of one token", tiny.replace("text.txt", "one-word.txt").replace("first_k_tokens = 300", "add_special_tokens = false"), &["the text has only 1 token;"]),
        // Class 5: damaged or mismatched model files.
        ("damaged safetensors", broken.clone(), &["damaged/model.safetensors` is damaged or incomplete", "download it again"]),
        ("config of another model", tiny.replace("path = \"tiny\"", "path = \"other-config\""), &["weight `model.layers.0.mlp.gate_proj.weight` has shape [64, 32]", "implies [128, 32]", "different models"]),
        ("GGUF with an unknown tensor type", format!("[model]\ngguf = \"odd.gguf\"\n{data}"), &["`", "odd.gguf` is damaged or incomplete", "unknown dtype for tensor 99"]),
        ("model folder that is a file", tiny.replace("path = \"tiny\"", "path = \"text.txt\""), &["is a file, not a folder"]),
        // One per key: wrong type and impossible values (most are also unit-tested in config).
        ("named choice given a number", tiny.replace("[model]\n", "[model]\nweights = 4\n"), &["line 2", "expected a name in quotes"]),
        ("negative count", tiny.replace("first_k_tokens = 300", "first_k_tokens = -5"), &["line 6", "expected usize"]),
        ("boolean given a string", tiny.replace("format = \"text\"", "format = \"text\"\nadd_special_tokens = \"yes\""), &["expected a boolean"]),
        ("batch of zero", tiny.replace("stride = 64", "stride = 64\nbatch_size = 0"), &["eval.batch_size must be at least 1"]),
        ("unknown nonfinite policy", tiny.replace("stride = 64", "stride = 64\nnonfinite = \"ignore\""), &["expected `fail` or `report`"]),
        ("zero nodes", format!("{tiny}[plan]\nnodes = 0\n"), &["plan.nodes must be at least 1"]),
        ("layer_to_node of the wrong length", format!("{tiny}[plan]\nlayer_to_node = [0, 1]\n"), &["has 2 entries; the model has 6 layers"]),
        ("negative bandwidth", format!("{tiny}[links]\nbandwidth_mbps = -1.0\n"), &["links.bandwidth_mbps must be > 0"]),
        ("unknown section", format!("{tiny}[evals]\nx = 1\n"), &["unknown field `evals`", "did you mean `eval`?"]),
        ("data file that is a folder", tiny.replace("text.txt", "tiny"), &["cannot read data file", "Check data.path"]),
        ("codec params that are no table", codec(&format!("{intq}\nparams = 4")), &["expected a map"]),
    ];
    for (name, toml, expected) in &cases {
        let extra: &[&str] = if name.starts_with("resume") {
            &["--resume", "out-of-nowhere"]
        } else {
            &[]
        };
        let _ = std::fs::remove_dir_all(dir.join("out"));
        let (code, t) = run_with_backtrace_env(&dir, toml, extra);
        assert_eq!(code, Some(1), "{name}: {t}");
        for e in expected.iter() {
            assert!(t.contains(e), "{name}: expected `{e}` in:\n{t}");
        }
        assert!(
            !t.contains("panicked")
                && !t.contains(" 0: ")
                && !t.contains("backtrace")
                && !t.contains(" { "),
            "{name}: {t}"
        );
        let written = std::fs::read_dir(dir.join("out"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(written, 0, "{name}: a run folder was created:\n{t}");
        // Each cause once: no sentence of the message is repeated.
        let sentences: Vec<&str> = t
            .split([':', '.', ';'])
            .map(str::trim)
            .filter(|s| s.len() > 12)
            .collect();
        for (i, s) in sentences.iter().enumerate() {
            assert!(
                !sentences[..i].contains(s),
                "{name}: `{s}` repeated in:\n{t}"
            );
        }
    }
    // --verbose (or SPLITBENCH_BACKTRACE=1) shows where an error came from.
    let (_, plain) =
        run_with_backtrace_env(&dir, &format!("[model]\ngguf = \"odd.gguf\"\n{data}"), &[]);
    let (code, verbose) = run_with_backtrace_env(
        &dir,
        &format!("[model]\ngguf = \"odd.gguf\"\n{data}"),
        &["--verbose"],
    );
    assert_eq!(code, Some(1));
    assert!(!plain.contains(" 0: "), "{plain}");
    assert!(
        verbose.contains(" 0: ") && verbose.contains("unknown dtype for tensor 99"),
        "{verbose}"
    );
}
