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

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_outlier::new_codec,
        splitbench_codec_outlier::new_device_codec,
        &[
            ("outlier", "{}"),
            ("outlier", r#"{"threshold": 1.0, "bits": 3, "block": 32}"#),
            ("outlier", r#"{"threshold": 0.5, "bits": 4, "block": 0}"#),
            ("outlier", r#"{"mode": "channel", "threshold": 2.0}"#),
            (
                "outlier",
                r#"{"mode": "channel", "threshold": 0.0, "bits": 2}"#,
            ),
        ],
    );
}
