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

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_cast::new_codec,
        &[
            ("fp16", "{}"),
            ("fp8-e4m3", r#"{"scale": "per-token"}"#),
            ("fp8-e5m2", "{}"),
        ],
    );
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_cast::new_codec,
        splitbench_codec_cast::new_device_codec,
        &[
            ("fp16", "{}"),
            ("bf16", "{}"),
            ("fp8-e4m3", "{}"),
            ("fp8-e4m3", r#"{"scale": "per-token"}"#),
            ("fp8-e5m2", "{}"),
            ("fp8-e5m2", r#"{"scale": "per-token"}"#),
        ],
    );
}
