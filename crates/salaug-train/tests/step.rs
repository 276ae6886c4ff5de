//! The training step on small synthetic batches: every strategy's terms, soft labels of mixing
//! augmentations, every saliency method with every augmentation, and the saliency term alone
//! reaching every parameter (second order).

use std::sync::Arc;

use burn::backend::Autodiff;
use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use salaug_train::backend::Selected;
use salaug_train::data::Data;
use salaug_train::data::{ImageBatcher, ImageSet, Images};
use salaug_train::trainee::build_model;
use salaug_train::RunConfig;

type AB = Autodiff<Selected>;

fn data() -> Data {
    let (n, c, h, w) = (8, 1, 16, 16);
    let pixels = (0..n * c * h * w)
        .map(|i| ((i * 37 + i / 7) % 251) as u8)
        .collect();
    let set = Arc::new(Images::Memory(ImageSet {
        pixels,
        labels: (0..n).map(|i| i % 4).collect(),
        shape: [c, h, w],
        classes: 4,
    }));
    Data {
        train: set.clone(),
        test: set,
        validation: None,
        root: ".".into(),
        mean: vec![0.5],
        std: vec![0.25],
    }
}

fn config(sets: &[&str]) -> RunConfig {
    let mut all = vec![
        "data.mean=[0.5]".to_string(),
        "data.std=[0.25]".to_string(),
        "model.width=0.25".to_string(),
    ];
    all.extend(sets.iter().map(|s| s.to_string()));
    RunConfig::parse("[data]\ndataset = \"fashion_mnist\"\n", &all).unwrap()
}

/// `build_model` for the test backend, one at a time: it seeds the backend's generator and
/// draws the initial weights from it, which the tests running beside this one also draw from.
fn built(c: &RunConfig, d: &Data) -> anyhow::Result<salaug_train::trainee::Trainee<AB>> {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _held = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    build_model::<AB>(c, d, &Default::default())
}

fn scalar<B: Backend>(t: Tensor<B, 1>) -> f64 {
    t.into_scalar().elem::<f64>()
}

#[test]
fn every_strategy_combines_its_terms() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    for (strategy, sal, inv) in [
        ("ref", false, false),
        ("inv", false, true),
        ("sal", true, false),
        ("inv+sal", true, true),
    ] {
        let c = config(&[
            &format!("train.strategy=\"{strategy}\""),
            "augment={kind=\"rotation\", p=1.0}",
            "loss.alpha=2.0",
            "loss.beta=3.0",
            "loss.gamma=5.0",
        ]);
        let model = built(&c, &d).unwrap();
        let l = model.losses(&batch).unwrap();
        assert_eq!((l.sal.is_some(), l.inv.is_some()), (sal, inv), "{strategy}");
        let expected = 2.0 * scalar(l.class.clone())
            + l.sal.clone().map_or(0.0, |t| 3.0 * scalar(t))
            + l.inv.clone().map_or(0.0, |t| 5.0 * scalar(t));
        let total = scalar(l.total.clone());
        assert!(
            (total - expected).abs() < 1e-4 * expected.abs().max(1.0),
            "{strategy}: {total} vs {expected}"
        );
        if let Some(s) = l.sal {
            assert!(scalar(s) > 0.0);
        }
        assert_eq!(l.logits.dims(), [16, 4], "x and T(x) in one forward");
    }
}

/// `salaug time --exclude-transform` times `losses_of` on a batch prepared before the timer:
/// the same losses as the whole step, with `T(x)` drawn the same way every time.
#[test]
fn a_prepared_batch_gives_the_step_its_losses() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    let c = config(&[
        "train.strategy=\"sal\"",
        "augment={kind=\"rotation\", p=1.0}",
    ]);
    let model = built(&c, &d).unwrap();
    let whole = model.losses(&batch).unwrap();
    let (p, q) = (
        model.prepare(&batch).unwrap(),
        model.prepare(&batch).unwrap(),
    );
    assert_eq!(p.images.dims(), [16, 1, 16, 16], "[x; T(x)]");
    let diff = (p.images.clone() - q.images)
        .abs()
        .max()
        .into_scalar()
        .elem::<f64>();
    assert_eq!(diff, 0.0, "T(x) is seeded by the run seed and the batch");
    let half = (p.images.clone().narrow(0, 0, 8) - batch.images.clone())
        .abs()
        .max();
    assert_eq!(half.into_scalar().elem::<f64>(), 0.0, "x first");
    let parts = model.losses_of(p).unwrap();
    for (a, b) in [(whole.total, parts.total), (whole.class, parts.class)] {
        assert!((scalar(a.clone()) - scalar(b.clone())).abs() < 1e-6 * scalar(a).abs().max(1.0));
    }
}

