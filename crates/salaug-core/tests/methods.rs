//! Guided backpropagation, DeconvNet, Grad-CAM and guided Grad-CAM: each map equals one
//! computed by hand on a hand-built network; L_sal through each is twice differentiable
//! (f64 finite differences); SGD on L_sal alone lowers it; a model without the hooks gets a
//! clear error.
//!
//! The finite differences step over kinks: the guided and DeconvNet masks (`f > 0`, `R > 0`)
//! and Grad-CAM's ReLU are constant except where a value crosses zero, and the check
//! re-evaluates any entry whose difference quotient had not converged at steps 10 and 100
//! times smaller (see `salaug_core::gradcheck`), so an entry is judged on a difference that
//! does not straddle a switch. The tolerance is the one of every other second-order check.

mod common;

use burn::module::Param;
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use common::{batch, flip_sal_loss, TestNet};
use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};
use salaug_core::{
    relu, tap, Classifier, DeconvNet, Error, Explain, GradCam, Gradient, GuidedBackprop,
    GuidedGradCam, ReluRule, SaliencyKind, SaliencyLossConfig, SaliencyMethod, SmoothGrad,
};

const TOL: f64 = 1e-6;

/// The backend's random generator is one per process (`GB::seed`), and SmoothGrad draws its
/// noise from it: tests of this file that ran at once would interleave their draws and see
/// other noise than their seed gives. Every test holds this lock.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|p| p.into_inner())
}

fn t2(values: &[f64], shape: [usize; 2]) -> Tensor<GB, 2> {
    common::tensor(values.to_vec(), shape, &Default::default())
}

fn t1(values: &[f64]) -> Tensor<GB, 1> {
    common::tensor(values.to_vec(), [values.len()], &Default::default())
}

fn host<const D: usize>(t: Tensor<GB, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().unwrap()
}

fn assert_close(got: &[f64], expected: &[f64], what: &str) {
    assert_eq!(got.len(), expected.len(), "{what}");
    for (g, e) in got.iter().zip(expected) {
        assert!(
            (g - e).abs() < 1e-12,
            "{what}: got {got:?}, expected {expected:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Guided backpropagation and DeconvNet on a two-layer ReLU network, by hand.

/// `logits = relu(relu(x·W1 + b1)·W2 + b2)·U` on images of 1×1×3 pixels.
#[derive(Module, Debug)]
struct TinyMlp<B: Backend> {
    w1: Param<Tensor<B, 2>>,
    b1: Param<Tensor<B, 1>>,
    w2: Param<Tensor<B, 2>>,
    b2: Param<Tensor<B, 1>>,
    u: Param<Tensor<B, 2>>,
}

const W1: [[f64; 3]; 3] = [[0.5, -1.0, 0.3], [0.2, 0.4, -0.6], [-0.1, 0.3, 0.8]];
const B1: [f64; 3] = [0.1, -0.2, 0.05];
const W2: [[f64; 2]; 3] = [[1.0, -0.5], [0.7, 0.2], [-0.4, 0.6]];
const B2: [f64; 2] = [0.0, 0.1];
const U: [[f64; 2]; 2] = [[0.9, -0.3], [-0.8, 0.5]];

impl TinyMlp<GB> {
    fn new() -> Self {
        let flat = |m: &[[f64; 3]]| m.iter().flatten().copied().collect::<Vec<_>>();
        let flat2 = |m: &[[f64; 2]]| m.iter().flatten().copied().collect::<Vec<_>>();
        Self {
            w1: Param::from_tensor(t2(&flat(&W1), [3, 3])),
            b1: Param::from_tensor(t1(&B1)),
            w2: Param::from_tensor(t2(&flat2(&W2), [3, 2])),
            b2: Param::from_tensor(t1(&B2)),
            u: Param::from_tensor(t2(&flat2(&U), [2, 2])),
        }
    }
}

impl<B: Backend> Classifier<B> for TinyMlp<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, _, _, _] = images.dims();
        let x = images.reshape([n, 3]);
        let h1 = relu(x.matmul(self.w1.val()) + self.b1.val().unsqueeze());
        let h2 = relu(h1.matmul(self.w2.val()) + self.b2.val().unsqueeze());
        h2.matmul(self.u.val())
    }
}

salaug_core::impl_lift!(TinyMlp);

/// The backward of a ReLU with forward input `f` and incoming gradient `r` under `rule`
/// (`None`: the plain gradient).
fn hand_relu_backward(f: f64, r: f64, rule: Option<ReluRule>) -> f64 {
    let forward = f > 0.0;
    let positive = r > 0.0;
    let pass = match rule {
        None => forward,
        Some(ReluRule::Guided) => forward && positive,
        Some(ReluRule::Deconv) => positive,
    };
    if pass {
        r
    } else {
        0.0
    }
}

