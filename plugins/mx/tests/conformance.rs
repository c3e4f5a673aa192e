use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

const CODECS: [&str; 6] = [
    "mxfp4",
    "mxfp6-e2m3",
    "mxfp6-e3m2",
    "mxfp8-e4m3",
    "mxfp8-e5m2",
    "nvfp4",
];

#[test]
fn every_mx_codec_conforms() {
    for codec in CODECS {
        for params in ["{}", r#"{"block": 7}"#, r#"{"block": 1}"#] {
            assert_conformance(|| splitbench_codec_mx::new_codec(codec, params));
        }
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    let configs: Vec<(&str, &str)> = CODECS.iter().map(|&c| (c, "{}")).collect();
    splitbench_plugin_api::testkit::assert_fuzz_clean(splitbench_codec_mx::new_codec, &configs);
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    let mut configs: Vec<(&str, &str)> = CODECS.iter().map(|&c| (c, "{}")).collect();
    configs.extend([
        ("mxfp6-e3m2", r#"{"block": 7}"#),
        ("nvfp4", r#"{"block": 5}"#),
    ]);
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_mx::new_codec,
        splitbench_codec_mx::new_device_codec,
        &configs,
    );
}
