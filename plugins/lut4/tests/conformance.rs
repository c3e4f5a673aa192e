use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_lut4_codec_conforms() {
    for codec in ["nf4", "fp4"] {
        for block in [1, 7, 32, 64, 4096] {
            let params = format!(r#"{{"block": {block}}}"#);
            assert_conformance(|| splitbench_codec_lut4::new_codec(codec, &params));
        }
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_lut4::new_codec,
        &[("nf4", "{}"), ("fp4", r#"{"block": 7}"#)],
    );
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_lut4::new_codec,
        splitbench_codec_lut4::new_device_codec,
        &[
            ("nf4", "{}"),
            ("fp4", "{}"),
            ("nf4", r#"{"block": 7}"#),
            ("fp4", r#"{"block": 128}"#),
            ("nf4", r#"{"block": 1}"#),
        ],
    );
}
