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

use crate::native_state::pickled::tests::{
    broken, floats, instance, int, int_array, none, object_array, outcome_for, pickle, sequence, text, zeros,
    Value,
};

const SVM: &str = "sklearn.svm._classes";

/// Fields of a test estimator replaced (None: left out) or added.
type Changes<'a> = Vec<(&'a str, Option<Value<'a>>)>;

/// A fitted SVM of `class` with `fields` (3 classes, 5 support vectors of 2 features), each
/// replaced by or added from `changes` (None: left out).
fn svm<'a>(class: &'a str, changes: Changes<'a>) -> Vec<u8> {
    let mut fields: Vec<(&str, Option<Value<'_>>)> = vec![
        ("kernel", Some(text("rbf"))),
        ("support_", Some(int_array(&[0, 1, 2, 3, 4], "i4"))),
        ("support_vectors_", Some(zeros(&[5, 2]))),
        ("_n_support", Some(int_array(&[2, 2, 1], "i4"))),
        ("_dual_coef_", Some(zeros(&[2, 5]))),
        ("_intercept_", Some(zeros(&[3]))),
        ("_probA", Some(zeros(&[0]))),
        ("_probB", Some(zeros(&[0]))),
    ];
    for (key, value) in changes {
        match fields.iter_mut().find(|(k, _)| *k == key) {
            Some(field) => field.1 = value,
            None => fields.push((key, value)),
        }
    }
    let fields = fields.into_iter().filter_map(|(k, v)| Some((k, v?))).collect();
    pickle(&instance(SVM, class, fields))
}

/// A CSR matrix of `shape` holding `stored` values (its indices are not needed here).
fn csr<'a>(shape: &'a [i32], stored: &'a [i32]) -> Value<'a> {
    instance(
        "scipy.sparse._csr",
        "csr_matrix",
        vec![
            ("_shape", sequence(shape.iter().map(|&d| int(d)).collect(), false)),
            ("data", zeros(stored)),
        ],
    )
}

#[test]
fn an_svms_counts_agree_with_its_vectors() {
    for class in ["SVC", "NuSVC"] {
        assert_eq!(outcome_for(&svm(class, vec![]), class), PickledOutcome::Intact);
    }
    // Unfitted: no support_.
    assert_eq!(
        outcome_for(&svm("SVC", vec![("support_", None)]), "SVC"),
        PickledOutcome::Intact
    );
    // Probability estimates: one per class pair.
    let probability = svm(
        "SVC",
        vec![("_probA", Some(zeros(&[3]))), ("_probB", Some(zeros(&[3])))],
    );
    assert_eq!(outcome_for(&probability, "SVC"), PickledOutcome::Intact);
    let cases: Vec<(Changes<'_>, &str)> = vec![
        (
            vec![("support_", Some(int_array(&[0; 2000], "i4")))],
            "support_ has 2000 indices for 5 support vectors",
        ),
        (
            vec![("_n_support", Some(int_array(&[7, -3, 1], "i4")))],
            "_n_support is [7, -3, 1] for 5 support vectors",
        ),
        (
            vec![("_n_support", Some(int_array(&[2, 2, 2], "i4")))],
            "_n_support is [2, 2, 2]",
        ),
        (
            vec![("_n_support", Some(int_array(&[5], "i4")))],
            "_n_support has 1 classes",
        ),
        (
            vec![("_n_support", Some(zeros(&[3])))],
            "not one-dimensional integer arrays",
        ),
        (
            vec![("_dual_coef_", Some(zeros(&[1, 5])))],
            "_dual_coef_ has shape [1, 5] for 3 classes and 5 vectors",
        ),
        (vec![("_dual_coef_", None)], "_dual_coef_ has shape []"),
        (
            vec![("_intercept_", Some(zeros(&[1])))],
            "_intercept_ has 1 values for 3 class pairs",
        ),
        (
            vec![("_probA", Some(zeros(&[2])))],
            "_probA has 2 values for 3 class pairs",
        ),
    ];
    for (changes, expected) in cases {
        let why = broken(outcome_for(&svm("SVC", changes), "SVC"));
        assert!(why.contains(expected), "{expected}: {why}");
    }
}

