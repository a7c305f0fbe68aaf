//! scipy.interpolate inside a pickle: a `BSpline` (SplineTransformer's `bsplines_`) as its
//! constructor leaves it, which unpickling skips. Evaluation reads `k + 1` coefficients from the
//! knot interval it finds, so the knots must be sorted and finite, at least `2k + 2` of them,
//! and `c` must hold `len(t) - k - 1` rows.

use crate::evaluate::{Heap, Object, Val};

use super::arrays::{array_of, shape_if_array, Array};
use super::pickled::{dict_state, outcome};
use super::PickledOutcome;

/// The array under `name` in a spline's state; an inner error when the value is plainly no
/// array (the guard refuses it).
fn spline_array<'d>(
    heap: &Heap,
    data: &'d [u8],
    value: Option<Val>,
    name: &str,
) -> Result<Result<Array<'d>, String>, String> {
    let value = value.unwrap_or(Val::None);
    if shape_if_array(heap, value)?.is_none() {
        return Ok(Err(format!("{name} is not an array")));
    }
    array_of(heap, data, value).map(Ok)
}

/// Whether numpy sees an array as C-contiguous: one read in Fortran order is only where at most
/// one of its dimensions is longer than 1, or it is empty.
fn c_contiguous(array: &Array<'_>) -> bool {
    !array.fortran || array.shape.contains(&0) || array.shape.iter().filter(|&&d| d > 1).count() <= 1
}

/// `BSpline`: a degree `k`, knots `t` one-dimensional float64, finite, non-decreasing, at least
/// `2k + 2`; coefficients `c` float64 or complex128, C-contiguous, a row per knot interval.
pub(super) fn check_bspline(heap: &Heap, data: &[u8], spline: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        // No BUILD: an empty instance dict, which the guard refuses (no degree).
        let state = dict_state(spline, "a spline")?;
        // scipy >= 1.15 keeps the arrays as _t and _c behind properties; older releases as t and c.
        let field = |current: &str, older: &str| {
            let state = state?;
            heap.get(state, current).or_else(|| heap.get(state, older))
        };
        let k = match state.and_then(|s| heap.get(s, "k")) {
            Some(Val::Int(k)) if k >= 0 => k,
            _ => return Ok(Err("k is not a degree".into())),
        };
        let knots = match spline_array(heap, data, field("_t", "t"), "t")? {
            Ok(knots) => knots,
            Err(broken) => return Ok(Err(broken)),
        };
        if knots.shape.len() != 1 || knots.dtype.code.as_deref() != Some("<f8") {
            return Ok(Err("t is not a one-dimensional float64 array".into()));
        }
        let count = knots.bytes.len() / 8;
        let intervals = i128::try_from(count).unwrap_or(i128::MAX) - i128::from(k) - 1;
        if intervals < i128::from(k) + 1 {
            return Ok(Err(format!("t holds {count} knots for degree {k}")));
        }
        let mut previous = f64::NEG_INFINITY;
        for (i, bytes) in knots.bytes.chunks_exact(8).enumerate() {
            let knot = <[u8; 8]>::try_from(bytes)
                .map(f64::from_le_bytes)
                .unwrap_or(f64::NAN);
            if !knot.is_finite() || knot < previous {
                return Ok(Err(format!(
                    "t[{i}] is {knot}: knots not finite and non-decreasing"
                )));
            }
            previous = knot;
        }
        let coefficients = match spline_array(heap, data, field("_c", "c"), "c")? {
            Ok(coefficients) => coefficients,
            Err(broken) => return Ok(Err(broken)),
        };
        let Some(&rows) = coefficients.shape.first() else {
            return Ok(Err("c is a zero-dimensional array".into()));
        };
        let code = coefficients.dtype.code.as_deref();
        if !matches!(code, Some("<f8" | "<c16")) || !c_contiguous(&coefficients) {
            return Ok(Err(format!("c of dtype {code:?}, or not contiguous")));
        }
        if i128::from(rows) < intervals {
            return Ok(Err(format!("c has {rows} rows for {intervals} knot intervals")));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests {
    use crate::native_state::pickled::tests::{
        broken, floats, instance, int, int_array, outcome_for, pickle, zeros, Value,
    };
    use crate::native_state::PickledOutcome;

    const KNOTS: [f64; 8] = [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];

    /// A cubic `BSpline` with knots `t` and coefficients `c`, under scipy >= 1.15's names.
    fn spline<'a>(k: i32, t: Value<'a>, c: Value<'a>) -> Vec<u8> {
        pickle(&instance(
            "scipy.interpolate._bsplines",
            "BSpline",
            vec![("k", int(k)), ("_t", t), ("_c", c)],
        ))
    }

    #[test]
    fn a_splines_knots_and_coefficients_are_as_its_constructor_leaves_them() {
        let good = || floats(&[8], &KNOTS);
        assert_eq!(
            outcome_for(&spline(3, good(), zeros(&[4])), "BSpline"),
            PickledOutcome::Intact
        );
        assert_eq!(
            outcome_for(&spline(3, good(), zeros(&[4, 2])), "BSpline"),
            PickledOutcome::Intact
        );
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (
                spline(3, good(), zeros(&[2, 1])),
                "c has 2 rows for 4 knot intervals",
            ),
            (
                spline(3, floats(&[3], &[0.0, 1.0, 2.0]), zeros(&[4])),
                "t holds 3 knots for degree 3",
            ),
            (
                spline(
                    3,
                    floats(&[8], &[0.0, 0.0, 0.0, 2.0, 1.0, 1.0, 1.0, 1.0]),
                    zeros(&[4]),
                ),
                "t[4] is 1: knots not finite and non-decreasing",
            ),
            (
                spline(
                    3,
                    floats(&[8], &[0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, f64::NAN]),
                    zeros(&[4]),
                ),
                "t[7] is NaN",
            ),
            (spline(-1, good(), zeros(&[4])), "k is not a degree"),
            (spline(3, good(), zeros(&[])), "c is a zero-dimensional array"),
            (
                spline(3, zeros(&[8, 1]), zeros(&[4])),
                "t is not a one-dimensional float64 array",
            ),
            (spline(3, int(8), zeros(&[4])), "t is not an array"),
            (
                spline(3, good(), int_array(&[0, 0, 0, 0], "i8")),
                "c of dtype Some(\"<i8\"), or not contiguous",
            ),
        ];
        for (data, expected) in cases {
            let why = broken(outcome_for(&data, "BSpline"));
            assert!(why.contains(expected), "{expected}: {why}");
        }
        // Older scipy's names.
        let older = pickle(&instance(
            "scipy.interpolate._bsplines",
            "BSpline",
            vec![("k", int(3)), ("t", good()), ("c", zeros(&[3]))],
        ));
        let why = broken(outcome_for(&older, "BSpline"));
        assert!(why.contains("c has 3 rows for 4 knot intervals"), "{why}");
    }
}
