//! The zoo's shapes, parameter counts, feature taps, and a saliency step under nested autodiff
//! for every full-size model (on the default backend).

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Distribution;
use salaug_core::{Classifier, Explain, MapPair, SaliencyKind, SaliencyLossConfig};
use salaug_models::{Arch, Model, ModelConfig, Stem};

/// The zoo runs on the default CPU backend (burn-flex with our kernels).
type B = burn::backend::Flex;
type AD = burn::backend::Autodiff<B>;

/// burn's backend RNG is global and the tests of this binary run in parallel; every test that
/// builds a model (weights initialise lazily, on first use) holds this lock throughout, so the
/// seeded tests see the same weights and inputs whatever runs beside them.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn imagenet(arch: Arch) -> ModelConfig {
    ModelConfig::new(arch, Stem::ImageNet, 3, 1000)
}

#[test]
fn imagenet_parameter_counts_match_torchvision() {
    let _rng = rng_lock();
    let device = Default::default();
    for (arch, expected) in [
        (Arch::ResNet18, 11_689_512),
        (Arch::ResNet50, 25_557_032),
        (Arch::DenseNet121, 7_978_856),
        (Arch::DenseNet169, 14_149_480),
        (Arch::Vgg16Bn, 138_365_992),
        (Arch::Vgg19Bn, 143_678_248),
    ] {
        // BatchNorm running statistics are not parameters (burn's num_params counts them).
        let n = salaug_models::trainable_params(&imagenet(arch).init::<AD>(&device));
        assert_eq!(n, expected, "{arch}");
    }
}

