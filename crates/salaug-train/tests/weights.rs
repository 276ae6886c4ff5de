//! torchvision weights in and out, without PyTorch: `.safetensors` fixtures written here with
//! torchvision's exact key names and shapes (ResNet-18, ResNet-50, DenseNet-121 in both key
//! styles, VGG-16-BN; seeded random values)
//! loads with every tensor in its place (checked against a key map written out by hand, not
//! the library's), export → import round-trips bit for bit, and each bad input is an error
//! that names the problem.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::prelude::*;
use rand::{Rng, SeedableRng};
use salaug_models::{Arch, ModelConfig, Stem};
use salaug_train::backend::Selected;
use salaug_train::weights::{export, load_pretrained};

/// torchvision's `state_dict` keys and shapes of ResNet-18 (`blocks = [2, 2, 2, 2]`, basic) or
/// ResNet-50 (`[3, 4, 6, 3]`, bottleneck), with `classes` outputs.
fn torchvision_resnet(bottleneck: bool, classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let bn = |keys: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{name}.{p}"), vec![c]));
        }
        keys.push((format!("{name}.num_batches_tracked"), vec![]));
    };
    keys.push(("conv1.weight".into(), vec![64, 3, 7, 7]));
    bn(&mut keys, "bn1", 64);
    let blocks = if bottleneck {
        [3, 4, 6, 3]
    } else {
        [2, 2, 2, 2]
    };
    let expansion = if bottleneck { 4 } else { 1 };
    let mut cin = 64;
    for (s, &n) in blocks.iter().enumerate() {
        let width = 64 << s;
        for b in 0..n {
            let p = format!("layer{}.{b}", s + 1);
            let cout = width * expansion;
            if bottleneck {
                keys.push((format!("{p}.conv1.weight"), vec![width, cin, 1, 1]));
                bn(&mut keys, &format!("{p}.bn1"), width);
                keys.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
                bn(&mut keys, &format!("{p}.bn2"), width);
                keys.push((format!("{p}.conv3.weight"), vec![cout, width, 1, 1]));
                bn(&mut keys, &format!("{p}.bn3"), cout);
            } else {
                keys.push((format!("{p}.conv1.weight"), vec![width, cin, 3, 3]));
                bn(&mut keys, &format!("{p}.bn1"), width);
                keys.push((format!("{p}.conv2.weight"), vec![width, width, 3, 3]));
                bn(&mut keys, &format!("{p}.bn2"), width);
            }
            if b == 0 && (s > 0 || cin != cout) {
                keys.push((format!("{p}.downsample.0.weight"), vec![cout, cin, 1, 1]));
                bn(&mut keys, &format!("{p}.downsample.1"), cout);
            }
            cin = cout;
        }
    }
    keys.push(("fc.weight".into(), vec![classes, cin]));
    keys.push(("fc.bias".into(), vec![classes]));
    keys
}

/// Seeded values for every key (variances positive; `num_batches_tracked` an int64 count).
fn values(keys: &[(String, Vec<usize>)], seed: u64) -> BTreeMap<String, (Vec<usize>, Vec<f32>)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    keys.iter()
        .map(|(k, shape)| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n)
                .map(|_| {
                    let x: f32 = rng.random_range(-1.0..1.0);
                    if k.ends_with("running_var") {
                        x.abs() + 0.5
                    } else {
                        x
                    }
                })
                .collect();
            (k.clone(), (shape.clone(), v))
        })
        .collect()
}

