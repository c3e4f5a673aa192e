use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn identity_conforms() {
    assert_conformance(|| splitbench_codec_identity::new_codec("identity", "{}"));
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES`, default 2000
/// per codec).
#[test]
fn decoder_survives_hostile_wires() {
    let cases = std::env::var("SPLITBENCH_FUZZ_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000);
    for (codec, params) in [("identity", "{}"), ("identity", "")] {
        let report = splitbench_plugin_api::testkit::fuzz_decoder(
            || splitbench_codec_identity::new_codec(codec, params),
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