#[test]
fn mixing_augmentations_train_with_soft_labels_and_expected_maps() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    for aug in ["mix_up", "cut_mix", "cut_out", "aug_mix"] {
        let c = config(&[
            "train.strategy=\"sal\"",
            &format!("augment={{kind=\"{aug}\"}}"),
        ]);
        let model = built(&c, &d).unwrap();
        let l = model
            .losses(&batch)
            .unwrap_or_else(|e| panic!("{aug}: {e:#}"));
        assert!(scalar(l.total).is_finite(), "{aug}");
    }
    // MixUp has no inverse: asking for one is an error, not a panic.
    let c = config(&[
        "train.strategy=\"sal\"",
        "augment={kind=\"mix_up\"}",
        "loss.compare=\"inverse\"",
    ]);
    let model = built(&c, &d).unwrap();
    assert!(model.losses(&batch).is_err());
}

/// Every saliency method trains with every augmentation: its maps go through the inverse warp
/// of the geometric ones and the expected map of the mixing ones.
#[test]
fn every_method_trains_with_every_augmentation() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    let methods = [
        "\"guided_backprop\"",
        "\"deconvnet\"",
        "{ grad_cam = {} }",
        "{ guided_grad_cam = { layer = \"block1\" } }",
        "{ smooth_grad = { of = { grad_cam = {} }, samples = 2 } }",
    ];
    let mut kinds: Vec<&str> = salaug_augment::Augmentation::UNITS.to_vec();
    kinds.extend(["combined", "affine", "simclr"]);
    for method in methods {
        for kind in &kinds {
            let c = config(&[
                "train.strategy=\"sal\"",
                &format!("augment={{kind=\"{kind}\"}}"),
                &format!("loss.method={method}"),
            ]);
            let model = built(&c, &d).unwrap();
            let l = model
                .losses(&batch)
                .unwrap_or_else(|e| panic!("{method} with {kind}: {e:#}"));
            let sal = scalar(l.sal.expect("a sal step has L_sal"));
            assert!(sal.is_finite(), "{method} with {kind}: L_sal {sal}");
            let grads = l.total.backward();
            let mut v = CountGrads::<AB> {
                grads: &grads,
                with: 0,
                without: 0,
            };
            model.visit(&mut v);
            assert!(v.with > 0, "{method} with {kind}: no gradient");
        }
    }
}

struct CountGrads<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    with: usize,
    without: usize,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for CountGrads<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if !param.val().is_require_grad() {
            return; // BatchNorm running statistics
        }
        match param.val().grad(self.grads) {
            Some(g) if g.clone().abs().sum().into_scalar().elem::<f64>() > 0.0 => self.with += 1,
            _ => self.without += 1,
        }
    }
}

#[test]
fn the_saliency_term_alone_reaches_every_parameter() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    let c = config(&[
        "train.strategy=\"sal\"",
        "augment={kind=\"horizontal_flip\", p=1.0}",
        "loss.alpha=0.0",
    ]);
    let model = built(&c, &d).unwrap();
    let l = model.losses(&batch).unwrap();
    let grads = l.total.backward();
    let mut v = CountGrads::<AB> {
        grads: &grads,
        with: 0,
        without: 0,
    };
    model.visit(&mut v);
    // conv1, bn1 γ and β, conv2, bn2 γ, fc weight are reached through the maps. Two parameters
    // cannot change an input gradient, so their second-order gradient is exactly zero: the
    // classifier's bias (it shifts a logit by a constant) and the last BatchNorm's β (it only
    // moves ReLU kinks; no batch statistic follows it).
    assert_eq!((v.with, v.without), (6, 2));
}

/// Every float of a model in visit order: its values and, for the trained parameters, its
/// gradient (BatchNorm running statistics have none).
struct Floats<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    values: Vec<Vec<f32>>,
    grad: Vec<Option<Vec<f32>>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Floats<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let v = param.val();
        self.values
            .push(v.clone().into_data().convert::<f32>().to_vec().unwrap());
        self.grad.push(
            v.grad(self.grads)
                .map(|g| g.into_data().convert::<f32>().to_vec().unwrap()),
        );
    }
}

/// The largest difference between `a` and `b` relative to the largest magnitude in `a`.
fn relative(a: &[f32], b: &[f32]) -> f64 {
    let scale = a.iter().fold(0f64, |m, x| m.max(x.abs() as f64)).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / scale
}

/// What one training step of a fresh model gives: its logits, L_class, L_sal (when trained),
/// and every float of the model after the step's forward with its gradient.
struct Stepped {
    logits: Vec<f32>,
    class: f64,
    sal: Option<f64>,
    values: Vec<Vec<f32>>,
    grad: Vec<Option<Vec<f32>>>,
}

/// One training step (losses and backward, no update) on `batch` of a model built for `sets`.
fn stepped(d: &Data, batch: &salaug_train::data::Batch<AB>, sets: &[&str]) -> Stepped {
    let model = built(&config(sets), d).unwrap();
    let l = model.losses(batch).unwrap();
    let logits: Vec<f32> = l.logits.clone().into_data().to_vec().unwrap();
    let (class, sal) = (scalar(l.class.clone()), l.sal.clone().map(scalar));
    let grads = l.total.backward();
    // A record syncs the BatchNorm running statistics (burn's RunningState holds a forward's
    // update per thread until then); the checkpoint holds the synced values.
    let _ = model.clone().into_record();
    let mut f = Floats::<AB> {
        grads: &grads,
        values: Vec::new(),
        grad: Vec::new(),
    };
    model.visit(&mut f);
    Stepped {
        logits,
        class,
        sal,
        values: f.values,
        grad: f.grad,
    }
}