/// The map of `x` for class `c`, chained by hand through the two ReLUs.
fn hand_map(x: [f64; 3], c: usize, rule: Option<ReluRule>) -> Vec<f64> {
    let z1: Vec<f64> = (0..3)
        .map(|i| (0..3).map(|p| x[p] * W1[p][i]).sum::<f64>() + B1[i])
        .collect();
    let h1: Vec<f64> = z1.iter().map(|z| z.max(0.0)).collect();
    let z2: Vec<f64> = (0..2)
        .map(|j| (0..3).map(|i| h1[i] * W2[i][j]).sum::<f64>() + B2[j])
        .collect();
    let g2: Vec<f64> = (0..2)
        .map(|j| hand_relu_backward(z2[j], U[j][c], rule))
        .collect();
    let g1: Vec<f64> = (0..3)
        .map(|i| hand_relu_backward(z1[i], (0..2).map(|j| W2[i][j] * g2[j]).sum(), rule))
        .collect();
    (0..3)
        .map(|p| (0..3).map(|i| W1[p][i] * g1[i]).sum())
        .collect()
}

#[test]
fn guided_backprop_and_deconvnet_maps_equal_hand_computed_ones() {
    let _rng = one_at_a_time();
    let model = TinyMlp::new();
    let xs = [[1.0, -0.5, 2.0], [-1.0, 0.5, 0.7]];
    let images: Tensor<GB, 4> = common::tensor(
        xs.iter().flatten().copied().collect(),
        [2, 1, 1, 3],
        &Default::default(),
    );
    for classes in [[0i64, 1], [1, 0]] {
        let explain = Explain::class(Tensor::from_data(
            TensorData::new(classes.to_vec(), [2]),
            &Default::default(),
        ));
        let mut maps = Vec::new();
        for (rule, method) in [
            (None, SaliencyKind::Gradient),
            (Some(ReluRule::Guided), SaliencyKind::GuidedBackprop),
            (Some(ReluRule::Deconv), SaliencyKind::DeconvNet),
        ] {
            let got = host(
                method
                    .attribute(&model, images.clone(), &explain)
                    .unwrap()
                    .maps,
            );
            let expected: Vec<f64> = xs
                .iter()
                .zip(classes)
                .flat_map(|(x, c)| hand_map(*x, c as usize, rule))
                .collect();
            assert_close(&got, &expected, &format!("{method:?}, classes {classes:?}"));
            maps.push(got);
        }
        // The network is built so that both masks matter: the three maps differ.
        assert!(maps[0] != maps[1] && maps[1] != maps[2] && maps[0] != maps[2]);
    }
    // Outside a saliency pass the hooked ReLU is burn's: logits unchanged by the methods.
    let plain = host(model.logits(images.clone()));
    let explain = Explain::class(Tensor::from_data(
        TensorData::new(vec![0i64, 1], [2]),
        &Default::default(),
    ));
    let guided = host(
        GuidedBackprop
            .attribute(&model, images, &explain)
            .unwrap()
            .logits,
    );
    assert_close(&guided, &plain, "logits of the guided pass");
}

// ---------------------------------------------------------------------------------------------
// Grad-CAM on a network with one feature, by hand.

/// 2×2 average pooling of a 1×4×4 image, two channels `A_k = s_k·p + t_k` (the feature
/// "feat"), a linear head over the 8 feature values.
#[derive(Module, Debug)]
struct TinyCam<B: Backend> {
    s: Param<Tensor<B, 1>>,
    t: Param<Tensor<B, 1>>,
    v: Param<Tensor<B, 2>>,
    /// Whether the forward passes "feat" through the hook (a model that lists a feature but
    /// does not tap it must get an error).
    tapped: bool,
}

const S: [f64; 2] = [1.5, -0.7];
const T: [f64; 2] = [0.2, 0.4];
/// `[8, 2]`: rows are the feature values `(k, i, j)` in order.
const V: [[f64; 2]; 8] = [
    [0.3, -0.2],
    [-0.5, 0.1],
    [0.8, 0.4],
    [0.1, -0.6],
    [-0.4, 0.9],
    [0.2, 0.3],
    [0.6, -0.1],
    [-0.3, 0.5],
];

impl TinyCam<GB> {
    fn new(tapped: bool) -> Self {
        Self {
            s: Param::from_tensor(t1(&S)),
            t: Param::from_tensor(t1(&T)),
            v: Param::from_tensor(t2(&V.iter().flatten().copied().collect::<Vec<_>>(), [8, 2])),
            tapped,
        }
    }
}

