use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn every_intq_codec_conforms() {
    assert_conformance(|| splitbench_codec_intq::new_codec("int8-token", "{}"));
    for bits in 2..=8 {
        for block in [1, 32, 64, 100] {
            let params = format!(r#"{{"bits": {bits}, "block": {block}}}"#);
            assert_conformance(|| splitbench_codec_intq::new_codec("intn-block", &params));
            assert_conformance(|| splitbench_codec_intq::new_codec("intn-block-asym", &params));
        }
    }
}
