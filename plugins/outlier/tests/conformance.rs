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

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_outlier::new_codec,
        &[
            ("outlier", "{}"),
            ("outlier", r#"{"mode": "channel", "block": 0}"#),
        ],
    );
}