#[test]
fn imagenet_variants_map_224_to_logits() {
    let _rng = rng_lock();
    let device = Default::default();
    B::seed(&device, 1);
    let x = Tensor::<B, 4>::random([1, 3, 224, 224], Distribution::Default, &device);
    for arch in Arch::ALL {
        let model = imagenet(arch).init::<B>(&device);
        let (logits, features) = model.forward_features(x.clone());
        assert_eq!(logits.dims(), [1, 1000], "{arch}");
        let expected: Vec<(&str, [usize; 4])> = match arch {
            Arch::ResNet18 | Arch::ResNet50 => {
                let e = if arch == Arch::ResNet50 { 4 } else { 1 };
                vec![
                    ("stem", [1, 64, 56, 56]),
                    ("layer1", [1, 64 * e, 56, 56]),
                    ("layer2", [1, 128 * e, 28, 28]),
                    ("layer3", [1, 256 * e, 14, 14]),
                    ("layer4", [1, 512 * e, 7, 7]),
                    ("pool", [1, 512 * e, 1, 1]),
                ]
            }
            Arch::DenseNet121 | Arch::DenseNet169 => {
                let last = if arch == Arch::DenseNet121 {
                    1024
                } else {
                    1664
                };
                let b3 = if arch == Arch::DenseNet121 {
                    1024
                } else {
                    1280
                };
                vec![
                    ("stem", [1, 64, 56, 56]),
                    ("block1", [1, 256, 56, 56]),
                    ("block2", [1, 512, 28, 28]),
                    ("block3", [1, b3, 14, 14]),
                    ("block4", [1, last, 7, 7]),
                    ("pool", [1, last, 1, 1]),
                ]
            }
            Arch::Vgg16Bn | Arch::Vgg19Bn => vec![
                ("stage1", [1, 64, 112, 112]),
                ("stage2", [1, 128, 56, 56]),
                ("stage3", [1, 256, 28, 28]),
                ("stage4", [1, 512, 14, 14]),
                ("stage5", [1, 512, 7, 7]),
                ("pool", [1, 512, 7, 7]),
            ],
            Arch::SmallCnn => vec![
                ("block1", [1, 32, 56, 56]),
                ("block2", [1, 64, 28, 28]),
                ("pool", [1, 64, 4, 4]),
            ],
        };
        let got: Vec<(&str, [usize; 4])> = features.iter().map(|(n, f)| (*n, f.dims())).collect();
        assert_eq!(got, expected, "{arch}");
        assert_eq!(
            model.feature_names(),
            expected
                .iter()
                .map(|(n, _)| n.to_string())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn small_variants_take_32_and_28_pixels_and_any_channels() {
    let _rng = rng_lock();
    let device = Default::default();
    for arch in Arch::ALL {
        for (channels, side) in [(3, 32), (1, 28)] {
            let model = ModelConfig::new(arch, Stem::Small, channels, 10)
                .with_width(0.25)
                .init::<B>(&device);
            let x = Tensor::<B, 4>::zeros([2, channels, side, side], &device);
            assert_eq!(model.logits(x).dims(), [2, 10], "{arch} {channels}×{side}²");
        }
    }
}

#[test]
fn width_multiplier_scales_channels() {
    let _rng = rng_lock();
    let device = Default::default();
    let full = ModelConfig::new(Arch::ResNet18, Stem::Small, 3, 10).init::<B>(&device);
    let quarter = ModelConfig::new(Arch::ResNet18, Stem::Small, 3, 10)
        .with_width(0.25)
        .init::<B>(&device);
    let x = Tensor::<B, 4>::zeros([1, 3, 32, 32], &device);
    let taps = ["layer4".to_string()];
    let (_, f) = full.logits_and_features(x.clone(), &taps).unwrap();
    let (_, q) = quarter.logits_and_features(x, &taps).unwrap();
    assert_eq!(f[0].dims(), [1, 512, 4, 4]);
    assert_eq!(q[0].dims(), [1, 128, 4, 4]);
    // Conv weights scale with width², so a quarter-width net has about 1/16 of the parameters.
    let ratio = full.num_params() as f64 / quarter.num_params() as f64; // burn's count: fine for a ratio
    assert!((14.0..17.0).contains(&ratio), "{ratio}");
}

#[test]
fn unknown_tap_and_bad_settings_are_errors() {
    let _rng = rng_lock();
    let device = Default::default();
    let model = ModelConfig::new(Arch::SmallCnn, Stem::Small, 1, 10).init::<B>(&device);
    let x = Tensor::<B, 4>::zeros([1, 1, 28, 28], &device);
    let err = model
        .logits_and_features(x, &["layer9".to_string()])
        .unwrap_err();
    assert!(err.to_string().contains("layer9") && err.to_string().contains("block1"));
    for bad in [
        ModelConfig::new(Arch::SmallCnn, Stem::Small, 0, 10),
        ModelConfig::new(Arch::SmallCnn, Stem::Small, 1, 1),
        ModelConfig::new(Arch::SmallCnn, Stem::Small, 1, 10).with_width(0.0),
        ModelConfig::new(Arch::SmallCnn, Stem::Small, 1, 10).with_width(f64::NAN),
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    assert_eq!(Arch::from_name("vgg19_bn"), Some(Arch::Vgg19Bn));
    assert_eq!(Arch::from_name("vgg19"), None);
}

/// Per parameter tensor: its path, and whether its gradient is finite and not all zero.
struct GradRows<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    path: Vec<String>,
    rows: Vec<(String, bool, bool)>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for GradRows<'_, B> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.push(name.to_string());
    }
    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.pop();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        if !t.is_require_grad() {
            return;
        }
        let (finite, nonzero) = match t.grad(self.grads) {
            Some(g) => {
                let v = g.into_data().convert::<f32>().to_vec::<f32>().unwrap();
                (v.iter().all(|x| x.is_finite()), v.iter().any(|x| *x != 0.0))
            }
            None => (true, false),
        };
        self.rows.push((self.path.join("."), finite, nonzero));
    }
}

/// One saliency step (L_class + L_sal of a horizontal flip) on `model`; checks every parameter
/// tensor gets a finite gradient, non-zero except the biases of convolutions that a BatchNorm
/// directly follows (VGG's), whose gradient is exactly zero in training mode.
fn saliency_step_reaches_every_parameter(model: Model<AD>, x: Tensor<AD, 4>, classes: usize) {
    let device = x.device();
    let n = x.dims()[0];
    let y = Tensor::<AD, 1, Int>::from_data(
        TensorData::new((0..n as i64).map(|i| i % classes as i64).collect(), [n]),
        &device,
    );
    let loss = SaliencyLossConfig::default().init().unwrap();
    let batch = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
    let targets = Tensor::cat(vec![y.clone(), y], 0);
    let out = loss
        .of_batch(
            &model,
            &SaliencyKind::Gradient,
            batch,
            &Explain::class(targets.clone()),
            MapPair::flip_back,
        )
        .unwrap();
    let l_sal = out.loss;
    let l_class = burn::nn::loss::CrossEntropyLossConfig::new()
        .init(&device)
        .forward(out.logits, targets);
    let total = l_class + l_sal.clone();
    assert!(l_sal.into_scalar().to_f64() > 0.0);
    let grads = total.backward();
    let mut rows = GradRows::<AD> {
        grads: &grads,
        path: Vec::new(),
        rows: Vec::new(),
    };
    model.visit(&mut rows);
    assert!(!rows.rows.is_empty());
    for (path, finite, nonzero) in rows.rows {
        assert!(finite, "{path}: non-finite gradient");
        let conv_bias_before_bn = path.ends_with("conv.bias") && path.contains("stages");
        assert!(nonzero || conv_bias_before_bn, "{path}: zero gradient");
    }
}

#[test]
fn full_size_small_variants_train_through_saliency() {
    let _rng = rng_lock();
    let device = Default::default();
    for arch in Arch::ALL {
        AD::seed(&device, 7);
        let model = ModelConfig::new(arch, Stem::Small, 3, 10).init::<AD>(&device);
        let x = Tensor::<AD, 4>::random([2, 3, 32, 32], Distribution::Default, &device);
        saliency_step_reaches_every_parameter(model, x, 10);
    }
}

#[test]
fn full_size_imagenet_variants_train_through_saliency() {
    let _rng = rng_lock();
    // Full width and depth, 1000 classes, at 64×64 to keep the CPU time in reason (the
    // 224×224 forward is checked above); VGG's head adapts the 2×2 map to 7×7.
    let device = Default::default();
    for arch in Arch::ALL {
        AD::seed(&device, 8);
        let model = imagenet(arch).init::<AD>(&device);
        let x = Tensor::<AD, 4>::random([2, 3, 64, 64], Distribution::Default, &device);
        saliency_step_reaches_every_parameter(model, x, 1000);
    }
}

/// Every zoo model supports every saliency method: its ReLUs go through the guided/DeconvNet
/// hook (the guided and DeconvNet maps differ from the gradient, so the rule was applied) and
/// each named feature through the Grad-CAM tap (a map of the input's size, ≥ 0, at every
/// feature and at the default layer); L_sal through Grad-CAM back-propagates to finite
/// gradients. The VGG ImageNet head covers the ReLUs of its 2-D classifier layers.
#[test]
fn every_model_supports_every_saliency_method() {
    use salaug_core::{DeconvNet, GradCam, Gradient, GuidedBackprop, SaliencyMethod};
    let _rng = rng_lock();
    let device = Default::default();
    AD::seed(&device, 5);
    let host = |t: Tensor<AD, 4>| t.into_data().convert::<f32>().to_vec::<f32>().unwrap();
    let mut configs: Vec<ModelConfig> = Arch::ALL
        .into_iter()
        .map(|arch| ModelConfig::new(arch, Stem::Small, 3, 4).with_width(0.125))
        .collect();
    configs.push(ModelConfig::new(Arch::Vgg16Bn, Stem::ImageNet, 3, 4).with_width(1.0 / 16.0));
    for config in configs {
        let what = format!("{} {:?}", config.arch, config.stem);
        let model = config.init::<AD>(&device);
        let x = Tensor::<AD, 4>::random([2, 3, 32, 32], Distribution::Default, &device);
        let explain = Explain::class(Tensor::from_data([1, 3], &device));
        let grad = host(
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
        for (name, map) in [("guided", &guided), ("deconvnet", &deconv)] {
            assert!(map.iter().all(|v| v.is_finite()), "{what}: {name}");
            assert!(*map != grad, "{what}: the {name} rule was not applied");
        }
        let mut layers: Vec<Option<String>> = model.feature_names().into_iter().map(Some).collect();
        layers.push(None);
        for layer in layers {
            let cam = GradCam {
                layer: layer.clone(),
            }
            .attribute(&model, x.clone(), &explain)
            .unwrap_or_else(|e| panic!("{what}: Grad-CAM at {layer:?}: {e}"))
            .maps;
            assert_eq!(cam.dims(), [2, 1, 32, 32], "{what} {layer:?}");
            let cam = host(cam);
            assert!(
                cam.iter().all(|v| v.is_finite() && *v >= 0.0),
                "{what}: Grad-CAM at {layer:?}"
            );
        }
        let loss = SaliencyLossConfig::default().init().unwrap();
        let both = Tensor::cat(vec![x.clone(), x.flip([3])], 0);
        let explain = Explain::class(Tensor::from_data([1, 3, 1, 3], &device));
        let l = loss
            .of_batch(
                &model,
                &SaliencyKind::GradCam(GradCam::default()),
                both,
                &explain,
                MapPair::flip_back,
            )
            .unwrap()
            .loss;
        let value: f32 = l.clone().into_scalar().elem();
        assert!(value.is_finite(), "{what}: L_sal {value}");
        let grads = l.backward();
        let mut finite = FiniteGrads(&grads, 0, 0);
        model.visit(&mut finite);
        assert!(
            finite.1 > 0 && finite.2 == 0,
            "{what}: {} with a gradient, {} not finite",
            finite.1,
            finite.2
        );
    }
}

/// Counts parameters with a gradient and those whose gradient is not finite.
struct FiniteGrads<'a>(&'a <AD as AutodiffBackend>::Gradients, usize, usize);

impl ModuleVisitor<AD> for FiniteGrads<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<AD, D>>) {
        if let Some(g) = param.val().grad(self.0) {
            self.1 += 1;
            let g = g.into_data().convert::<f32>().to_vec::<f32>().unwrap();
            if !g.iter().all(|v| v.is_finite()) {
                self.2 += 1;
            }
        }
    }
}
