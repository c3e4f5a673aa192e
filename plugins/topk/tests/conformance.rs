use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn topk_conforms() {
    for fraction in ["0.01", "0.1", "0.5", "1.0"] {
        let params = format!(r#"{{"fraction": {fraction}}}"#);
        assert_conformance(|| splitbench_codec_topk::new_codec("topk", &params));
    }
}