/// Writes `tensors` as a `.safetensors` file, as `safetensors.torch.save_file` would.
fn write_safetensors(path: &Path, tensors: &BTreeMap<String, (Vec<usize>, Vec<f32>)>) {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes: BTreeMap<&String, Vec<u8>> = tensors
        .iter()
        .map(|(k, (_, v))| {
            let b = if k.ends_with("num_batches_tracked") {
                100i64.to_le_bytes().to_vec()
            } else {
                v.iter().flat_map(|x| x.to_le_bytes()).collect()
            };
            (k, b)
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(k, (shape, _))| {
            let dtype = if k.ends_with("num_batches_tracked") {
                Dtype::I64
            } else {
                Dtype::F32
            };
            (
                k.clone(),
                TensorView::new(dtype, shape.clone(), &bytes[k]).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

fn config(arch: Arch, classes: usize) -> ModelConfig {
    ModelConfig::new(arch, Stem::ImageNet, 3, classes)
}

/// salaug's float tensors by module path (enum variants left out, as burn-store does).
fn by_path<B: Backend, M: Module<B>>(m: &M) -> BTreeMap<String, Vec<f32>> {
    struct Paths {
        stack: Vec<String>,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl<B: Backend> ModuleVisitor<B> for Paths {
        fn enter_module(&mut self, name: &str, container: &str) {
            self.stack.push(if container.starts_with("Enum:") {
                String::new()
            } else {
                name.to_string()
            });
        }
        fn exit_module(&mut self, _name: &str, _container: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
            let path: Vec<&str> = self
                .stack
                .iter()
                .map(String::as_str)
                .filter(|s| !s.is_empty())
                .collect();
            let v = p
                .val()
                .into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .unwrap();
            self.out.insert(path.join("."), v);
        }
    }
    let mut paths = Paths {
        stack: Vec::new(),
        out: BTreeMap::new(),
    };
    m.visit(&mut paths);
    paths.out
}

/// torchvision's key → salaug's path, written out by hand (independent of the library's
/// regexes): `layerN.` → `layers.(N-1).`, `downsample.0/1` → `downsample.conv/bn`, a norm's
/// `weight`/`bias` → `gamma`/`beta`.
fn salaug_path(key: &str) -> String {
    let mut parts: Vec<String> = key.split('.').map(String::from).collect();
    if let Some(n) = parts[0].strip_prefix("layer") {
        let stage: usize = n.parse().unwrap();
        parts.splice(0..1, ["layers".to_string(), (stage - 1).to_string()]);
    }
    for i in 0..parts.len() {
        if parts[i] == "downsample" {
            parts[i + 1] = if parts[i + 1] == "0" { "conv" } else { "bn" }.into();
        }
    }
    let is_norm = parts.len() >= 2 && {
        let owner = &parts[parts.len() - 2];
        owner.starts_with("bn") || owner == "bn"
    };
    let last = parts.len() - 1;
    if is_norm {
        parts[last] = match parts[last].as_str() {
            "weight" => "gamma".into(),
            "bias" => "beta".into(),
            other => other.into(),
        };
    }
    parts.join(".")
}

/// `[r, c]` → its transpose, flattened.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols)
        .flat_map(|j| (0..rows).map(move |i| v[i * cols + j]))
        .collect()
}

#[test]
fn a_torchvision_fixture_loads_with_every_tensor_in_its_place() {
    let device = Default::default();
    for (arch, bottleneck) in [(Arch::ResNet18, false), (Arch::ResNet50, true)] {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("weights.safetensors");
        let keys = torchvision_resnet(bottleneck, 1000);
        let fixture = values(&keys, 7);
        write_safetensors(&file, &fixture);
        let cfg = config(arch, 1000);
        let mut model = cfg.init::<Selected>(&device);
        let loaded = load_pretrained(&mut model, &cfg, &file).unwrap();
        let got = by_path(&model);
        let floats = keys
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"));
        assert_eq!(loaded.applied, floats.clone().count(), "{arch:?}");
        assert_eq!(loaded.head_replaced, None);
        assert_eq!(
            got.len(),
            floats.clone().count(),
            "{arch:?}: the model's tensors"
        );
        for (key, shape) in floats {
            let path = salaug_path(key);
            let have = got
                .get(&path)
                .unwrap_or_else(|| panic!("{arch:?}: no {path} (for {key})"));
            let want = &fixture[key].1;
            let want = if key == "fc.weight" {
                transpose(want, shape[0], shape[1])
            } else {
                want.clone()
            };
            assert!(have == &want, "{arch:?}: {key} is not at {path}");
        }
    }
}

#[test]
fn a_head_of_another_class_count_is_replaced_and_the_rest_loads() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("weights.safetensors");
    let fixture = values(&torchvision_resnet(false, 1000), 7);
    write_safetensors(&file, &fixture);
    let cfg = config(Arch::ResNet18, 10);
    let mut model = cfg.init::<Selected>(&device);
    let head_before = by_path(&model)["fc.weight"].clone();
    let loaded = load_pretrained(&mut model, &cfg, &file).unwrap();
    assert_eq!(loaded.head_replaced, Some(1000));
    let got = by_path(&model);
    assert_eq!(
        got["fc.weight"], head_before,
        "the new head keeps its initialisation"
    );
    assert_eq!(got["conv1.weight"], fixture["conv1.weight"].1);
    assert_eq!(loaded.applied, got.len() - 2);
}

#[test]
fn export_then_import_round_trips_bit_for_bit_in_torchvision_keys() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(Arch::ResNet18, 10);
    B::seed(&device, 11);
    let model = cfg.init::<Selected>(&device);
    let file = tmp.path().join("out.safetensors");
    export(&model, &cfg, &file).unwrap();
    // The file holds torchvision's keys (less num_batches_tracked), with its shapes.
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want: Vec<(String, Vec<usize>)> = torchvision_resnet(false, 10)
        .into_iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
        .collect();
    want.sort();
    assert_eq!(
        names,
        want.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
    );
    for (k, shape) in &want {
        assert_eq!(&st.tensor(k).unwrap().shape().to_vec(), shape, "{k}");
    }
    B::seed(&device, 12);
    let mut back = cfg.init::<Selected>(&device);
    assert_ne!(
        by_path(&back),
        by_path(&model),
        "a second seed gives other weights"
    );
    load_pretrained(&mut back, &cfg, &file).unwrap();
    let bits = |m: &BTreeMap<String, Vec<f32>>| -> Vec<(String, Vec<u32>)> {
        m.iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect()))
            .collect()
    };
    assert_eq!(bits(&by_path(&back)), bits(&by_path(&model)));
}

type B = Selected;

#[test]
fn bad_weights_are_errors_that_name_the_problem() {
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(Arch::ResNet18, 1000);
    let err = |file: &Path, cfg: &ModelConfig| -> String {
        let mut model = cfg.init::<Selected>(&device);
        format!("{:#}", load_pretrained(&mut model, cfg, file).unwrap_err())
    };
    let keys = torchvision_resnet(false, 1000);

    // No key map for the architecture, the stem or the width.
    let good = tmp.path().join("good.safetensors");
    write_safetensors(&good, &values(&keys, 1));
    let own = ModelConfig::new(Arch::SmallCnn, Stem::Small, 3, 1000);
    assert!(err(&good, &own).contains("no torchvision key map for small_cnn"));
    let small = ModelConfig::new(Arch::ResNet18, Stem::Small, 3, 1000);
    assert!(err(&good, &small).contains("model.stem = \"imagenet\""));
    let gray = ModelConfig::new(Arch::ResNet18, Stem::ImageNet, 1, 1000);
    assert!(err(&good, &gray).contains("3 input channels"));

    // A shape that does not fit: the key and both shapes.
    let mut wrong = values(&keys, 1);
    wrong.get_mut("layer2.0.conv1.weight").unwrap().0 = vec![128, 64, 1, 9];
    let file = tmp.path().join("shape.safetensors");
    write_safetensors(&file, &wrong);
    let e = err(&file, &cfg);
    assert!(
        e.contains("layers.1.0.conv1.weight")
            && e.contains("[128, 64, 3, 3]")
            && e.contains("[128, 64, 1, 9]"),
        "{e}"
    );

    // A missing key.
    let mut missing = values(&keys, 1);
    missing.remove("layer3.1.bn2.running_var");
    let file = tmp.path().join("missing.safetensors");
    write_safetensors(&file, &missing);
    let e = err(&file, &cfg);
    assert!(e.contains("layers.2.1.bn2.running_var"), "{e}");

    // A key the model has no place for.
    let mut extra = values(&keys, 1);
    extra.insert("layer5.0.conv1.weight".into(), (vec![2], vec![0.0, 1.0]));
    let file = tmp.path().join("extra.safetensors");
    write_safetensors(&file, &extra);
    let e = err(&file, &cfg);
    assert!(
        e.contains("layer5.0.conv1.weight") && e.contains("match nothing"),
        "{e}"
    );

    // Not a checkpoint, and not a format this reads.
    let file = tmp.path().join("junk.safetensors");
    std::fs::write(&file, b"not a tensor file").unwrap();
    assert!(err(&file, &cfg).contains("not a PyTorch state_dict"));
    let file = tmp.path().join("junk.pth");
    std::fs::write(&file, b"not a tensor file").unwrap();
    assert!(err(&file, &cfg).contains("not a PyTorch state_dict"));
    let file = tmp.path().join("weights.onnx");
    std::fs::write(&file, b"x").unwrap();
    assert!(err(&file, &cfg).contains(".pth (or .pt) or a .safetensors"));
    assert!(err(&tmp.path().join("absent.pth"), &cfg).contains("is not a file"));
}

#[test]
fn a_run_fine_tunes_from_a_pretrained_file_and_exports_its_model() {
    assert!(
        Path::new(salaug_spec::data::DEBIAN_FASHION_MNIST)
            .join("t10k-images-idx3-ubyte.gz")
            .exists(),
        "this test needs real Fashion-MNIST: apt-get install dataset-fashion-mnist"
    );
    let device = Default::default();
    let tmp = tempfile::tempdir().unwrap();
    // A torchvision-layout ResNet-18 with ImageNet's 1000 classes.
    let pretrained = tmp.path().join("resnet18.safetensors");
    let imagenet = config(Arch::ResNet18, 1000);
    B::seed(&device, 21);
    let source = imagenet.init::<Selected>(&device);
    export(&source, &imagenet, &pretrained).unwrap();

    let run = tmp.path().join("run");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_salaug"))
        .args(["train", "--config"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/ci-fmnist.toml"))
        .arg("--out")
        .arg(&run)
        .args([
            "--set",
            "data.train_limit=32",
            "--set",
            "data.test_limit=16",
        ])
        .args(["--set", "data.rgb=true", "--set", "model.arch=\"resnet18\""])
        .args([
            "--set",
            "model.stem=\"imagenet\"",
            "--set",
            "train.epochs=1",
        ])
        .args([
            "--set",
            "train.batch_size=8",
            "--set",
            "train.strategy=\"sal\"",
        ])
        .args([
            "--set",
            "metrics.held_out_images=0",
            "--set",
            "metrics.consistency_images=8",
        ])
        .arg("--set")
        .arg(format!(
            "model.pretrained={:?}",
            pretrained.to_str().unwrap()
        ))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("model.pretrained: 100 tensors from"), "{err}");
    assert!(err.contains("the head is new"), "{err}");
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let sha = salaug_train::weights::sha256(&pretrained).unwrap();
    assert!(resolved.contains(&sha), "{resolved}");
    assert!(
        resolved.contains("0.485"),
        "ImageNet normalisation: {resolved}"
    );

    // The trained model, exported, is the run's model in torchvision's keys.
    let exported = tmp.path().join("trained.safetensors");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_salaug"))
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&exported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, _, trained) = salaug_train::run::load_run::<Selected>(&run, &device).unwrap();
    let ten = config(Arch::ResNet18, 10);
    let mut back = ten.init::<Selected>(&device);
    load_pretrained(&mut back, &ten, &exported).unwrap();
    assert_eq!(by_path(&back), by_path(&trained.model));
    // Fine-tuning moved the weights it started from.
    assert_ne!(
        by_path(&back)["conv1.weight"],
        by_path(&source)["conv1.weight"]
    );
}

/// torchvision's DenseNet-121 keys and shapes (growth 32, bottleneck 4 × 32, 64 stem
/// channels, blocks [6, 12, 24, 16]); with `legacy`, the `norm.1`/`conv.2` names of
/// torchvision's published files.
fn torchvision_densenet121(classes: usize, legacy: bool) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let bn = |keys: &mut Vec<(String, Vec<usize>)>, name: &str, c: usize| {
        for p in ["weight", "bias", "running_mean", "running_var"] {
            keys.push((format!("{name}.{p}"), vec![c]));
        }
        keys.push((format!("{name}.num_batches_tracked"), vec![]));
    };
    keys.push(("features.conv0.weight".into(), vec![64, 3, 7, 7]));
    bn(&mut keys, "features.norm0", 64);
    let mut c = 64;
    for (b, n) in [6, 12, 24, 16].into_iter().enumerate() {
        for l in 0..n {
            let p = format!("features.denseblock{}.denselayer{}", b + 1, l + 1);
            let (n1, c1, n2, c2) = if legacy {
                ("norm.1", "conv.1", "norm.2", "conv.2")
            } else {
                ("norm1", "conv1", "norm2", "conv2")
            };
            bn(&mut keys, &format!("{p}.{n1}"), c);
            keys.push((format!("{p}.{c1}.weight"), vec![128, c, 1, 1]));
            bn(&mut keys, &format!("{p}.{n2}"), 128);
            keys.push((format!("{p}.{c2}.weight"), vec![32, 128, 3, 3]));
            c += 32;
        }
        if b < 3 {
            let p = format!("features.transition{}", b + 1);
            bn(&mut keys, &format!("{p}.norm"), c);
            keys.push((format!("{p}.conv.weight"), vec![c / 2, c, 1, 1]));
            c /= 2;
        }
    }
    bn(&mut keys, "features.norm5", c);
    keys.push(("classifier.weight".into(), vec![classes, c]));
    keys.push(("classifier.bias".into(), vec![classes]));
    keys
}

