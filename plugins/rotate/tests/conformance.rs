use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_rotate_configuration_conforms() {
    for bits in 2..=8 {
        for block in [0, 1, 32, 100] {
            let params = format!(r#"{{"bits": {bits}, "block": {block}, "seed": {bits}}}"#);
            assert_conformance(|| splitbench_codec_rotate::new_codec("hadamard-intn", &params));
        }
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_rotate::new_codec,
        &[
            ("hadamard-intn", "{}"),
            ("hadamard-intn", r#"{"bits": 3, "block": 32}"#),
        ],
    );
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_rotate::new_codec,
        splitbench_codec_rotate::new_device_codec,
        &[
            ("hadamard-intn", "{}"),
            (
                "hadamard-intn",
                r#"{"bits": 3, "block": 32, "seed": 12345}"#,
            ),
            ("hadamard-intn", r#"{"bits": 8, "block": 7}"#),
        ],
    );
}
