//! The first-order path to L_sal's parameter gradient
//! ([`SaliencyLoss::of_batch_first_order`]) against the exact one (nested autodiff), in f64:
//! the same value, logits and running statistics; a gradient whose error shrinks with the
//! step as the difference order predicts; clear errors where it does not apply.

mod common;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::PaddingConfig2d;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use common::{batch, tensor, uniform, TestNet};
use rand::{rngs::StdRng, SeedableRng};
use salaug_core::gradcheck::GradcheckBackend as GB;
use salaug_core::{
    BatchNormMode, BatchSaliency, Classifier, Error, Explain, FiniteDifference, Lift, MapPair,
    SaliencyKind, SaliencyLossConfig, Scheme, SmoothGrad,
};

/// A smooth classifier (convolution, tanh, global mean, linear head): its input gradient is
/// smooth in the images, so a difference quotient's error is its truncation error alone.
#[derive(Module, Debug)]
struct Smooth<B: Backend> {
    conv: Conv2d<B>,
    head: Param<Tensor<B, 2>>,
}

impl<B: Backend> Smooth<B> {
    fn new(seed: u64, device: &B::Device) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut conv = Conv2dConfig::new([3, 6], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(device);
        conv.weight =
            Param::from_tensor(tensor(uniform(&mut rng, 6 * 27, 0.6), [6, 3, 3, 3], device));
        conv.bias = Some(Param::from_tensor(tensor(
            uniform(&mut rng, 6, 0.2),
            [6],
            device,
        )));
        let head = Param::from_tensor(tensor(uniform(&mut rng, 18, 1.0), [6, 3], device));
        Self { conv, head }
    }
}

impl<B: Backend> Classifier<B> for Smooth<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let h = self.conv.forward(images).tanh();
        let h = (h.clone() * h.clone() + h).tanh(); // curvature in every direction
        let [n, c, _, _] = h.dims();
        h.mean_dim(3)
            .mean_dim(2)
            .reshape([n, c])
            .matmul(self.head.val())
    }
}

salaug_core::impl_lift!(Smooth);

/// Every parameter gradient of `model` in `grads`, flattened in visiting order.
fn gradient<B: AutodiffBackend, M: Module<B>>(model: &M, grads: &B::Gradients) -> Vec<f64> {
    struct Flat<'a, B: AutodiffBackend>(&'a B::Gradients, Vec<f64>);
    impl<B: AutodiffBackend> ModuleVisitor<B> for Flat<'_, B> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            // Zeros where the loss does not reach the parameter (no gradient at all).
            match p.val().grad(self.0) {
                Some(g) => self
                    .1
                    .extend(g.into_data().convert::<f64>().to_vec::<f64>().unwrap()),
                None => self.1.extend(vec![0.0; p.val().shape().num_elements()]),
            }
        }
    }
    let mut flat = Flat::<B>(grads, Vec::new());
    model.visit(&mut flat);
    flat.1
}

fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm).sqrt()
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f64 = a.iter().map(|x| x * x).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (na * nb)
}

/// `[x; flip(x)]` and their classes.
fn flip_batch(seed: u64) -> (Tensor<GB, 4>, Tensor<GB, 1, Int>) {
    let (x, y) = batch::<GB>(seed, 4, 8, &Default::default());
    (
        Tensor::cat(vec![x.clone(), x.flip([3])], 0),
        Tensor::cat(vec![y.clone(), y], 0),
    )
}

/// L_sal of `images` by the exact path (`fd: None`) or by finite differences.
fn l_sal<M: Lift<GB> + burn::module::AutodiffModule<GB>>(
    model: &M,
    method: &SaliencyKind,
    images: Tensor<GB, 4>,
    explain: &Explain<'_, GB>,
    fd: Option<FiniteDifference>,
) -> BatchSaliency<GB> {
    // SmoothGrad's noise, the same for both paths: the backend's generator is seeded, and
    // held, so that the tests running beside this one do not draw from it or reseed it.
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    let loss = SaliencyLossConfig::default().init().unwrap();
    GB::seed(&Default::default(), 7);
    let out = match fd {
        None => loss.of_batch(model, method, images, explain, MapPair::flip_back),
        Some(fd) => {
            loss.of_batch_first_order(model, method, images, explain, fd, MapPair::flip_back)
        }
    };
    out.unwrap()
}

