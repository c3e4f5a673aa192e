use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn outlier_conforms() {
    for params in [
        "{}",
        r#"{"block": 0}"#,
        r#"{"bits": 2, "block": 32, "threshold": 1.0}"#,
        r#"{"mode": "channel"}"#,
        r#"{"mode": "channel", "bits": 8, "block": 0, "threshold": 50.0}"#,
    ] {
        assert_conformance(|| splitbench_codec_outlier::new_codec("outlier", params));
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES`, default 2000
/// per codec).
#[test]
fn decoder_survives_hostile_wires() {
    let cases = std::env::var("SPLITBENCH_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    for (codec, params) in [
        ("outlier", "{}"),
        ("outlier", r#"{"mode": "channel", "block": 0}"#),
    ] {
        let report = splitbench_plugin_api::testkit::fuzz_decoder(
            || splitbench_codec_outlier::new_codec(codec, params),
            cases,
            1,
        );
        assert!(
            report.findings.is_empty(),
            "{codec} {params}: {:#?}",
            report.findings
        );
        assert_eq!(report.executions, cases);
    }
}