/// torchvision's DenseNet key → salaug's path, written out by hand.
fn salaug_dense_path(key: &str) -> String {
    let key = key
        .replace(".norm.1.", ".norm1.")
        .replace(".norm.2.", ".norm2.")
        .replace(".conv.1.", ".conv1.")
        .replace(".conv.2.", ".conv2.");
    let mut parts: Vec<String> = key.split('.').map(String::from).collect();
    if parts[0] == "features" {
        parts.remove(0);
    }
    if let Some(b) = parts[0].strip_prefix("denseblock") {
        let b: usize = b.parse().unwrap();
        let l: usize = parts[1]
            .strip_prefix("denselayer")
            .unwrap()
            .parse()
            .unwrap();
        parts.splice(
            0..2,
            [
                "blocks".to_string(),
                (b - 1).to_string(),
                (l - 1).to_string(),
            ],
        );
    } else if let Some(t) = parts[0].strip_prefix("transition") {
        let t: usize = t.parse().unwrap();
        parts.splice(0..1, ["transitions".to_string(), (t - 1).to_string()]);
    }
    let last = parts.len() - 1;
    if parts[last - 1].starts_with("norm") {
        parts[last] = match parts[last].as_str() {
            "weight" => "gamma".into(),
            "bias" => "beta".into(),
            other => other.into(),
        };
    }
    parts.join(".")
}

