//! Second-order correctness: the gradient of L_sal (and of the full loss) with respect to every
//! parameter matches central finite differences (f64), for every reduction × normalisation ×
//! distance.

mod common;

use burn::module::AutodiffModule;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use common::{batch, flip_sal_loss, TestNet};
use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};
use salaug_core::{
    input_gradient, invariance_loss, BatchNormMode, Explain, FeatureDistance, LossWeights, MapPair,
    SaliencyKind, SaliencyLossConfig, SaliencyMethod, SmoothGrad,
};

const TOL: f64 = 1e-6;

#[test]
fn l_sal_gradient_matches_finite_differences_for_every_setting() {
    let device = Default::default();
    let model = TestNet::<GB>::new(7, &device);
    let (x, y) = batch::<GB>(11, 3, 8, &device);
    let mut failures = Vec::new();
    let mut worst: f64 = 0.0;
    for (case, config) in common::every_setting().into_iter().enumerate() {
        let masked = case % 2 == 1;
        let report = gradcheck(
            &model,
            |m| flip_sal_loss(m, &x, &y, config, SaliencyKind::Gradient, masked),
            GradcheckConfig::default(),
        );
        assert!(
            report.loss.is_finite() && report.loss > 0.0,
            "{config:?}: {report}"
        );
        worst = worst.max(report.max_rel_error());
        if !report.passes(TOL) {
            failures.push(format!("{config:?} masked={masked}\n{report}"));
        }
    }
    println!("45 settings, largest relative error {worst:.3e}");
    assert!(
        failures.is_empty(),
        "{} settings failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The backend's random generator is one per process: the tests of this file that draw from
/// it (SmoothGrad's noise, burn's lazy weight initialisation) hold this lock, so that one's
/// draws cannot fall between another's seed and its draws.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// SmoothGrad draws its noise from the backend's seeded generator: seeding before each
/// evaluation makes the loss a deterministic function of the weights, which is checked.
#[test]
fn smooth_grad_is_twice_differentiable() {
    let _rng = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let device = Default::default();
    let model = TestNet::<GB>::new(13, &device);
    let (x, y) = batch::<GB>(14, 2, 8, &device);
    let method = SaliencyKind::SmoothGrad(SmoothGrad::new(Box::new(SaliencyKind::Gradient), 3));
    let report = gradcheck(
        &model,
        |m| {
            GB::seed(&device, 99);
            flip_sal_loss(
                m,
                &x,
                &y,
                SaliencyLossConfig::default(),
                method.clone(),
                false,
            )
        },
        GradcheckConfig::default(),
    );
    println!("{report}");
    report.assert_within(TOL);
}

#[test]
fn input_x_gradient_is_twice_differentiable() {
    let device = Default::default();
    let model = TestNet::<GB>::new(3, &device);
    let (x, y) = batch::<GB>(5, 2, 8, &device);
    let report = gradcheck(
        &model,
        |m| {
            flip_sal_loss(
                m,
                &x,
                &y,
                SaliencyLossConfig::default(),
                SaliencyKind::InputXGradient,
                false,
            )
        },
        GradcheckConfig::default(),
    );
    println!("{report}");
    report.assert_within(TOL);
}

/// The full objective α·CE + β·L_sal + γ·L_inv, with the logits and features of the same lifted
/// forward pass that produced the maps.
#[test]
fn full_loss_from_one_forward_pass_matches_finite_differences() {
    let device = Default::default();
    let model = TestNet::<GB>::new(21, &device);
    let (x, y) = batch::<GB>(22, 2, 8, &device);
    let weights = LossWeights {
        alpha: 1.0,
        beta: 2.0,
        gamma: 0.5,
    };
    let taps = vec!["pool1".to_string(), "conv2".to_string()];
    let full = |m: &TestNet<GB>| {
        let loss = SaliencyLossConfig::default().init().unwrap();
        let images = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
        let targets = Tensor::cat(vec![y.clone(), y.clone()], 0);
        let explain = Explain::class(targets.clone()).with_taps(&taps);
        let out = loss
            .of_batch(
                m,
                &SaliencyKind::Gradient,
                images,
                &explain,
                MapPair::flip_back,
            )
            .unwrap();
        let ce = CrossEntropyLossConfig::new()
            .init(&device)
            .forward(out.logits, targets);
        let sal = out.loss;
        let (fa, fb): (Vec<_>, Vec<_>) = out
            .features
            .iter()
            .map(|f| {
                let h = f.clone().chunk(2, 0);
                (h[0].clone(), h[1].clone().flip([3]))
            })
            .unzip();
        let inv = invariance_loss(&fa, &fb, FeatureDistance::L2, &device).unwrap();
        weights.combine(ce, Some(sal), Some(inv))
    };
    let report = gradcheck(&model, full, GradcheckConfig::default());
    println!("{report}");
    report.assert_within(TOL);
}

#[test]
fn sgd_on_l_sal_alone_reduces_it() {
    let device = Default::default();
    let mut model = TestNet::<GB>::new(5, &device);
    let (x, y) = batch::<GB>(6, 4, 8, &device);
    let loss = |m: &TestNet<GB>| {
        flip_sal_loss(
            m,
            &x,
            &y,
            SaliencyLossConfig::default(),
            SaliencyKind::Gradient,
            false,
        )
    };
    let mut optim = SgdConfig::new().init::<GB, TestNet<GB>>();
    let first: f64 = loss(&model).into_scalar();
    let mut trajectory = vec![first];
    for _ in 0..20 {
        let l = loss(&model);
        let grads = GradientsParams::from_grads(l.backward(), &model);
        model = optim.step(0.2, model, grads);
        trajectory.push(loss(&model).into_scalar());
    }
    let last = *trajectory.last().unwrap();
    println!("L_sal {first:.6} -> {last:.6}");
    // A small step along the analytic gradient must go down (a wrong second-order term would
    // not), and the steps together must bring the loss down clearly.
    assert!(trajectory[1] < first, "first step went up: {trajectory:?}");
    assert!(last < 0.8 * first, "L_sal went {trajectory:?}");
}

#[test]
fn all_zero_maps_give_finite_losses_and_gradients() {
    let device = Default::default();
    let mut model = TestNet::<GB>::new(9, &device);
    // A zero head makes every logit constant, so every saliency map is exactly zero.
    model.head_weight =
        burn::module::Param::from_tensor(Tensor::zeros([5, common::CLASSES], &device));
    let (x, y) = batch::<GB>(10, 2, 8, &device);
    for config in common::every_setting() {
        let l = flip_sal_loss(&model, &x, &y, config, SaliencyKind::Gradient, true);
        let value: f64 = l.clone().into_scalar();
        assert!(value.is_finite(), "{config:?}: loss {value}");
        let grads = GradientsParams::from_grads(l.backward(), &model);
        let mut visitor = FiniteGrads {
            grads: &grads,
            bad: Vec::new(),
        };
        burn::module::Module::visit(&model, &mut visitor);
        assert!(
            visitor.bad.is_empty(),
            "{config:?}: non-finite gradient in {:?}",
            visitor.bad
        );
    }
}

struct FiniteGrads<'a> {
    grads: &'a GradientsParams,
    bad: Vec<String>,
}

impl burn::module::ModuleVisitor<GB> for FiniteGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<GB, D>>) {
        if let Some(g) = self
            .grads
            .get::<<GB as AutodiffBackend>::InnerBackend, D>(param.id)
        {
            let v = g.into_data().to_vec::<f64>().unwrap();
            if v.iter().any(|x| !x.is_finite()) {
                self.bad.push(format!("{:?}", param.id));
            }
        }
    }
}

