//! The device path (src/device.rs) against the host path, on the CPU through the plugin API's
//! CUDA emulation. A test binary of its own: a process chooses its CUDA libraries once, and
//! here they must be the emulated ones.

#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_mulaw::new_codec,
        splitbench_codec_mulaw::new_device_codec,
        &[("mulaw", "{}"), ("mulaw", r#"{"mu": 15.0}"#)],
    );
}
