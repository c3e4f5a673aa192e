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
