//! The conformance kit, as every built-in codec family runs it: the checks with the
//! allocation limit (`PeakAllocator` installed), the decoder fuzzer, and the device path
//! against the host path through the CPU emulation of CUDA (a C and a C++ compiler are all it
//! needs). One test binary: a process chooses its CUDA libraries once, and in this one they
//! are the emulated ones.

use splitbench_plugin_api::testkit::{
    assert_conformance, assert_device_matches_host, assert_fuzz_clean, PeakAllocator,
};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

/// Every parameter choice worth checking; the same list for each check.
const CONFIGS: &[(&str, &str)] = &[("mulaw", "{}"), ("mulaw", r#"{"mu": 15.0}"#)];

#[test]
fn every_config_conforms() {
    for &(codec, params) in CONFIGS {
        assert_conformance(|| splitbench_codec_mulaw::new_codec(codec, params));
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    assert_fuzz_clean(splitbench_codec_mulaw::new_codec, CONFIGS);
}

/// The device path (src/device.rs) writes the host path's wire and decodes it to the host
/// path's bytes.
#[test]
fn device_path_writes_the_host_wire() {
    assert_device_matches_host(
        splitbench_codec_mulaw::new_codec,
        splitbench_codec_mulaw::new_device_codec,
        CONFIGS,
    );
}