impl<B: Backend> TinyCam<B> {
    fn feature(&self, images: Tensor<B, 4>) -> Tensor<B, 4> {
        let [n, _, _, _] = images.dims();
        let p = images
            .reshape([n, 1, 2, 2, 2, 2])
            .mean_dim(5)
            .mean_dim(3)
            .reshape([n, 1, 2, 2]);
        let a = p * self.s.val().reshape([1, 2, 1, 1]) + self.t.val().reshape([1, 2, 1, 1]);
        if self.tapped {
            tap("feat", a)
        } else {
            a
        }
    }
}

impl<B: Backend> Classifier<B> for TinyCam<B> {
    fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let [n, _, _, _] = images.dims();
        self.feature(images).reshape([n, 8]).matmul(self.v.val())
    }

    fn feature_names(&self) -> Vec<String> {
        vec!["feat".into()]
    }
}

salaug_core::impl_lift!(TinyCam);

/// PyTorch's bilinear weights (align_corners=False) from 2 samples to 4.
const UP: [[f64; 2]; 4] = [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]];

fn hand_cam(image: &[f64], c: usize) -> Vec<f64> {
    let p = |i: usize, j: usize| {
        (0..2)
            .flat_map(|a| (0..2).map(move |b| (a, b)))
            .map(|(a, b)| image[(2 * i + a) * 4 + 2 * j + b])
            .sum::<f64>()
            / 4.0
    };
    // ∂score/∂A_k[i, j] = V[(k, i, j)][c]: the channel weight is its spatial mean.
    let alpha: Vec<f64> = (0..2)
        .map(|k| (0..4).map(|ij| V[k * 4 + ij][c]).sum::<f64>() / 4.0)
        .collect();
    let cam = |i: usize, j: usize| {
        (0..2)
            .map(|k| alpha[k] * (S[k] * p(i, j) + T[k]))
            .sum::<f64>()
            .max(0.0)
    };
    let mut out = Vec::new();
    for row in &UP {
        for col in &UP {
            out.push(
                (0..2)
                    .flat_map(|i| (0..2).map(move |j| (i, j)))
                    .map(|(i, j)| row[i] * col[j] * cam(i, j))
                    .sum(),
            );
        }
    }
    out
}

fn cam_images() -> (Vec<f64>, Tensor<GB, 4>) {
    let values: Vec<f64> = (0..32).map(|i| ((i * 7 % 11) as f64 - 5.0) / 4.0).collect();
    let images = common::tensor(values.clone(), [2, 1, 4, 4], &Default::default());
    (values, images)
}

#[test]
fn grad_cam_map_equals_a_hand_computed_one() {
    let _rng = one_at_a_time();
    let model = TinyCam::new(true);
    let (values, images) = cam_images();
    for classes in [[0i64, 1], [1, 1]] {
        let explain = Explain::class(Tensor::from_data(
            TensorData::new(classes.to_vec(), [2]),
            &Default::default(),
        ));
        let out = GradCam::at("feat")
            .attribute(&model, images.clone(), &explain)
            .unwrap();
        assert_eq!(out.maps.dims(), [2, 1, 4, 4]);
        let expected: Vec<f64> = (0..2)
            .flat_map(|i| hand_cam(&values[i * 16..(i + 1) * 16], classes[i] as usize))
            .collect();
        assert_close(&host(out.maps), &expected, &format!("classes {classes:?}"));
        assert_close(
            &host(out.logits),
            &host(model.logits(images.clone())),
            "logits of the Grad-CAM pass",
        );
    }
}

#[test]
fn models_without_the_hooks_get_errors_that_say_so() {
    let _rng = one_at_a_time();
    let (_, images) = cam_images();
    let explain = Explain::class(Tensor::from_data(
        TensorData::new(vec![0i64, 1], [2]),
        &Default::default(),
    ));
    let run = |model: &TinyCam<GB>, method: GradCam| {
        method
            .attribute(model, images.clone(), &explain)
            .unwrap_err()
    };
    // No default layer on this model.
    let err = run(&TinyCam::new(true), GradCam::default()).to_string();
    assert!(
        err.contains("grad_cam.layer") && err.contains("feat"),
        "{err}"
    );
    // A layer the model does not have.
    let err = run(&TinyCam::new(true), GradCam::at("conv9"));
    assert!(matches!(err, Error::UnknownTap { .. }), "{err}");
    // A layer the model lists but never taps.
    let err = run(&TinyCam::new(false), GradCam::at("feat")).to_string();
    assert!(
        err.contains("never") && err.contains("salaug_core::tap"),
        "{err}"
    );
    // A model with no hooked ReLU cannot give a guided or DeconvNet map.
    for method in [SaliencyKind::GuidedBackprop, SaliencyKind::DeconvNet] {
        let err = method
            .attribute(&TinyCam::new(true), images.clone(), &explain)
            .unwrap_err()
            .to_string();
        assert!(err.contains("salaug_core::relu"), "{err}");
    }
}

