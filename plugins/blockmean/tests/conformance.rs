use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_block_mean_configuration_conforms() {
    for permute in ["none", "features", "tokens", "both"] {
        for (tb, fb) in [(1, 1), (8, 8), (3, 100), (64, 7)] {
            let params =
                format!(r#"{{"token_block": {tb}, "feat_block": {fb}, "permute": "{permute}"}}"#);
            assert_conformance(|| splitbench_codec_blockmean::new_codec("block-mean", &params));
        }
    }
    let params = r#"{"model": "product", "permute": "both"}"#;
    assert_conformance(|| splitbench_codec_blockmean::new_codec("block-mean", params));
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_blockmean::new_codec,
        &[
            ("block-mean", "{}"),
            (
                "block-mean",
                r#"{"token_block": 3, "feat_block": 5, "permute": "both"}"#,
            ),
            ("block-mean", r#"{"permute": "tokens"}"#),
            ("block-mean", r#"{"model": "product"}"#),
        ],
    );
}
