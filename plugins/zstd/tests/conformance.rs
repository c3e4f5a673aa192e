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

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_zstd::new_codec,
        &[
            ("zstd", r#"{"shuffle": true, "cast": "f16"}"#),
            ("zstd", "{}"),
        ],
    );
}
