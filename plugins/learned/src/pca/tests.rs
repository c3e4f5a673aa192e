use super::*;
use splitbench_plugin_api::{
    convert::bytes_to_f32,
    measure::{synthetic_activations, ErrorStats},
};

fn fitted(p: PcaParams, samples: &[f32], hidden: usize) -> Pca {
    let state = crate::on_samples(samples, hidden, |view| calibrate(&p, view));
    Pca::from_state(&p, &state.unwrap()).unwrap()
}

/// The codec's wire and decoded values for `values`, rows of `hidden`.
fn round(c: &mut Pca, values: &[f32], hidden: usize) -> (Vec<u8>, Vec<f32>) {
    let raw = f32_to_bytes(values, DType::F32);
    let shape = [1, values.len() / hidden, hidden];
    let wire = c
        .encode(&TensorView::new(DType::F32, &shape, &raw).unwrap())
        .unwrap();
    let out = c.decode(&wire, &shape, DType::F32).unwrap();
    (wire, bytes_to_f32(&out, DType::F32))
}

#[test]
fn a_line_is_one_direction_by_hand() {
    // (0, 0) and (2, 2): mean (1, 1), all variance along (1, 1)/√2, so energy 0.99 keeps 1.
    let mut c = fitted(PcaParams::default(), &[0.0, 0.0, 2.0, 2.0], 2);
    assert_eq!(c.mean, [1.0, 1.0]);
    let d = std::f32::consts::FRAC_1_SQRT_2;
    assert!((c.basis[(0, 0)] - d).abs() < 1e-6 && (c.basis[(1, 0)] - d).abs() < 1e-6);
    // (3, 3): coefficient 2√2, 2.828125 in f16; (3, 1): √2 (1.4140625 in f16), the part
    // along (1, -1) is lost.
    let (wire, out) = round(&mut c, &[3.0, 3.0, 3.0, 1.0], 2);
    assert_eq!(wire.len(), 2 * 2);
    let far = 1.0 + 2.828125 * c.basis[(0, 0)];
    let near = 1.0 + 1.4140625 * c.basis[(0, 0)];
    for (got, want) in out.iter().zip([far, far, near, near]) {
        assert!((got - want).abs() < 1e-5, "{out:?}");
    }
}

#[test]
fn energy_picks_the_fewest_directions() {
    let eigenvalues = [2.0, 0.5, 0.0];
    let energy = |e| PcaParams {
        energy: Some(e),
        ..Default::default()
    };
    assert_eq!(chosen_rank(&energy(0.8), &eigenvalues).unwrap(), 1);
    assert_eq!(chosen_rank(&energy(0.81), &eigenvalues).unwrap(), 2);
    assert_eq!(chosen_rank(&energy(1.0), &eigenvalues).unwrap(), 2);
    let rank = |r| PcaParams {
        rank: Some(r),
        ..Default::default()
    };
    assert_eq!(chosen_rank(&rank(3), &eigenvalues).unwrap(), 3);
    let err = chosen_rank(&rank(4), &eigenvalues).unwrap_err().to_string();
    assert!(err.contains("`rank` must be in 1..=3"), "{err}");
}

#[test]
fn full_rank_f16_is_within_f16_rounding() {
    // Each token's error is f16's rounding of its coefficients: at most 2^-11 of their norm,
    // which at full rank is the token's distance from the mean (the basis is orthonormal).
    let hidden = 64;
    let p = PcaParams {
        rank: Some(hidden),
        ..Default::default()
    };
    let mut c = fitted(p, &synthetic_activations([1, 512, hidden], 1), hidden);
    let values = synthetic_activations([1, 32, hidden], 2);
    let (_, out) = round(&mut c, &values, hidden);
    let norm =
        |v: &mut dyn Iterator<Item = f32>| v.map(|x| f64::from(x).powi(2)).sum::<f64>().sqrt();
    for (t, (x, y)) in values.chunks(hidden).zip(out.chunks(hidden)).enumerate() {
        let error = norm(&mut x.iter().zip(y).map(|(a, b)| a - b));
        let centered = norm(&mut x.iter().zip(&c.mean).map(|(a, m)| a - m));
        // 1e-6 of the token's norm: the f32 products.
        let bound = centered / 2048.0 + 1e-6 * norm(&mut x.iter().copied());
        assert!(error <= bound, "token {t}: error {error}, bound {bound}");
    }
}

#[test]
fn wire_sizes_and_the_residual() {
    let hidden = 64;
    let samples = synthetic_activations([1, 512, hidden], 1);
    let values = synthetic_activations([1, 8, hidden], 2);
    let error = |coeff, residual| {
        let p = PcaParams {
            rank: Some(8),
            coeff,
            residual,
            ..Default::default()
        };
        let (wire, out) = round(&mut fitted(p, &samples, hidden), &values, hidden);
        (wire.len(), ErrorStats::between(&values, &out).rel_l2)
    };
    let (f16_len, plain) = error(Coefficients::F16, Residual::None);
    assert_eq!(f16_len, 8 * 2 * 8);
    assert_eq!(error(Coefficients::Int8, Residual::None).0, 8 * (2 + 8));
    assert_eq!(error(Coefficients::Int4, Residual::None).0, 8 * (2 + 4));
    let (len, with_residual) = error(Coefficients::F16, Residual::Int8);
    assert_eq!(len, 8 * (2 * 8 + 2 + hidden));
    assert!(
        with_residual < plain / 4.0,
        "{with_residual} against {plain}"
    );
}

#[test]
fn a_state_of_another_rank_is_refused() {
    let samples = synthetic_activations([1, 64, 16], 1);
    let raw = f32_to_bytes(&samples, DType::F32);
    let view = TensorView::new(DType::F32, &[1, 64, 16], &raw).unwrap();
    let four = PcaParams {
        rank: Some(4),
        ..Default::default()
    };
    let state = calibrate(&four, &view).unwrap();
    let five = PcaParams {
        rank: Some(5),
        ..Default::default()
    };
    let err = Pca::from_state(&five, &state).err().unwrap().to_string();
    assert!(err.contains("rank 4"), "{err}");
}
