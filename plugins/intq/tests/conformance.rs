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
        let params = format!(r#"{{"bits": {bits}}}"#);
        assert_conformance(|| splitbench_codec_intq::new_codec("intn-affine-token", &params));
        let params = format!(r#"{{"bits": {bits}, "entropy": "rans"}}"#);
        assert_conformance(|| splitbench_codec_intq::new_codec("intn-affine-token", &params));
        for codec in ["intn-block", "intn-block-asym"] {
            let params = format!(r#"{{"bits": {bits}, "block": 32, "entropy": "rans"}}"#);
            assert_conformance(|| splitbench_codec_intq::new_codec(codec, &params));
        }
    }
}

/// Bounded fuzzing of the decoder with hostile wire bytes (`SPLITBENCH_FUZZ_CASES` per
/// configuration, default 2000).
#[test]
fn decoder_survives_hostile_wires() {
    splitbench_plugin_api::testkit::assert_fuzz_clean(
        splitbench_codec_intq::new_codec,
        &[
            ("int8-token", "{}"),
            ("intn-block", r#"{"bits": 3, "block": 32}"#),
            ("intn-block-asym", "{}"),
            ("intn-affine-token", "{}"),
            ("intn-affine-token", r#"{"bits": 3}"#),
            ("intn-affine-token", r#"{"entropy": "rans"}"#),
            ("intn-block", r#"{"bits": 3, "entropy": "rans"}"#),
            (
                "intn-block-asym",
                r#"{"bits": 5, "block": 7, "entropy": "rans"}"#,
            ),
        ],
    );
}

/// The CUDA path against the host path, through the CPU emulation of CUDA.
#[test]
fn device_path_writes_the_host_wire() {
    splitbench_plugin_api::testkit::assert_device_matches_host(
        splitbench_codec_intq::new_codec,
        splitbench_codec_intq::new_device_codec,
        &[
            ("int8-token", "{}"),
            ("intn-block", r#"{"bits": 4, "block": 64}"#),
            ("intn-block", r#"{"bits": 3, "block": 7}"#),
            ("intn-block", r#"{"bits": 8, "block": 100}"#),
            ("intn-block-asym", r#"{"bits": 3, "block": 32}"#),
            ("intn-block-asym", r#"{"bits": 2, "block": 64}"#),
        ],
    );
}

/// The entropy-coded wire decodes to exactly what the packed wire decodes to, and is shorter on
/// activations (whose codes concentrate near the middle of the range).
#[test]
fn rans_decodes_as_the_packed_wire() {
    use splitbench_plugin_api::{
        convert::f32_to_bytes, measure::synthetic_activations, DType, TensorView,
    };
    let shape = [2, 16, 576];
    let raw = f32_to_bytes(&synthetic_activations(shape, 3), DType::BF16);
    let view = TensorView::new(DType::BF16, &shape, &raw).unwrap();
    for (codec, bits) in [
        ("intn-block", 4),
        ("intn-block-asym", 3),
        ("intn-affine-token", 8),
    ] {
        let plain = format!(r#"{{"bits": {bits}}}"#);
        let rans = format!(r#"{{"bits": {bits}, "entropy": "rans"}}"#);
        let mut a = splitbench_codec_intq::new_codec(codec, &plain).unwrap();
        let mut b = splitbench_codec_intq::new_codec(codec, &rans).unwrap();
        let (wa, wb) = (a.encode(&view).unwrap(), b.encode(&view).unwrap());
        assert!(
            wb.len() < wa.len(),
            "{codec}: rans {} vs packed {}",
            wb.len(),
            wa.len()
        );
        assert_eq!(
            a.decode(&wa, &shape, DType::BF16).unwrap(),
            b.decode(&wb, &shape, DType::BF16).unwrap(),
            "{codec}"
        );
    }
}