fn fd(step: f64, scheme: Scheme) -> Option<FiniteDifference> {
    Some(FiniteDifference { step, scheme })
}

/// Both paths give the same value, maps and logits; the quotient's gradient meets the exact
/// one at the order of its scheme: halving the step halves the forward difference's error and
/// quarters the central difference's.
#[test]
fn the_error_shrinks_with_the_step_as_the_difference_order_predicts() {
    let model = Smooth::<GB>::new(3, &Default::default());
    let (images, y) = flip_batch(11);
    let explain = Explain::class(y);
    for method in [SaliencyKind::Gradient, SaliencyKind::InputXGradient] {
        let exact = l_sal(&model, &method, images.clone(), &explain, None);
        let reference = gradient(&model, &exact.loss.clone().backward());
        let value = exact.loss.into_scalar();
        for (scheme, order) in [(Scheme::Forward, 1), (Scheme::Central, 2)] {
            let mut errors = Vec::new();
            for step in [4e-3, 2e-3, 1e-3] {
                let out = l_sal(&model, &method, images.clone(), &explain, fd(step, scheme));
                out.logits
                    .clone()
                    .into_data()
                    .assert_approx_eq::<f64>(&exact.logits.clone().into_data(), Default::default());
                let got = gradient(&model, &out.loss.clone().backward());
                assert!((out.loss.into_scalar() - value).abs() <= 1e-12 * value.abs().max(1.0));
                errors.push(relative_error(&got, &reference));
            }
            let expected = 2f64.powi(order);
            for w in errors.windows(2) {
                let ratio = w[0] / w[1];
                assert!(
                    (ratio / expected - 1.0).abs() < 0.2,
                    "{method:?} {scheme:?}: errors {errors:?} shrink by {ratio}, not {expected}"
                );
            }
            assert!(errors[2] < 0.05, "{method:?} {scheme:?}: {errors:?}");
        }
    }
}

/// On a network with BatchNorm (training mode), ReLU and max pooling, at a small step, the
/// quotient's gradient is the exact one's direction and size; SmoothGrad's too (the same noise
/// on both paths). Also on images with a flat region (a black half, as Fashion-MNIST's
/// background), whose max pools hold exact ties: there the forward at `x + εv` keeps the
/// activation pattern of `x` (without it, the ties that the perturbation breaks move the
/// parameter gradient by a finite amount and the quotient grows as 1/ε).
#[test]
fn on_a_relu_batch_norm_network_the_gradient_matches_the_exact_one() {
    let model = TestNet::<GB>::new(5, &Default::default());
    let (images, y) = flip_batch(23);
    let [n, c, h, w] = images.dims();
    let flat = images.clone().slice_assign(
        [0..n, 0..c, 0..h, 0..w / 2],
        Tensor::zeros([n, c, h, w / 2], &Default::default()),
    );
    let explain = Explain::class(y);
    for (images, method) in [
        (images.clone(), SaliencyKind::Gradient),
        (images.clone(), SaliencyKind::InputXGradient),
        (
            images.clone(),
            SaliencyKind::SmoothGrad(SmoothGrad::new(Box::new(SaliencyKind::Gradient), 3)),
        ),
        (flat.clone(), SaliencyKind::Gradient),
        (flat, SaliencyKind::InputXGradient),
    ] {
        let exact = l_sal(&model, &method, images.clone(), &explain, None);
        let reference = gradient(&model, &exact.loss.clone().backward());
        let out = l_sal(
            &model,
            &method,
            images.clone(),
            &explain,
            fd(1e-5, Scheme::Central),
        );
        out.pair
            .other
            .into_data()
            .assert_approx_eq::<f64>(&exact.pair.other.into_data(), Default::default());
        let got = gradient(&model, &out.loss.backward());
        let (c, e) = (cosine(&got, &reference), relative_error(&got, &reference));
        assert!(
            c > 0.9999 && e < 1e-3,
            "{method:?}: cosine {c}, relative error {e}"
        );
    }
}