#[test]
fn regression_and_one_class_svms_have_two_count_entries() {
    for class in ["SVR", "NuSVR", "OneClassSVM"] {
        let two = svm(
            class,
            vec![
                ("_n_support", Some(int_array(&[0, 0], "i4"))),
                ("_dual_coef_", Some(zeros(&[1, 5]))),
                ("_intercept_", Some(zeros(&[1]))),
            ],
        );
        assert_eq!(outcome_for(&two, class), PickledOutcome::Intact, "{class}");
        let why = broken(outcome_for(&svm(class, vec![]), class));
        assert!(
            why.contains("3 entries for a regression or one-class model"),
            "{why}"
        );
    }
    // The instance dict's _impl shadows the class's.
    let shadowed = svm("SVR", vec![("_impl", Some(text("c_svc")))]);
    assert_eq!(outcome_for(&shadowed, "SVR"), PickledOutcome::Intact);
}

#[test]
fn a_sparse_svm_is_read_through_its_matrices() {
    let sparse = |rows: i32, stored: &'static [i32]| {
        svm(
            "SVC",
            vec![
                ("support_vectors_", Some(csr(vec![rows, 2].leak(), &[10]))),
                ("_dual_coef_", Some(csr(&[2, 5], stored))),
            ],
        )
    };
    assert_eq!(outcome_for(&sparse(5, &[10]), "SVC"), PickledOutcome::Intact);
    let why = broken(outcome_for(&sparse(7, &[10]), "SVC"));
    assert!(
        why.contains("support_ has 5 indices for 7 support vectors"),
        "{why}"
    );
    let why = broken(outcome_for(&sparse(5, &[3]), "SVC"));
    assert!(why.contains("_dual_coef_ holds 3 stored coefficients"), "{why}");
}

#[test]
fn a_precomputed_svms_support_lies_inside_its_training_samples() {
    let precomputed = |support: &'static [i64], fit: Option<Value<'static>>| {
        svm(
            "SVC",
            vec![
                ("kernel", Some(text("precomputed"))),
                ("support_", Some(int_array(support, "i4"))),
                ("support_vectors_", Some(zeros(&[0, 0]))),
                ("shape_fit_", fit),
            ],
        )
    };
    let samples = || Some(sequence(vec![int(10), int(10)], false));
    assert_eq!(
        outcome_for(&precomputed(&[0, 1, 2, 3, 9], samples()), "SVC"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(&precomputed(&[0, 1, 2, 3, 10], samples()), "SVC"));
    assert!(why.contains("support_[4] is 10, outside [0, 10)"), "{why}");
    let why = broken(outcome_for(&precomputed(&[0, 1, 2, 3, 4], None), "SVC"));
    assert!(why.contains("shape_fit_ is missing"), "{why}");
}

/// A OneHotEncoder of two features with `fields`.
fn encoder(fields: Vec<(&str, Value<'_>)>) -> Vec<u8> {
    pickle(&instance(
        "sklearn.preprocessing._encoders",
        "OneHotEncoder",
        fields,
    ))
}

fn counts(counts: &[i32]) -> Value<'_> {
    sequence(counts.iter().map(|&n| int(n)).collect(), true)
}

/// Sorted float categories 0, 1, ... `n - 1`.
fn sorted(n: i32) -> Value<'static> {
    Box::new(move |asm| {
        let values: Vec<f64> = (0..n).map(f64::from).collect();
        let shape = [n];
        let value = floats(&shape, &values);
        value(asm)
    })
}

/// `categories_`: two features of 4 values each (the second of `second`).
fn categories(second: i32) -> Value<'static> {
    sequence(vec![sorted(4), sorted(second)], true)
}

