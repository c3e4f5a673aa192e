use splitbench_plugin_api::testkit::{assert_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn identity_conforms() {
    assert_conformance(|| splitbench_codec_identity::new_codec("identity", "{}"));
}
