use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn zstd_conforms() {
    for params in [
        "{}",
        r#"{"shuffle": true}"#,
        r#"{"cast": "f16"}"#,
        r#"{"cast": "f16", "shuffle": true, "level": 9}"#,
    ] {
        assert_conformance(|| splitbench_codec_zstd::new_codec("zstd", params));
    }
}