#[test]
fn a_densenet_fixture_loads_with_every_tensor_in_its_place_in_both_key_styles() {
    let device = Default::default();
    let cfg = config(Arch::DenseNet121, 1000);
    for legacy in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("weights.safetensors");
        let keys = torchvision_densenet121(1000, legacy);
        let fixture = values(&keys, 9);
        write_safetensors(&file, &fixture);
        let mut model = cfg.init::<Selected>(&device);
        let loaded = load_pretrained(&mut model, &cfg, &file).unwrap();
        let got = by_path(&model);
        let floats: Vec<_> = keys
            .iter()
            .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
            .collect();
        assert_eq!(loaded.applied, floats.len(), "legacy {legacy}");
        assert_eq!(got.len(), floats.len());
        for (key, shape) in floats {
            let path = salaug_dense_path(key);
            let have = got
                .get(&path)
                .unwrap_or_else(|| panic!("no {path} (for {key})"));
            let want = &fixture[key].1;
            let want = if key == "classifier.weight" {
                transpose(want, shape[0], shape[1])
            } else {
                want.clone()
            };
            assert!(have == &want, "{key} is not at {path}");
        }
    }
    // Export writes torchvision's current keys, and they load back bit for bit.
    B::seed(&device, 3);
    let model = config(Arch::DenseNet121, 10).init::<Selected>(&device);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("out.safetensors");
    export(&model, &config(Arch::DenseNet121, 10), &file).unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let mut want: Vec<String> = torchvision_densenet121(10, false)
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| !k.ends_with("num_batches_tracked"))
        .collect();
    want.sort();
    assert_eq!(names, want);
    let mut back = config(Arch::DenseNet121, 10).init::<Selected>(&device);
    load_pretrained(&mut back, &config(Arch::DenseNet121, 10), &file).unwrap();
    assert_eq!(by_path(&back), by_path(&model));
}