#[test]
fn a_one_hot_encoders_categories_are_sorted_as_fit_sorts_them() {
    let with = |first: Value<'static>| {
        encoder(vec![
            ("categories_", sequence(vec![first, sorted(4)], true)),
            ("_n_features_outs", counts(&[4, 4])),
        ])
    };
    let name = "OneHotEncoder";
    let values = |v: &'static [f64]| -> Value<'static> {
        Box::new(move |asm| floats(&[i32::try_from(v.len()).unwrap()], v)(asm))
    };
    // One NaN, last: as fit keeps missing values.
    let intact = with(values(&[0.0, 1.0, 2.0, f64::NAN]));
    assert_eq!(outcome_for(&intact, name), PickledOutcome::Intact);
    let unsorted = "categories_[0] is not strictly increasing with missing values last (as fit sorts them)";
    for broken_values in [
        &[1.0, 0.0, 2.0, 3.0][..],
        &[0.0, 1.0, 1.0, 3.0],
        &[0.0, f64::NAN, 2.0, 3.0],
        &[0.0, 1.0, f64::NAN, f64::NAN],
    ] {
        let data = with(values(broken_values));
        assert_eq!(broken(outcome_for(&data, name)), unsorted, "{broken_values:?}");
    }
    // Objects as Python compares them: strs in order, then None, then NaN.
    let objects = |items: Vec<Value<'static>>| with(object_array(items));
    let nan: Value<'static> = Box::new(|mut asm: Asm| {
        asm.0.push(b'G');
        asm.0.extend(f64::NAN.to_be_bytes());
        asm
    });
    let intact = objects(vec![text("a"), text("b"), none(), nan]);
    assert_eq!(outcome_for(&intact, name), PickledOutcome::Intact);
    let data = objects(vec![text("b"), text("a"), text("c"), text("d")]);
    assert_eq!(broken(outcome_for(&data, name)), unsorted);
    // A str and a number: Python cannot order them (fit refuses them).
    let data = objects(vec![text("a"), int(1), text("c"), text("d")]);
    assert_eq!(broken(outcome_for(&data, name)), unsorted);
}

#[test]
fn a_one_hot_encoders_codes_lie_below_its_output_counts() {
    let plain = |second: i32, outs: &'static [i32]| {
        encoder(vec![
            ("categories_", categories(second)),
            ("_n_features_outs", counts(outs)),
        ])
    };
    assert_eq!(
        outcome_for(&plain(4, &[4, 4]), "OneHotEncoder"),
        PickledOutcome::Intact
    );
    // Unfitted.
    assert_eq!(
        outcome_for(&encoder(vec![]), "OneHotEncoder"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(&plain(54, &[4, 4]), "OneHotEncoder"));
    assert!(
        why.contains("_n_features_outs[1]: item 4 is 4, outside [0, 4)"),
        "{why}"
    );
    let why = broken(outcome_for(&plain(4, &[4]), "OneHotEncoder"));
    assert!(why.contains("1 counts for 2 features"), "{why}");
    let why = broken(outcome_for(&plain(4, &[4, -1]), "OneHotEncoder"));
    assert!(why.contains("not a list of counts"), "{why}");
    let as_array = encoder(vec![
        ("categories_", categories(4)),
        ("_n_features_outs", int_array(&[4, 4], "i8")),
    ]);
    let why = broken(outcome_for(&as_array, "OneHotEncoder"));
    assert!(why.contains("not a list of counts"), "{why}");
}

#[test]
fn a_one_hot_encoders_codes_are_shifted_past_the_dropped_one() {
    let dropped = |outs: &'static [i32]| {
        encoder(vec![
            ("categories_", categories(4)),
            ("_drop_idx_after_grouping", object_array(vec![int(0), none()])),
            ("_n_features_outs", counts(outs)),
        ])
    };
    assert_eq!(
        outcome_for(&dropped(&[3, 4]), "OneHotEncoder"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(&dropped(&[3, 3]), "OneHotEncoder"));
    assert!(why.contains("_n_features_outs[1]: item 3 is 3"), "{why}");
    // Every feature dropping one: an integer array.
    let all = encoder(vec![
        ("categories_", categories(4)),
        ("_drop_idx_after_grouping", int_array(&[3, 1], "i8")),
        ("_n_features_outs", counts(&[3, 3])),
    ]);
    assert_eq!(outcome_for(&all, "OneHotEncoder"), PickledOutcome::Intact);
}

