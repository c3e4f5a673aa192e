use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn zstd_conforms() {
    for params in [
        "{}",
        r#"{"shuffle": true}"#,
        r#"{"cast": "f16"}"#,
        r#"{"cast": "f16", "shuffle": true, "level": 9}"#,
    ] {
        assert_conformance(|| splitbench_codec_zstd::new_codec("zstd", params));
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
        ("zstd", r#"{"shuffle": true, "cast": "f16"}"#),
        ("zstd", "{}"),
    ] {
        let report = splitbench_plugin_api::testkit::fuzz_decoder(
            || splitbench_codec_zstd::new_codec(codec, params),
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
