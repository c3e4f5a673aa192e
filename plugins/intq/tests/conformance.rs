use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_intq_codec_conforms() {
    assert_conformance(|| splitbench_codec_intq::new_codec("int8-token", "{}"));
    for bits in 2..=8 {
        for block in [1, 32, 64, 100] {
            let params = format!(r#"{{"bits": {bits}, "block": {block}}}"#);
            assert_conformance(|| splitbench_codec_intq::new_codec("intn-block", &params));
            assert_conformance(|| splitbench_codec_intq::new_codec("intn-block-asym", &params));
        }
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
        ("int8-token", "{}"),
        ("intn-block", r#"{"bits": 3, "block": 32}"#),
        ("intn-block-asym", "{}"),
    ] {
        let report = splitbench_plugin_api::testkit::fuzz_decoder(
            || splitbench_codec_intq::new_codec(codec, params),
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