/// Lifting a model whose parameters were never used must not give the lifted copy independent
/// values (burn's lazy initialisation clones the initialiser): every parameter gets a gradient.
#[test]
fn lifting_a_fresh_lazily_initialised_model_shares_its_parameters() {
    let _rng = RNG.lock().unwrap_or_else(|p| p.into_inner());
    let device = Default::default();
    let model = burn::nn::conv::Conv2dConfig::new([3, 3], [3, 3]).init::<GB>(&device);
    #[derive(Module, Debug)]
    struct Lazy<B: Backend> {
        conv: burn::nn::conv::Conv2d<B>,
    }
    impl<B: Backend> salaug_core::Classifier<B> for Lazy<B> {
        fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
            let y = self.conv.forward(images).tanh();
            let [n, c, _, _] = y.dims();
            y.mean_dim(3).mean_dim(2).reshape([n, c])
        }
    }
    salaug_core::impl_lift!(Lazy);
    let net = Lazy { conv: model };
    assert!(
        !net.conv.weight.is_initialized(),
        "the test needs a lazy parameter"
    );
    let (x, y) = batch::<GB>(1, 2, 6, &device);
    let report = gradcheck(
        &net,
        |m| {
            let out = SaliencyKind::Gradient
                .attribute(m, x.clone(), &Explain::class(y.clone()))
                .unwrap();
            out.maps.powi_scalar(2).mean()
        },
        GradcheckConfig::default(),
    );
    println!("{report}");
    assert_eq!(report.params.len(), 2);
    report.assert_within(TOL);
}