#[test]
fn a_one_hot_encoders_infrequent_categories_map_into_its_outputs() {
    let mapped = |enabled: bool, mapping: Value<'static>, outs: &'static [i32]| {
        encoder(vec![
            ("categories_", categories(4)),
            (
                "_infrequent_enabled",
                Box::new(move |asm| asm.op(if enabled { 0x88 } else { 0x89 })),
            ),
            (
                "_default_to_infrequent_mappings",
                sequence(vec![none(), mapping], true),
            ),
            ("_n_features_outs", counts(outs)),
        ])
    };
    let grouped = || int_array(&[0, 0, 1, 2], "i8");
    assert_eq!(
        outcome_for(&mapped(true, grouped(), &[4, 3]), "OneHotEncoder"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(
        &mapped(true, int_array(&[0, 0, 1, 5], "i8"), &[4, 3]),
        "OneHotEncoder",
    ));
    assert!(why.contains("item 3 is 5, outside [0, 3)"), "{why}");
    let why = broken(outcome_for(&mapped(true, zeros(&[4]), &[4, 3]), "OneHotEncoder"));
    assert!(
        why.contains("_default_to_infrequent_mappings[1] is not integers"),
        "{why}"
    );
    // Not enabled: the mappings are not used, the categories' own codes are.
    let why = broken(outcome_for(&mapped(false, grouped(), &[4, 3]), "OneHotEncoder"));
    assert!(why.contains("item 3 is 3, outside [0, 3)"), "{why}");
}

fn birch(centers: &[i32], norms: &[i32]) -> Vec<u8> {
    pickle(&instance(
        "sklearn.cluster._birch",
        "Birch",
        vec![
            ("n_features_in_", int(2)),
            ("subcluster_centers_", zeros(centers)),
            ("_subcluster_norms", zeros(norms)),
        ],
    ))
}

#[test]
fn birch_keeps_one_norm_per_center_as_wide_as_its_input() {
    assert_eq!(
        outcome_for(&birch(&[3, 2], &[3]), "Birch"),
        PickledOutcome::Intact
    );
    let why = broken(outcome_for(&birch(&[3, 2], &[1]), "Birch"));
    assert!(
        why.contains("_subcluster_norms has shape [1] for 3 centers"),
        "{why}"
    );
    let why = broken(outcome_for(&birch(&[3, 5], &[3]), "Birch"));
    assert!(
        why.contains("subcluster_centers_ has shape [3, 5] for 2 features"),
        "{why}"
    );
    let why = broken(outcome_for(&birch(&[6], &[6]), "Birch"));
    assert!(why.contains("subcluster_centers_ has shape [6]"), "{why}");
}

const BISECTING: (&str, &str) = ("sklearn.cluster._bisect_k_means", "_BisectingTree");

/// A bisecting tree node with a center of shape `center` and children.
fn node<'a>(center: &'a [i32], left: Value<'a>, right: Value<'a>) -> Value<'a> {
    instance(
        BISECTING.0,
        BISECTING.1,
        vec![("center", zeros(center)), ("left", left), ("right", right)],
    )
}

fn bisecting(tree: Value<'_>) -> Vec<u8> {
    pickle(&instance(
        "sklearn.cluster._bisect_k_means",
        "BisectingKMeans",
        vec![
            ("n_features_in_", int(3)),
            ("cluster_centers_", zeros(&[2, 3])),
            ("_bisecting_tree", tree),
        ],
    ))
}

#[test]
fn a_bisecting_trees_centers_are_as_wide_as_the_input() {
    // Dense centers are rows of 3; fitted on sparse data, np.matrix rows of (1, 3).
    let tree = |left: &'static [i32]| node(&[3], node(left, none(), none()), node(&[1, 3], none(), none()));
    assert_eq!(
        outcome_for(&bisecting(tree(&[3])), "BisectingKMeans"),
        PickledOutcome::Intact
    );
    for (center, shape) in [(&[1][..], "[1]"), (&[3, 1], "[3, 1]"), (&[], "[]")] {
        let why = broken(outcome_for(&bisecting(tree(center)), "BisectingKMeans"));
        assert!(
            why.contains(&format!("a node center of shape {shape} for 3 features")),
            "{why}"
        );
    }
    // The same node as both children.
    let shared = node(
        &[3],
        Box::new(|asm| node(&[3], none(), none())(asm).put(7)),
        Box::new(|asm| asm.get(7)),
    );
    let why = broken(outcome_for(&bisecting(shared), "BisectingKMeans"));
    assert!(why.contains("a node reached twice"), "{why}");
}