/// With `BatchUpdating` only the forward that gives the logits moves the running statistics,
/// exactly as the exact path moves them; with `Batch` they stay.
#[test]
fn only_the_training_forward_moves_the_running_statistics() {
    let device = Default::default();
    let (images, y) = flip_batch(29);
    let stats = common::running_stats::<GB>;
    let method = SaliencyKind::Gradient;
    let updating = Explain::class(y.clone()).with_batch_norm(BatchNormMode::BatchUpdating);
    let exact = TestNet::<GB>::new(5, &device);
    let before = stats(&exact);
    let _ = l_sal(&exact, &method, images.clone(), &updating, None);
    let expected = stats(&exact);
    assert_ne!(before, expected);
    let first = TestNet::<GB>::new(5, &device);
    let _ = l_sal(
        &first,
        &method,
        images.clone(),
        &updating,
        fd(1e-3, Scheme::Forward),
    );
    let got = stats(&first);
    for (a, b) in got.iter().zip(&expected) {
        assert!((a - b).abs() < 1e-12, "{got:?} vs {expected:?}");
    }
    let still = TestNet::<GB>::new(5, &device);
    let _ = l_sal(
        &still,
        &method,
        images,
        &Explain::class(y),
        fd(1e-3, Scheme::Central),
    );
    assert_eq!(stats(&still), before);
}

/// Methods without a first-order path, evaluation-mode maps and a bad step are errors that
/// say what to do, not wrong gradients.
#[test]
fn where_it_does_not_apply_it_says_so() {
    let model = TestNet::<GB>::new(5, &Default::default());
    let (images, y) = flip_batch(31);
    let loss = SaliencyLossConfig::default().init().unwrap();
    let run = |method: &SaliencyKind, explain: &Explain<'_, GB>, fd: FiniteDifference| {
        loss.of_batch_first_order(
            &model,
            method,
            images.clone(),
            explain,
            fd,
            MapPair::flip_back,
        )
        .map(|_| ())
        .unwrap_err()
    };
    let explain = Explain::class(y.clone());
    for method in [
        SaliencyKind::GuidedBackprop,
        SaliencyKind::DeconvNet,
        "grad_cam".parse().unwrap(),
        "smooth_grad:guided_backprop".parse().unwrap(),
    ] {
        let err = run(&method, &explain, FiniteDifference::default());
        assert!(
            matches!(&err, Error::Unsupported { what } if what.contains(&method.name()) && what.contains("\"exact\"")),
            "{err}"
        );
        assert!(
            salaug_core::SecondOrder::FiniteDifference(FiniteDifference::default())
                .validate(&method)
                .is_err()
        );
    }
    let running = Explain::class(y).with_batch_norm(BatchNormMode::Running);
    let err = run(
        &SaliencyKind::Gradient,
        &running,
        FiniteDifference::default(),
    );
    assert!(err.to_string().contains("BatchNormMode::Running"), "{err}");
    for step in [0.0, -1e-3, f64::NAN, f64::INFINITY] {
        let bad = FiniteDifference {
            step,
            ..Default::default()
        };
        let err = run(&SaliencyKind::Gradient, &explain, bad);
        assert!(err.to_string().contains("finite_difference.step"), "{err}");
    }
}

/// The settings read from a config: `"exact"` or a table.
#[test]
fn the_mode_is_named_in_configs() {
    #[derive(serde::Deserialize)]
    struct Holder {
        second_order: salaug_core::SecondOrder,
    }
    let parse = |t: &str| toml::from_str::<Holder>(t).map(|h| h.second_order);
    assert_eq!(
        parse("second_order = \"exact\"").unwrap(),
        salaug_core::SecondOrder::Exact
    );
    assert_eq!(
        parse("second_order = { finite_difference = { step = 0.01, scheme = \"central\" } }")
            .unwrap(),
        salaug_core::SecondOrder::FiniteDifference(FiniteDifference {
            step: 0.01,
            scheme: Scheme::Central
        })
    );
    assert_eq!(
        parse("second_order = { finite_difference = {} }").unwrap(),
        salaug_core::SecondOrder::FiniteDifference(FiniteDifference::default())
    );
    assert!(parse("second_order = { finite_difference = { steps = 0.01 } }").is_err());
    assert!(parse("second_order = \"approximate\"").is_err());
}
