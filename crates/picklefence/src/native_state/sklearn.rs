//! scikit-learn estimators inside a pickle: a decision tree estimator's `Tree` must be built for
//! as many features as the estimator checks its input for (`predict` checks `X`'s width against
//! `n_features_in_`, then the `Tree` reads `X[i, feature]` for features below its own
//! `n_features`, the first argument of its constructor), and a forest's estimators' trees for
//! the forest's input width (it hands them `X` unchecked). Ensembles whose estimators sit in an
//! array (gradient boosting) or that pick columns per estimator (bagging) are left to the guard.

use crate::evaluate::{Heap, Object, Val};

use super::pickled::{class_of, outcome};
use super::PickledOutcome;

const TREE: (&str, &str) = ("sklearn.tree._tree", "Tree");

/// The feature count an estimator's state says `predict` checks its input against
/// (`n_features_in_`; scikit-learn before 1.2 also kept `n_features_`), None when it keeps
/// neither (a bool is not one, as for the guard); a NumPy integer is left to the guard.
fn input_width(heap: &Heap, state: Val) -> Result<Option<i64>, String> {
    for name in ["n_features_in_", "n_features_"] {
        match heap.get(state, name) {
            Some(Val::Int(width)) => return Ok(Some(width)),
            None | Some(Val::Bool(_)) => {}
            Some(_) => return Err(format!("{name} is not an int")),
        }
    }
    Ok(None)
}

const MISSING_WIDTH: &str = "n_features_in_ is missing: predict would not check its input's width";

/// The state dict an estimator's (single) BUILD gave it, or why it cannot be read.
fn estimator_state(object: &Object) -> Result<Option<Val>, String> {
    if object.rebuilt {
        return Err("an estimator built twice".into());
    }
    match object.state {
        None => Ok(None),
        Some(state @ Val::Dict(_)) => Ok(Some(state)),
        Some(_) => Err("an estimator whose state is not a dict".into()),
    }
}

/// `n_features` of the `Tree` a `tree_` value is: the first argument of its constructor.
fn tree_width(heap: &Heap, tree: Val) -> Result<i64, String> {
    let object = heap
        .object(tree)
        .ok_or("tree_ is not an object the pickle made")?;
    if class_of(heap, object) != Some(TREE) {
        return Err("tree_ is not a Tree".into());
    }
    heap.tuple(object.args)
        .and_then(|args| heap.int(*args.first()?))
        .ok_or_else(|| "a Tree called without n_features".into())
}

/// A decision tree estimator: `tree_.n_features == n_features_in_`.
pub(super) fn check_tree_estimator(heap: &Heap, _data: &[u8], estimator: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = estimator_state(estimator)? else {
            return Ok(Ok(())); // unfitted: predict raises first
        };
        let Some(tree) = heap.get(state, "tree_") else {
            return Ok(Ok(()));
        };
        let features = tree_width(heap, tree)?;
        let Some(width) = input_width(heap, state)? else {
            return Ok(Err(MISSING_WIDTH.into()));
        };
        if features != width {
            return Ok(Err(format!(
                "tree_.n_features is {features} for an input of {width} features"
            )));
        }
        Ok(Ok(()))
    };
    outcome(run())
}

/// A forest (or gradient boosting, bagging, isolation forest): every estimator's `Tree` built for
/// the ensemble's input width, where the estimators are a list of estimators the pickle made
/// and no columns are picked per estimator.
pub(super) fn check_tree_ensemble(heap: &Heap, _data: &[u8], ensemble: &Object) -> PickledOutcome {
    let run = || -> Result<Result<(), String>, String> {
        let Some(state) = estimator_state(ensemble)? else {
            return Ok(Ok(()));
        };
        let Some(estimators) = heap.get(state, "estimators_") else {
            return Ok(Ok(())); // unfitted
        };
        if heap
            .get(state, "estimators_features_")
            .is_some_and(|f| f != Val::None)
        {
            return Err("columns picked per estimator (estimators_features_)".into());
        }
        // As the ensemble ends up holding them: a list changed by SETITEM is not read.
        let items = heap
            .list(estimators, u64::MAX)
            .ok_or("estimators_ is not a list the pickle made")?;
        let width = input_width(heap, state)?;
        for (number, &item) in items.iter().enumerate() {
            let estimator = heap
                .object(item)
                .ok_or("an estimator that is not an object the pickle made")?;
            let Some(tree) = estimator_state(estimator)?.and_then(|s| heap.get(s, "tree_")) else {
                continue;
            };
            let features = tree_width(heap, tree)?;
            let Some(width) = width else {
                return Ok(Err(MISSING_WIDTH.into()));
            };
            if features != width {
                return Ok(Err(format!(
                    "estimators_[{number}].tree_.n_features is {features} for an input of {width} features"
                )));
            }
        }
        Ok(Ok(()))
    };
    outcome(run())
}

