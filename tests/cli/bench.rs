//! `bench` on synthetic models: the checks it shares with `run`, and its JSON rows.

use crate::util::{int8_experiment, require_builtins, splitbench, text};

/// `bench` starts from the experiment `run` checks and prepares, so it refuses what `run`
/// refuses: here windows longer than the model's context.
#[test]
fn bench_refuses_max_length_beyond_the_context_as_run_does() {
    require_builtins();
    let dir = int8_experiment("benchcontext", "");
    let exp = dir.join("exp.toml");
    for command in ["run", "bench"] {
        let out = splitbench(&[
            command,
            exp.to_str().unwrap(),
            "--set",
            "eval.max_length=4096",
            "--set",
            "eval.stride=4096",
        ]);
        assert!(!out.status.success(), "{command}: {}", text(&out));
        assert!(
            text(&out).contains("exceeds the model's context (2048 positions)"),
            "{command}: {}",
            text(&out)
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
        "--profile",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("one sweep"), "{}", text(&out));
    assert!(
        text(&out).contains("share of time by phase"),
        "{}",
        text(&out)
    );
    let rows: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["codec"], "int8-token");
    assert_eq!(rows[1]["path"], "host");
    for row in rows {
        let (processed, scored) = (
            row["tokens_per_s"].as_f64().unwrap(),
            row["scored_tokens_per_s"].as_f64().unwrap(),
        );
        assert!(0.0 < scored && scored <= processed, "{row}");
        // Every phase of the profiled run, and what no phase holds, add up to its time.
        let shares = row["phase_shares"].as_object().unwrap();
        assert_eq!(shares.len(), 8, "{row}");
        let total: f64 = shares.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((total - 1.0).abs() < 1e-6, "{row}");
        assert!(shares["attention"].as_f64().unwrap() > 0.0, "{row}");
    }
    let links = |row: &serde_json::Value| row["phase_shares"]["links"].as_f64().unwrap();
    assert!(links(&rows[1]) > links(&rows[0]), "{rows:?}");
    // Outside the codec and the copies: int8-token's error statistics; next to nothing for none.
    let share = |row: &serde_json::Value, key: &str| row[key].as_f64().unwrap();
    let overhead = |row| share(row, "link_overhead_share");
    assert!(overhead(&rows[0]) < overhead(&rows[1]), "{rows:?}");
    let at_links = share(&rows[1], "codec_share") + share(&rows[1], "transfer_share");
    assert!(at_links + overhead(&rows[1]) < 1.0, "{rows:?}");
}