#[test]
fn lifted_pass_leaves_the_model_usable_and_unchanged() {
    let device = Default::default();
    let model = TestNet::<GB>::new(1, &device);
    let (x, y) = batch::<GB>(2, 2, 8, &device);
    let before = model.valid().logits(x.clone().inner()).into_data();
    let _ = SaliencyKind::Gradient
        .attribute(&model, x.clone(), &Explain::class(y))
        .unwrap();
    let after = model.valid().logits(x.inner()).into_data();
    assert_eq!(before, after);
}

#[test]
fn unknown_tap_and_bad_targets_are_errors() {
    let device = Default::default();
    let model = TestNet::<GB>::new(1, &device);
    let (x, y) = batch::<GB>(2, 2, 8, &device);
    let taps = ["nope".to_string()];
    let err = SaliencyKind::Gradient
        .attribute(
            &model,
            x.clone(),
            &Explain::class(y.clone()).with_taps(&taps),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("nope") && err.to_string().contains("pool1"),
        "{err}"
    );
    let (_, y3) = batch::<GB>(2, 3, 8, &device);
    assert!(SaliencyKind::Gradient
        .attribute(&model, x.clone(), &Explain::class(y3))
        .is_err());
    // L_sal of a batch needs pairs: an odd batch is an error, not a panic.
    let (x3, y3) = batch::<GB>(2, 3, 8, &device);
    let loss = SaliencyLossConfig::default().init().unwrap();
    let err = loss
        .of_batch(
            &model,
            &SaliencyKind::Gradient,
            x3,
            &Explain::class(y3),
            |s, t| Ok::<_, salaug_core::Error>(MapPair::new(s, t)),
        )
        .unwrap_err();
    assert!(err.to_string().contains("even"), "{err}");
    let _ = (x, y);
}

use salaug_core::Classifier;

#[test]
fn weighted_score_with_one_hot_rows_equals_the_target_score_and_is_linear() {
    let device = Default::default();
    let model = TestNet::<GB>::new(3, &device);
    let (x, y) = batch::<GB>(2, 2, 8, &device);
    let classes = model.logits(x.clone()).dims()[1];
    let one_hot = y.clone().one_hot(classes).float();
    let a = input_gradient(&model, x.clone(), &Explain::class(y)).unwrap();
    let b = input_gradient(&model, x.clone(), &Explain::weights(one_hot.clone())).unwrap();
    a.gradient
        .clone()
        .into_data()
        .assert_approx_eq::<f64>(&b.gradient.into_data(), Default::default());
    // Half the weights, half the gradient: the score is linear in the weights.
    let c = input_gradient(&model, x.clone(), &Explain::weights(one_hot * 0.5)).unwrap();
    (a.gradient * 0.5)
        .into_data()
        .assert_approx_eq::<f64>(&c.gradient.into_data(), Default::default());
    let wrong = Tensor::<GB, 2>::ones([2, classes + 1], &device);
    assert!(input_gradient(&model, x, &Explain::weights(wrong)).is_err());
}