/// torchvision's VGG-16-BN keys and shapes (`features` numbered flat: conv, bn, relu per
/// convolution, a pool after each stage; `classifier.{0,3,6}`).
fn torchvision_vgg16_bn(classes: usize) -> Vec<(String, Vec<usize>)> {
    let mut keys = Vec::new();
    let (mut k, mut cin) = (0, 3);
    for convs in salaug_models::vgg::VGG16_STAGES {
        for &c in convs {
            keys.push((format!("features.{k}.weight"), vec![c, cin, 3, 3]));
            keys.push((format!("features.{k}.bias"), vec![c]));
            for p in ["weight", "bias", "running_mean", "running_var"] {
                keys.push((format!("features.{}.{p}", k + 1), vec![c]));
            }
            keys.push((format!("features.{}.num_batches_tracked", k + 1), vec![]));
            (k, cin) = (k + 3, c);
        }
        k += 1;
    }
    for (i, (o, n)) in [
        (0, (4096, 512 * 49)),
        (3, (4096, 4096)),
        (6, (classes, 4096)),
    ] {
        keys.push((format!("classifier.{i}.weight"), vec![o, n]));
        keys.push((format!("classifier.{i}.bias"), vec![o]));
    }
    keys
}

#[test]
fn a_vgg_fixture_loads_with_every_tensor_in_its_place() {
    let device = Default::default();
    let cfg = config(Arch::Vgg16Bn, 1000);
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("weights.safetensors");
    let keys = torchvision_vgg16_bn(1000);
    let fixture = values(&keys, 5);
    write_safetensors(&file, &fixture);
    let mut model = cfg.init::<Selected>(&device);
    load_pretrained(&mut model, &cfg, &file).unwrap();
    let got = by_path(&model);
    // The hand-written map: conv j of stage s is at features.(3·(convs before) + s).
    let mut place = BTreeMap::new();
    let mut k = 0;
    for (s, convs) in salaug_models::vgg::VGG16_STAGES.iter().enumerate() {
        for i in 0..convs.len() {
            for p in ["weight", "bias"] {
                place.insert(
                    format!("features.{k}.{p}"),
                    format!("stages.{s}.{i}.conv.{p}"),
                );
            }
            for (p, q) in [
                ("weight", "gamma"),
                ("bias", "beta"),
                ("running_mean", "running_mean"),
                ("running_var", "running_var"),
            ] {
                place.insert(
                    format!("features.{}.{p}", k + 1),
                    format!("stages.{s}.{i}.bn.{q}"),
                );
            }
            k += 3;
        }
        k += 1;
    }
    for (i, fc) in [(0, 1), (3, 2), (6, 3)] {
        for p in ["weight", "bias"] {
            place.insert(format!("classifier.{i}.{p}"), format!("head.fc{fc}.{p}"));
        }
    }
    assert_eq!(got.len(), place.len());
    for (key, shape) in keys
        .iter()
        .filter(|(k, _)| !k.ends_with("num_batches_tracked"))
    {
        let path = &place[key];
        let want = &fixture[key].1;
        let want = if key.starts_with("classifier.") && key.ends_with("weight") {
            transpose(want, shape[0], shape[1])
        } else {
            want.clone()
        };
        assert!(got[path] == want, "{key} is not at {path}");
    }
}
