use splitbench_plugin_api::testkit::{assert_calibrated_conformance, PeakAllocator};

#[global_allocator]
static ALLOC: PeakAllocator = PeakAllocator;

#[test]
fn pca_conforms() {
    assert_calibrated_conformance(
        splitbench_codec_learned::CALIBRATION,
        &[
            ("pca", "{}"),
            ("pca", r#"{"rank": 64}"#),
            ("pca", r#"{"rank": 8, "coeff": "int8"}"#),
            (
                "pca",
                r#"{"energy": 0.9, "coeff": "int4", "residual": "int4"}"#,
            ),
            ("pca", r#"{"rank": 16, "residual": "int8"}"#),
        ],
    );
}

#[test]
fn outlier_channels_conforms() {
    assert_calibrated_conformance(
        splitbench_codec_learned::CALIBRATION,
        &[
            ("outlier-channels", "{}"),
            ("outlier-channels", r#"{"channels": 0, "bits": 8}"#),
            ("outlier-channels", r#"{"fraction": 0.1, "bits": 2}"#),
            ("outlier-channels", r#"{"channels": 3, "bits": 3}"#),
        ],
    );
}

#[test]
fn scale_calibrated_conforms() {
    assert_calibrated_conformance(
        splitbench_codec_learned::CALIBRATION,
        &[
            ("scale-calibrated", "{}"),
            ("scale-calibrated", r#"{"bits": 4}"#),
            ("scale-calibrated", r#"{"bits": 3, "percentile": 0.99}"#),
        ],
    );
}

/// Each codec refuses the others' states.
#[test]
fn codecs_refuse_each_others_states() {
    assert_calibrated_conformance(
        splitbench_codec_learned::CALIBRATION,
        &[
            ("pca", r#"{"rank": 4}"#),
            ("outlier-channels", "{}"),
            ("scale-calibrated", "{}"),
        ],
    );
}
