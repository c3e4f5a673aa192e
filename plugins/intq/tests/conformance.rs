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
        let params = format!(r#"{{"bits": {bits}}}"#);
        assert_conformance(|| splitbench_codec_intq::new_codec("intn-affine-token", &params));
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_intq::new_codec,
        &[
            ("int8-token", "{}"),
            ("intn-block", r#"{"bits": 3, "block": 32}"#),
            ("intn-block-asym", "{}"),
            ("intn-affine-token", "{}"),
            ("intn-affine-token", r#"{"bits": 3}"#),
        ],
    );
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_intq::new_codec,
        splitbench_codec_intq::new_device_codec,
        &[
            ("int8-token", "{}"),
            ("intn-block", r#"{"bits": 4, "block": 64}"#),
            ("intn-block", r#"{"bits": 3, "block": 7}"#),
            ("intn-block", r#"{"bits": 8, "block": 100}"#),
            ("intn-block-asym", r#"{"bits": 3, "block": 32}"#),
            ("intn-block-asym", r#"{"bits": 2, "block": 64}"#),
        ],
    );
}