/// The soft-label score of mixing augmentations (`Explain::weights`) is as twice
/// differentiable as the one-hot one: L_sal between the maps of x and of its flip, each
/// explaining a 0.7/0.3 mixture of its own label and another image's.
#[test]
fn soft_label_saliency_loss_matches_finite_differences() {
    let device = Default::default();
    let model = TestNet::<GB>::new(17, &device);
    let (x, y) = batch::<GB>(19, 3, 8, &device);
    let classes = model.logits(x.clone()).dims()[1];
    let soft =
        y.clone().one_hot(classes).float() * 0.7 + y.flip([0]).one_hot(classes).float() * 0.3;
    let loss = SaliencyLossConfig::default().init().unwrap();
    let report = gradcheck(
        &model,
        |m| {
            let images = Tensor::cat(vec![x.clone(), x.clone().flip([3])], 0);
            let weights = Tensor::cat(vec![soft.clone(), soft.clone()], 0);
            loss.of_batch(
                m,
                &SaliencyKind::Gradient,
                images,
                &Explain::weights(weights),
                MapPair::flip_back,
            )
            .unwrap()
            .loss
        },
        GradcheckConfig::default(),
    );
    assert!(report.loss.is_finite() && report.loss > 0.0, "{report}");
    assert!(report.passes(TOL), "{report}");
}

/// A forward that updates the running statistics is one forward that does the work of two: its
/// logits equal those of a level-B forward, its gradient that of the same pass without the
/// update, and it leaves BatchNorm's
/// running statistics in the model (and in the model's clones, which share them) exactly as
/// the level-B forward leaves them, detached; the other functions leave them alone.
#[test]
fn training_pass_updates_running_statistics_as_a_forward_does() {
    let device = Default::default();
    let (x, y) = batch::<GB>(23, 4, 8, &device);
    let classes = 3;
    let weights = y.one_hot(classes).float();
    let stats = common::running_stats::<GB>;

    let reference = TestNet::<GB>::new(5, &device);
    let before = stats(&reference);
    let logits = reference.logits(x.clone());
    let expected = stats(&reference);
    assert_ne!(
        before, expected,
        "a training-mode forward moves the statistics"
    );

    let model = TestNet::<GB>::new(5, &device);
    let clone = model.clone();
    let plain = input_gradient(&model, x.clone(), &Explain::weights(weights.clone())).unwrap();
    assert_eq!(
        stats(&model),
        before,
        "without the update the statistics stay"
    );
    let training = Explain::weights(weights).with_batch_norm(BatchNormMode::BatchUpdating);
    let pass = input_gradient(&model, x, &training).unwrap();
    let got = stats(&clone);
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{got:?} vs {expected:?}");
    }
    assert!(!model.bn1.running_mean.value_sync().is_require_grad());
    pass.logits
        .into_data()
        .assert_approx_eq::<f64>(&logits.into_data(), Default::default());
    pass.gradient
        .into_data()
        .assert_approx_eq::<f64>(&plain.gradient.into_data(), Default::default());
}

/// `BatchNormMode::Running` on a model whose BatchNorm is burn's `nn::BatchNorm` (which does
/// not ask `uses_batch_stats`) is refused with an error naming the hook, instead of giving
/// training-mode maps; `Batch` on the same model works.
#[test]
fn running_mode_is_refused_when_no_batch_norm_honours_it() {
    let device = Default::default();
    let (x, y) = batch::<GB>(29, 4, 8, &device);
    let model = TestNet::<GB>::new(7, &device);
    let running = Explain::class(y.clone()).with_batch_norm(BatchNormMode::Running);
    let err = input_gradient(&model, x.clone(), &running)
        .unwrap_err()
        .to_string();
    assert!(err.contains("uses_batch_stats"), "{err}");
    assert!(input_gradient(&model, x, &Explain::class(y)).is_ok());
}
