//! Runs end to end on synthetic models: records, bytes, quantized weights, faulty codecs.

use crate::util::{
    build_plugin_crate, newest_run, require_builtins, root, splitbench, synth_model, tempdir, text,
    write_text,
};

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
    // The summary states the noise floor; the identity codec sets it at exactly 0.
    assert!(
        t.contains("noise floor: identity gives KLD 0 and top-1 100%"),
        "{t}"
    );
    assert!(t.contains("no `cast/fp16` codec in this run"), "{t}");
    // One self-contained page: the table, the floor and the four plots inline, no links out.
    let page = std::fs::read_to_string(run_dir.join("report.html")).unwrap();
    assert_eq!(page.matches("<svg").count(), 4, "{page}");
    assert!(page.contains("<td>int8-token</td>") && page.contains("noise floor"));
    assert!(
        !page.contains("src=") && !page.contains("href="),
        "nothing fetched"
    );
    for plot in [
        "delta_ppl_curve.svg",
        "rate_distortion.svg",
        "link_bytes.svg",
        "error_by_layer.svg",
    ] {
        assert!(run_dir.join(plot).is_file(), "{plot}");
    }
    // The hidden state's error from the first link to the last of the tiny model's 6 layers:
    // none at all through identity, some through int8.
    let layers = |r: &serde_json::Value, key: &str| -> Vec<f64> {
        r["divergence"]["error_by_layer"][key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let first_link = none["plan"]["links"][0]["after"]["layer"].as_f64().unwrap();
    assert_eq!(layers(&int8, "depth")[0], first_link + 1.0);
    assert_eq!(*layers(&int8, "depth").last().unwrap(), 6.0);
    assert!(layers(&identity, "relative_l2").iter().all(|&e| e == 0.0));
    let int8_error = layers(&int8, "relative_l2");
    assert!(
        int8_error.iter().all(|&e| e > 0.0 && e < 0.1),
        "{int8_error:?}"
    );
    // Which tokens are hurt: the position bins hold every scored token and add up to the mean.
    let hurt = &int8["divergence"]["hurt"];
    let bins = hurt["by_position"].as_array().unwrap();
    let tokens: u64 = bins.iter().map(|b| b["tokens"].as_u64().unwrap()).sum();
    assert_eq!(tokens, int8["divergence"]["tokens"].as_u64().unwrap());
    let kld: f64 = bins
        .iter()
        .map(|b| b["kld_mean"].as_f64().unwrap() * b["tokens"].as_f64().unwrap())
        .sum::<f64>()
        / tokens as f64;
    let mean = int8["divergence"]["kld"]["mean"].as_f64().unwrap();
    assert!((kld - mean).abs() <= 1e-6 * mean, "{kld} against {mean}");
    assert!(!hurt["top_tokens"].as_array().unwrap().is_empty());
    // llama-perplexity's block per codec, from the records.
    let detail = splitbench(&["report", run_dir.to_str().unwrap(), "--detail"]);
    let d = text(&detail);
    assert!(detail.status.success(), "{d}");
    for line in [
        "====== int8-token (",
        "Mean PPL(Q)                   :",
        "Cor(ln(PPL(Q)), ln(PPL(base))):",
        "99.9%   KLD:",
        "Minimum Δp:",
        "RMS Δp    :",
        "Same top p: 100.000 ± 0.000 %",
        "Top-10 overlap: 100.000 %",
        "====== Hidden-state error by layer (‖h − h_base‖ / ‖h_base‖) ======",
        "←",
        "====== KLD and NLL increase by position in the window ======",
        "====== Input tokens of highest mean KLD",
    ] {
        assert!(d.contains(line), "{line} in:\n{d}");
    }
    assert_eq!(
        identity["divergence"]["llama"]["reverse_kld"]["value"].as_f64(),
        Some(0.0)
    );
    // Two different plugins in one process gave two different codecs.
    assert_eq!(identity["plugins"][0]["name"], "identity");
    assert_eq!(int8["plugins"][0]["name"], "intq");
    let lines = std::fs::read_to_string(run_dir.join("02-int8-token.batches.jsonl")).unwrap();
    assert!(lines.lines().count() >= 2);
    // Per word and per byte: the scored tokens stand for the whole text but the first token's.
    let source = std::fs::read_to_string(dir.join("text.txt")).unwrap();
    let per_text = &none["results"]["text"];
    let (bytes, words) = (
        per_text["bytes"].as_u64().unwrap(),
        per_text["words"].as_u64().unwrap(),
    );
    assert!(
        bytes <= source.len() as u64 && bytes + 16 > source.len() as u64,
        "{per_text}"
    );
    let text_words = source.split_whitespace().count() as u64;
    assert!(words <= text_words && words + 1 >= text_words, "{per_text}");
    let nll = none["results"]["total_nll"].as_f64().unwrap();
    let bpb = per_text["bits_per_byte"].as_f64().unwrap();
    assert!((bpb - nll / bytes as f64 / std::f64::consts::LN_2).abs() < 1e-9);
    let word_ppl = per_text["word_perplexity"].as_f64().unwrap();
    assert!((word_ppl.ln() - nll / words as f64).abs() < 1e-9);
    assert!(t.contains("BPB"), "{t}");
    let scored = none["results"]["scored_tokens"].as_u64().unwrap();
    let n = none["dataset"]["tokens"].as_u64().unwrap();
    assert_eq!(
        scored,
        n - 1,
        "sliding windows score every token but the first"
    );
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
        text(&bad).contains(
            "unknown variant `q3`, expected one of `dense`, `q8_0`, `q4_0`, `q4k`, `q6k`"
        ),
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

/// The codecs of configs/every-codec.toml, end to end on a tiny model: every built-in codec
/// runs through the split forward pass and writes a record with a finite perplexity.
#[test]
fn every_builtin_codec_runs_end_to_end() {
    require_builtins();
    let dir = tempdir("everycodec");
    synth_model(&dir);
    write_text(&dir);
    let config = std::fs::read_to_string(root().join("configs/every-codec.toml")).unwrap();
    let codecs = &config[config.find("[[codec]]").unwrap()..config.find("[output]").unwrap()];
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        format!(
            "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
             [eval]\nmax_length = 64\nstride = 64\n[plan]\nsplit_after = [1, 3]\n\
             {codecs}[output]\ndir = \"out\"\n"
        ),
    )
    .unwrap();
    let out = splitbench(&["run", exp.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let run = newest_run(&dir.join("out"), &[]);
    let records: Vec<serde_json::Value> = std::fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            name.as_bytes()[0].is_ascii_digit() && name.ends_with(".json")
        })
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .collect();
    assert_eq!(records.len(), codecs.matches("[[codec]]").count());
    for r in &records {
        let ppl = r["results"]["ppl"].as_f64().unwrap_or(f64::NAN);
        assert!(ppl.is_finite() && ppl > 1.0, "{}: ppl {ppl}", r["codec"]);
    }
}

/// `capture` saves the hidden state entering each link of the plan; `codec-roundtrip` takes
/// the file as it is.
#[test]
fn capture_saves_the_hidden_state_at_each_link() {
    use safetensors::SafeTensors;
    require_builtins();
    let dir = tempdir("capture");
    synth_model(&dir);
    write_text(&dir);
    let exp = dir.join("exp.toml");
    std::fs::write(
        &exp,
        "[model]\npath = \"tiny\"\ndtype = \"f32\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
         [eval]\nmax_length = 64\nstride = 64\n[plan]\nsplit_after = [1, 3]\n",
    )
    .unwrap();
    let h = dir.join("h.safetensors");
    let out = splitbench(&[
        "capture",
        exp.to_str().unwrap(),
        "--out",
        h.to_str().unwrap(),
        "--tokens",
        "16",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let bytes = std::fs::read(&h).unwrap();
    let file = SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    assert_eq!(names, ["layer:1:node0->node1", "layer:3:node1->node2"]);
    for name in names {
        let t = file.tensor(name).unwrap();
        assert_eq!(t.shape(), [1, 16, 32], "{name}");
        let values: Vec<f32> = t
            .data()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|v| *v != 0.0));
    }
    let out = splitbench(&[
        "codec-roundtrip",
        "--plugin",
        "identity",
        "--codec",
        "identity",
        "--input",
        h.to_str().unwrap(),
        "--output",
        dir.join("back.safetensors").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let back = std::fs::read(dir.join("back.safetensors")).unwrap();
    let back = SafeTensors::deserialize(&back).unwrap();
    let name = "layer:3:node1->node2";
    assert_eq!(
        back.tensor(name).unwrap().data(),
        file.tensor(name).unwrap().data()
    );
}
