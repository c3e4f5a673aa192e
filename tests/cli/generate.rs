//! `[generate]`: the decode phase after the sweep, through every codec at every link.

use crate::util::{require_builtins, splitbench, synth_model, tempdir, text, write_text};

/// Each record gets its `generation`; identity generates the baseline's continuation exactly
/// (match 1, KLD 0), a lossy codec pays in the same figures, and the wire bytes per generated
/// token are one token's state per link.
#[test]
fn generation_through_compressed_links() {
    require_builtins();
    let dir = tempdir("generate");
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
stride = 128
batch_size = 2
[plan]
nodes = 3
[[codec]]
name = "none"
[[codec]]
plugin = "identity"
codec = "identity"
[[codec]]
label = "int2"
plugin = "intq"
codec = "intn-block"
params = { bits = 2, block = 32 }
[generate]
prompts = 3
prompt_tokens = 12
new_tokens = 6
[output]
dir = "out"
"#,
    )
    .unwrap();
    let out = splitbench(&["run", dir.join("exp.toml").to_str().unwrap()]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("generation (3 prompts of 12 tokens, 6 new tokens each"),
        "{t}"
    );
    let run_dir = std::fs::read_dir(dir.join("out"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let generation = |name: &str| -> serde_json::Value {
        let r: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run_dir.join(name)).unwrap()).unwrap();
        r["generation"].clone()
    };
    let (none, identity, int2) = (
        generation("00-none.json"),
        generation("01-identity.json"),
        generation("02-int2.json"),
    );
    for g in [&none, &identity] {
        assert_eq!(g["match_rate"], 1.0);
        assert_eq!(g["kld_forced_mean"], 0.0);
        assert_eq!(g["top1_forced"], 1.0);
        assert_eq!(g["first_divergence_mean"], 6.0);
    }
    assert_eq!(identity["continuations"], none["continuations"]);
    assert_eq!(none["continuations"].as_array().unwrap().len(), 3);
    assert_eq!(none["kld_forced_by_position"].as_array().unwrap().len(), 6);
    // Hidden 32 in f32: 128 bytes of one token's state at each link, in both phases.
    let links = none["links"].as_array().unwrap().len();
    let raw = 128.0 * links as f64;
    assert!(links >= 2, "{none}");
    assert_eq!(none["decode_bytes_per_token"], raw);
    assert_eq!(none["prefill_bytes_per_token"], raw);
    // 2-bit codes lose information: the forced distributions differ and the wire is smaller.
    assert!(int2["kld_forced_mean"].as_f64().unwrap() > 0.0, "{int2}");
    assert!(
        int2["decode_bytes_per_token"].as_f64().unwrap() < 256.0 / 4.0,
        "{int2}"
    );
    assert!(int2["tpot_ms"].as_f64().unwrap() > 0.0);
}

/// `bench --decode` times `[generate]`'s decode phase (ms per step, steps/s) and refuses an
/// experiment without one.
#[test]
fn bench_decode_times_the_generate_section() {
    let dir = tempdir("bench-decode");
    synth_model(&dir);
    write_text(&dir);
    let base = "[model]\npath = \"tiny\"\n[data]\npath = \"text.txt\"\nformat = \"text\"\n\
                [eval]\nmax_length = 64\nstride = 64\nbatch_size = 1\n[[codec]]\nname = \"none\"\n";
    std::fs::write(dir.join("none.toml"), base).unwrap();
    let with = format!("{base}[generate]\nprompts = 2\nprompt_tokens = 8\nnew_tokens = 4\n");
    std::fs::write(dir.join("gen.toml"), with).unwrap();
    let bench = |name: &str| {
        let config = dir.join(name);
        splitbench(&[
            "bench",
            config.to_str().unwrap(),
            "--decode",
            "--rounds",
            "2",
        ])
    };
    let out = bench("gen.toml");
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("decode: 2 prompts of 8 tokens, 4 new tokens each"),
        "{t}"
    );
    assert!(t.contains("round 2/2: splitbench"), "{t}");
    let row = t.lines().find(|l| l.starts_with("splitbench ")).unwrap();
    let ms: f64 = row.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(ms > 0.0, "{row}");
    let out = bench("none.toml");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("has no [generate] section"),
        "{}",
        text(&out)
    );
}