#[test]
fn guided_grad_cam_is_the_product_of_its_two_maps() {
    let _rng = one_at_a_time();
    let device = Default::default();
    let model = TestNet::<GB>::new(31, &device);
    let (x, y) = batch::<GB>(32, 3, 8, &device);
    let explain = Explain::class(y);
    let guided = GuidedBackprop
        .attribute(&model, x.clone(), &explain)
        .unwrap()
        .maps;
    let cam = GradCam::default()
        .attribute(&model, x.clone(), &explain)
        .unwrap()
        .maps;
    assert_eq!(cam.dims(), [3, 1, 8, 8]);
    let both = GuidedGradCam(GradCam::default())
        .attribute(&model, x, &explain)
        .unwrap()
        .maps;
    assert_close(&host(both), &host(guided * cam), "guided Grad-CAM");
}

// ---------------------------------------------------------------------------------------------
// Second order and training.

/// Every method of this file (those that use the model's hooks, from `SaliencyKind::every`),
/// Grad-CAM at another layer, and SmoothGrad around the guided one, by name.
fn methods() -> Vec<SaliencyKind> {
    let mut methods: Vec<SaliencyKind> = SaliencyKind::every()
        .into_iter()
        .filter(SaliencyKind::uses_hooks)
        .collect();
    methods.push(SaliencyKind::GradCam(GradCam::at("pool1")));
    methods.push(SaliencyKind::SmoothGrad(SmoothGrad::new(
        Box::new(SaliencyKind::GuidedBackprop),
        2,
    )));
    methods
}

#[test]
fn l_sal_through_every_method_matches_finite_differences() {
    let _rng = one_at_a_time();
    let device = Default::default();
    let model = TestNet::<GB>::new(41, &device);
    let (x, y) = batch::<GB>(42, 2, 8, &device);
    let mut failures = Vec::new();
    for method in methods() {
        let report = gradcheck(
            &model,
            |m| {
                GB::seed(&device, 7);
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
        println!("{}: {report}", method.name());
        assert!(report.loss.is_finite() && report.loss > 0.0, "{method:?}");
        if !report.passes(TOL) {
            failures.push(format!("{}\n{report}", method.name()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn sgd_on_l_sal_alone_lowers_it_for_every_method() {
    let _rng = one_at_a_time();
    let device = Default::default();
    let (x, y) = batch::<GB>(52, 4, 8, &device);
    for method in methods() {
        let mut model = TestNet::<GB>::new(51, &device);
        let loss = |m: &TestNet<GB>| {
            GB::seed(&device, 7);
            flip_sal_loss(
                m,
                &x,
                &y,
                SaliencyLossConfig::default(),
                method.clone(),
                false,
            )
        };
        let mut optim = SgdConfig::new().init::<GB, TestNet<GB>>();
        let mut trajectory = vec![loss(&model).into_scalar()];
        for _ in 0..10 {
            let grads = GradientsParams::from_grads(loss(&model).backward(), &model);
            model = optim.step(0.1, model, grads);
            trajectory.push(loss(&model).into_scalar());
        }
        println!("{}: {trajectory:?}", method.name());
        assert!(
            trajectory[1] < trajectory[0],
            "{}: the first step went up: {trajectory:?}",
            method.name()
        );
        assert!(
            trajectory[10] < 0.9 * trajectory[0],
            "{}: {trajectory:?}",
            method.name()
        );
    }
}

/// The plain gradient is not changed by the hooks: a model written with them gives the same
/// maps as before (TestNet's maps equal those of a pass with no hook installed).
#[test]
fn gradient_maps_do_not_see_the_hooks() {
    let _rng = one_at_a_time();
    let device = Default::default();
    let model = TestNet::<GB>::new(61, &device);
    let (x, y) = batch::<GB>(62, 2, 8, &device);
    let explain = Explain::class(y);
    let a = host(
        Gradient
            .attribute(&model, x.clone(), &explain)
            .unwrap()
            .maps,
    );
    let guided = host(
        GuidedBackprop
            .attribute(&model, x.clone(), &explain)
            .unwrap()
            .maps,
    );
    let deconv = host(
        DeconvNet
            .attribute(&model, x.clone(), &explain)
            .unwrap()
            .maps,
    );
    let b = host(Gradient.attribute(&model, x, &explain).unwrap().maps);
    assert_eq!(a, b, "a hooked pass must leave no hook behind");
    assert!(a != guided && guided != deconv);
}
