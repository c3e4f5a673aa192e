use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn topk_conforms() {
    for fraction in ["0.01", "0.1", "0.5", "1.0"] {
        let params = format!(r#"{{"fraction": {fraction}}}"#);
        assert_conformance(|| splitbench_codec_topk::new_codec("topk", &params));
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_topk::new_codec,
        &[("topk", "{}"), ("topk", r#"{"fraction": 0.5}"#)],
    );
}
