use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_cast_conforms() {
    for (codec, params) in [
        ("fp16", "{}"),
        ("bf16", "{}"),
        ("fp8-e4m3", "{}"),
        ("fp8-e5m2", "{}"),
        ("fp8-e4m3", r#"{"scale": "per-token"}"#),
        ("fp8-e5m2", r#"{"scale": "per-token"}"#),
    ] {
        assert_conformance(|| splitbench_codec_cast::new_codec(codec, params));
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
        ("fp16", "{}"),
        ("fp8-e4m3", r#"{"scale": "per-token"}"#),
        ("fp8-e5m2", "{}"),
    ] {
        let report = splitbench_plugin_api::testkit::fuzz_decoder(
            || splitbench_codec_cast::new_codec(codec, params),
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
