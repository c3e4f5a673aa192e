use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_hqq_configuration_conforms() {
    for bits in 1..=8 {
        for group in [1, 7, 64, 1000] {
            let params = format!(r#"{{"bits": {bits}, "group": {group}}}"#);
            assert_conformance(|| splitbench_codec_hqq::new_codec("hqq", &params));
        }
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_hqq::new_codec,
        &[
            ("hqq", "{}"),
            ("hqq", r#"{"bits": 3, "group": 7}"#),
            ("hqq", r#"{"bits": 1, "group": 64}"#),
        ],
    );
}