/// A fitted `GradientBoostingRegressor` of 4 features whose `estimators_` is an object array of
/// 2 stages of `trees` estimators, with `n_trees_per_iteration_` `per_stage` and a
/// `DummyRegressor` init predicting `outputs` columns.
fn boosting(trees: i32, per_stage: i32, outputs: i32) -> Vec<u8> {
    let stages = Box::new(move |asm: Asm| {
        let asm = asm
            .global("numpy.core.multiarray", "_reconstruct")
            .global("numpy", "ndarray")
            .int(0)
            .op(0x85)
            .text("b")
            .op(0x87)
            .op(b'R')
            .op(b'(')
            .int(1)
            .int(2)
            .int(trees)
            .op(0x86);
        let asm = crate::native_state::pickled::tests::dtype("O8")(asm)
            .op(0x89)
            .op(b']')
            .op(b'(');
        let asm = (0..2 * trees).fold(asm, |asm, _| estimator(asm, Some(4), 4));
        asm.op(b'e').op(b't').op(b'b')
    });
    let shape = [1, outputs];
    let init = instance(
        "sklearn.dummy",
        "DummyRegressor",
        vec![("n_outputs_", int(outputs)), ("constant_", zeros(&shape))],
    );
    let model = instance(
        "sklearn.ensemble._gb",
        "GradientBoostingRegressor",
        vec![
            ("n_features_in_", int(4)),
            ("n_trees_per_iteration_", int(per_stage)),
            ("estimators_", stages),
            ("init_", init),
            (
                "_loss",
                instance("sklearn._loss.loss", "HalfSquaredError", vec![]),
            ),
        ],
    );
    pickle(&model)
}

#[test]
fn gradient_boosting_stages_are_as_wide_as_its_predictions() {
    let name = "GradientBoostingRegressor";
    assert_eq!(outcome_for(&boosting(1, 1, 1), name), PickledOutcome::Intact);
    assert_eq!(outcome_for(&boosting(3, 3, 3), name), PickledOutcome::Intact);
    assert_eq!(
        broken(outcome_for(&boosting(4096, 1, 1), name)),
        "estimators_ holds 4096 trees per stage for n_trees_per_iteration_ 1"
    );
    assert_eq!(
        broken(outcome_for(&boosting(3, 3, 1), name)),
        "init_ predicts 1 column(s) for 3 trees per stage"
    );
}

/// A fitted `SGDRegressor` of `width` features with `fields`.
fn sgd<'a>(width: i32, fields: Vec<(&'a str, Value<'a>)>) -> Vec<u8> {
    let mut all = vec![("n_features_in_", int(width))];
    all.extend(fields);
    pickle(&instance(
        "sklearn.linear_model._stochastic_gradient",
        "SGDRegressor",
        all,
    ))
}

#[test]
fn an_sgd_models_weights_are_as_wide_as_its_input() {
    let name = "SGDRegressor";
    let intact = sgd(4, vec![("coef_", zeros(&[4])), ("_average_coef", zeros(&[4]))]);
    assert_eq!(outcome_for(&intact, name), PickledOutcome::Intact);
    assert_eq!(
        broken(outcome_for(&sgd(50_000, vec![("coef_", zeros(&[4]))]), name)),
        "coef_ has shape [4] for 50000 features (coef_ of shape [4])"
    );
    let short = sgd(4, vec![("coef_", zeros(&[4])), ("_standard_coef", zeros(&[1]))]);
    assert_eq!(
        broken(outcome_for(&short, name)),
        "_standard_coef has shape [1] for 4 features (coef_ of shape [4])"
    );
    let not_an_array = sgd(4, vec![("coef_", zeros(&[4])), ("_average_coef", int(0))]);
    assert!(broken(outcome_for(&not_an_array, name)).starts_with("_average_coef has shape none"));
}

/// A `MultiLabelBinarizer` whose `_cached_dict` maps `labels` to `columns`.
fn binarizer(cached: &'static [(&'static str, i32)]) -> Vec<u8> {
    let dict: Value<'static> = Box::new(move |asm: Asm| {
        cached.iter().fold(asm.op(b'}'), |asm, (label, column)| {
            asm.text(label).int(*column).op(b's')
        })
    });
    pickle(&instance(
        "sklearn.preprocessing._label",
        "MultiLabelBinarizer",
        vec![("_cached_dict", dict)],
    ))
}

#[test]
fn a_multilabel_binarizers_columns_are_distinct_and_below_its_size() {
    let name = "MultiLabelBinarizer";
    let intact = binarizer(&[("a", 1), ("b", 0), ("c", 2)]);
    assert_eq!(outcome_for(&intact, name), PickledOutcome::Intact);
    assert_eq!(
        broken(outcome_for(&binarizer(&[("a", 100_000_000), ("b", 1)]), name)),
        "_cached_dict[\"a\"] is 100000000, outside [0, 2) (the output's columns)"
    );
    assert_eq!(
        broken(outcome_for(&binarizer(&[("a", 1), ("b", 1)]), name)),
        "_cached_dict: two labels share column 1"
    );
}