#[cfg(test)]
mod tests {
    use crate::evaluate::tests::{evaluate, Asm};
    use crate::native_state::{check_pickled, PickledOutcome};

    /// `DecisionTreeRegressor` (NEWOBJ) BUILT with `{n_features_in_: width, tree_: Tree(features)}`
    /// (the width left out when None).
    fn estimator(asm: Asm, width: Option<i32>, features: i32) -> Asm {
        let asm = asm
            .global("sklearn.tree._classes", "DecisionTreeRegressor")
            .op(b')')
            .op(0x81)
            .op(b'}');
        let asm = match width {
            Some(width) => asm.text("n_features_in_").int(width).op(b's'),
            None => asm,
        };
        asm.text("tree_")
            .global("sklearn.tree._tree", "Tree")
            .int(features)
            .op(0x85)
            .op(b'R')
            .op(b's')
            .op(b'b')
    }

    fn outcomes(data: &[u8]) -> Vec<(&'static str, PickledOutcome)> {
        let evaluator = evaluate(data, 1 << 20);
        check_pickled(&evaluator.heap, data)
            .into_iter()
            .filter(|s| s.name != "Tree") // its nodes: no state here
            .map(|s| (s.name, s.outcome))
            .collect()
    }

    fn lone(width: Option<i32>, features: i32) -> Vec<u8> {
        estimator(Asm::default().op(0x80).op(2), width, features)
            .op(b'.')
            .0
    }

    fn forest(width: i32, features: [i32; 2]) -> Vec<u8> {
        let asm = Asm::default()
            .op(0x80)
            .op(2)
            .global("sklearn.ensemble._forest", "RandomForestRegressor")
            .op(b')')
            .op(0x81)
            .op(b'}')
            .text("n_features_in_")
            .int(width)
            .op(b's')
            .text("estimators_")
            .op(b']')
            .op(b'(');
        let asm = features
            .into_iter()
            .fold(asm, |asm, f| estimator(asm, Some(f), f));
        asm.op(b'e').op(b's').op(b'b').op(b'.').0
    }

    #[test]
    fn a_tree_is_built_for_its_estimators_input_width() {
        assert_eq!(
            outcomes(&lone(Some(3), 3)),
            [("DecisionTreeRegressor", PickledOutcome::Intact)]
        );
        let [(_, PickledOutcome::Broken(why))] = &outcomes(&lone(Some(3), 100_000_000))[..] else {
            panic!("not broken")
        };
        assert!(
            why.contains("tree_.n_features is 100000000 for an input of 3"),
            "{why}"
        );
        let [(_, PickledOutcome::Broken(why))] = &outcomes(&lone(None, 3))[..] else {
            panic!("not broken")
        };
        assert!(why.contains("n_features_in_ is missing"), "{why}");
    }

    #[test]
    fn a_forests_trees_are_built_for_its_input_width() {
        let intact = outcomes(&forest(3, [3, 3]));
        assert!(
            intact.iter().all(|(_, o)| *o == PickledOutcome::Intact),
            "{intact:?}"
        );
        // Each estimator agrees with its own width; the forest hands them its narrower input.
        let found = outcomes(&forest(3, [3, 7]));
        let broken: Vec<_> = found
            .iter()
            .filter_map(|(name, o)| match o {
                PickledOutcome::Broken(why) => Some((*name, why.as_str())),
                _ => None,
            })
            .collect();
        assert_eq!(
            broken,
            [(
                "RandomForestRegressor",
                "estimators_[1].tree_.n_features is 7 for an input of 3 features"
            )]
        );
    }
}