/// `sal` with β = 0 runs the whole saliency path (the lifted forward, both maps, L_sal) but
/// L_sal carries no gradient: its step must be `ref`'s step. Any systematic difference between
/// the two in a study (science-audit.md) would be a defect of the path, not of the method. It
/// is the same bit for bit (logits, gradients, BatchNorm running statistics), so a whole run is
/// too (checked by hand: 2-epoch ci-fmnist runs, identical metrics.csv but for the seconds).
/// The same holds with the finite-difference L_sal gradient (`loss.second_order`).
#[test]
fn sal_at_beta_zero_takes_the_same_step_as_ref() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    let step = |strategy: &str, second_order: &str| {
        let out = stepped(
            &d,
            &batch,
            &[
                &format!("train.strategy=\"{strategy}\""),
                "augment={kind=\"rotation\", p=1.0}",
                "loss.beta=0.0",
                &format!("loss.second_order={second_order}"),
            ],
        );
        assert_eq!(out.sal.is_some(), strategy == "sal");
        (out.logits, out.class, out.values, out.grad)
    };
    let (logits_r, class_r, values_r, grad_r) = step("ref", "\"exact\"");
    for second_order in ["\"exact\"", "{finite_difference={}}"] {
        let (logits_s, class_s, values_s, grad_s) = step("sal", second_order);
        // Bit for bit: the lifted forward computes the same arithmetic as the plain one.
        assert_eq!(logits_r, logits_s, "the same logits");
        assert_eq!(class_r, class_s);
        assert_eq!(values_r.len(), values_s.len());
        for (i, (a, b)) in values_r.iter().zip(&values_s).enumerate() {
            // The same initial weights, and the same BatchNorm running statistics after the step.
            assert!(
                relative(a, b) == 0.0,
                "float {i}: {} ({:?} vs {:?})",
                relative(a, b),
                &a[..a.len().min(4)],
                &b[..b.len().min(4)]
            );
        }
        let mut trained = 0;
        for (i, (a, b)) in grad_r.iter().zip(&grad_s).enumerate() {
            match (a, b) {
                (Some(a), Some(b)) => {
                    trained += 1;
                    assert!(relative(a, b) == 0.0, "gradient {i}: {}", relative(a, b));
                }
                (None, None) => {}
                _ => panic!("parameter {i} has a gradient in one step only"),
            }
        }
        assert!(trained >= 8, "{trained} trained parameters compared");
    }
}

/// The training step with the finite-difference L_sal gradient (f32, train-mode BatchNorm, a
/// rotation, β = 1, the default step) takes the exact step's direction and size: the same
/// losses, the same running statistics, and a total gradient within cosine 0.999 and 1 % of
/// the exact one's norm.
#[test]
fn the_finite_difference_step_is_the_exact_step() {
    let device = Default::default();
    let d = data();
    let batch = ImageBatcher::new(d.train.clone()).make::<AB>((0..8).collect(), &device);
    let step = |second_order: &str| {
        let out = stepped(
            &d,
            &batch,
            &[
                "train.strategy=\"sal\"",
                "augment={kind=\"rotation\", p=1.0}",
                "loss.beta=1.0",
                &format!("loss.second_order={second_order}"),
            ],
        );
        let losses = [out.class, out.sal.expect("L_sal is trained")];
        let flat: Vec<f64> = (out.grad.iter())
            .flat_map(|g| g.clone().unwrap_or_default())
            .map(f64::from)
            .collect();
        (losses, out.values, flat)
    };
    let (losses_e, values_e, grad_e) = step("\"exact\"");
    let (losses_f, values_f, grad_f) = step("{finite_difference={}}");
    for (a, b) in losses_e.iter().zip(&losses_f) {
        assert!(
            (a - b).abs() <= 1e-5 * a.abs().max(1.0),
            "{losses_e:?} vs {losses_f:?}"
        );
    }
    for (a, b) in values_e.iter().zip(&values_f) {
        assert!(
            relative(a, b) < 1e-5,
            "running statistics or weights differ"
        );
    }
    assert_eq!(grad_e.len(), grad_f.len());
    let dot: f64 = grad_e.iter().zip(&grad_f).map(|(a, b)| a * b).sum();
    let (ne, nf) = (
        grad_e.iter().map(|a| a * a).sum::<f64>().sqrt(),
        grad_f.iter().map(|b| b * b).sum::<f64>().sqrt(),
    );
    let (cosine, norm) = (dot / (ne * nf), (nf - ne).abs() / ne);
    assert!(
        cosine > 0.999 && norm < 0.01,
        "cosine {cosine}, norm error {norm}"
    );
}
