//! torchvision weights in and out. `model.pretrained` loads a torchvision `state_dict` (a
//! `.pth` file, or a `.safetensors` file with the same keys) into a fresh run's model; `salaug
//! export` writes a model in torchvision's key layout as `.safetensors`, which
//! `torchvision.models.<arch>(num_classes=C).load_state_dict(safetensors.torch.load_file(f))`
//! takes.
//!
//! burn-store reads and writes the files and adapts the layers (PyTorch's `Linear` weight is
//! `[out, in]`, salaug's `[in, out]`; BatchNorm's `weight`/`bias` are salaug's `gamma`/`beta`);
//! this module holds each architecture's key map between the two, and the checks: every
//! tensor of the model must come from the file (a missing key or a wrong shape is an error
//! that names it), and a key of the file may go unused only if it is BatchNorm's
//! `num_batches_tracked`, which salaug does not keep.

use std::path::Path;

use anyhow::{bail, Context, Result};
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter,
    PytorchStore, SafetensorsStore,
};
use salaug_models::{Arch, Model, ModelConfig, Stem};
use sha2::{Digest, Sha256};

/// The ImageNet normalisation torchvision's weights were trained with (RGB, images in [0, 1]).
pub const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// See [`IMAGENET_MEAN`].
pub const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// One architecture's key map: regex rewrites of torchvision's keys into salaug's module
/// paths (applied in order when loading), their reverse (when exporting), and the prefix of
/// the classifier head.
#[derive(Debug, Clone)]
pub struct KeyMap {
    /// `(pattern on torchvision's keys, replacement)`.
    pub load: Vec<(String, String)>,
    /// `(pattern on salaug's paths, replacement)`.
    pub save: Vec<(String, String)>,
    /// The head's parameters' prefix (the same on both sides), e.g. `fc.`.
    pub head: &'static str,
}

/// The key map of `config`'s architecture, or an error saying what has none.
pub fn key_map(config: &ModelConfig) -> Result<KeyMap> {
    let family = match config.arch {
        Arch::ResNet18 | Arch::ResNet50 => "resnet",
        Arch::DenseNet121 | Arch::DenseNet169 => "densenet",
        Arch::Vgg16Bn => "vgg16",
        Arch::Vgg19Bn => "vgg19",
        other => bail!(
            "model.pretrained: no torchvision key map for {} (the small CNN is salaug's own)",
            other.name()
        ),
    };
    if config.stem != Stem::ImageNet {
        bail!("model.pretrained: torchvision's weights are for model.stem = \"imagenet\"");
    }
    if config.width != 1.0 {
        bail!(
            "model.pretrained: torchvision's weights are for model.width = 1.0, not {}",
            config.width
        );
    }
    if config.in_channels != 3 {
        bail!(
            "model.pretrained: torchvision's weights take 3 input channels, the data give {} \
             (set data.rgb = true)",
            config.in_channels
        );
    }
    match family {
        "densenet" => return Ok(densenet_key_map()),
        "vgg16" => return Ok(vgg_key_map(&salaug_models::vgg::VGG16_STAGES)),
        "vgg19" => return Ok(vgg_key_map(&salaug_models::vgg::VGG19_STAGES)),
        _ => {}
    }
    // torchvision: layer1..layer4, downsample.0 (conv) / downsample.1 (bn); salaug:
    // layers.0..3, downsample.conv / downsample.bn.
    let mut load: Vec<(String, String)> = (0..4)
        .map(|s| (format!(r"^layer{}\.", s + 1), format!("layers.{s}.")))
        .collect();
    load.push((r"\.downsample\.0\.".into(), ".downsample.conv.".into()));
    load.push((r"\.downsample\.1\.".into(), ".downsample.bn.".into()));
    let mut save: Vec<(String, String)> = (0..4)
        .map(|s| (format!(r"^layers\.{s}\."), format!("layer{}.", s + 1)))
        .collect();
    save.push((r"\.downsample\.conv\.".into(), ".downsample.0.".into()));
    save.push((r"\.downsample\.bn\.".into(), ".downsample.1.".into()));
    Ok(KeyMap {
        load,
        save,
        head: "fc.",
    })
}

/// DenseNet's map. torchvision: `features.{conv0,norm0,norm5}`,
/// `features.denseblock{b}.denselayer{l}.{norm1,conv1,norm2,conv2}` and
/// `features.transition{t}.{norm,conv}` (1-based), `classifier`; its published files still
/// have the older `norm.1`/`conv.2` names, which torchvision's own loader rewrites the same
/// way. salaug: `{conv0,norm0,norm5}`, `blocks.{b}.{l}`, `transitions.{t}` (0-based),
/// `classifier`.
fn densenet_key_map() -> KeyMap {
    // More layers per block than any DenseNet of the zoo has (DenseNet-169: 32).
    const LAYERS: usize = 64;
    let mut load: Vec<(String, String)> =
        vec![(r"\.(norm|relu|conv)\.([12])\.".into(), ".${1}${2}.".into())];
    for b in 1..=4 {
        load.push((
            format!(r"^features\.denseblock{b}\."),
            format!("blocks.{}.", b - 1),
        ));
    }
    for l in 1..=LAYERS {
        load.push((
            format!(r"^(blocks\.\d+)\.denselayer{l}\."),
            format!("${{1}}.{}.", l - 1),
        ));
    }
    for t in 1..=3 {
        load.push((
            format!(r"^features\.transition{t}\."),
            format!("transitions.{}.", t - 1),
        ));
    }
    load.push((r"^features\.".into(), String::new()));
    let mut save: Vec<(String, String)> = Vec::new();
    for b in 0..4 {
        for l in 0..LAYERS {
            save.push((
                format!(r"^blocks\.{b}\.{l}\."),
                format!("features.denseblock{}.denselayer{}.", b + 1, l + 1),
            ));
        }
    }
    for t in 0..3 {
        save.push((
            format!(r"^transitions\.{t}\."),
            format!("features.transition{}.", t + 1),
        ));
    }
    save.push((r"^(conv0|norm0|norm5)\.".into(), "features.${1}.".into()));
    KeyMap {
        load,
        save,
        head: "classifier.",
    }
}

/// VGG-BN's map. torchvision numbers `features` flat: each convolution, its BatchNorm and ReLU
/// take three indices and each stage ends in a max pool; its classifier is `classifier.{0,3,6}`
/// (Linear, ReLU, Dropout between). salaug: `stages.{s}.{i}.{conv,bn}` and `head.fc{1,2,3}`.
fn vgg_key_map(stages: &[&[usize]]) -> KeyMap {
    let (mut load, mut save) = (Vec::new(), Vec::new());
    let mut k = 0;
    for (s, convs) in stages.iter().enumerate() {
        for i in 0..convs.len() {
            for (offset, name) in [(0, "conv"), (1, "bn")] {
                load.push((
                    format!(r"^features\.{}\.", k + offset),
                    format!("stages.{s}.{i}.{name}."),
                ));
                save.push((
                    format!(r"^stages\.{s}\.{i}\.{name}\."),
                    format!("features.{}.", k + offset),
                ));
            }
            k += 3;
        }
        k += 1; // the stage's max pool
    }
    for (index, fc) in [(0, 1), (3, 2), (6, 3)] {
        load.push((format!(r"^classifier\.{index}\."), format!("head.fc{fc}.")));
        save.push((format!(r"^head\.fc{fc}\."), format!("classifier.{index}.")));
    }
    KeyMap {
        load,
        save,
        head: "head.fc3.",
    }
}

/// What [`load_pretrained`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// Tensors set from the file.
    pub applied: usize,
    /// `Some(n)` when the file's head has `n` classes, not the model's: the head keeps its
    /// seeded initialisation.
    pub head_replaced: Option<usize>,
}

/// A file's SHA-256, in hex (the resolved config records it).
pub fn sha256(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hash = Sha256::new();
    std::io::copy(&mut file, &mut hash).with_context(|| format!("reading {}", path.display()))?;
    Ok(format!("{:x}", hash.finalize()))
}

/// The stores of the two formats, as one.
enum Store {
    Pth(Box<PytorchStore>),
    Safetensors(Box<SafetensorsStore>),
}

impl Store {
    fn open(path: &Path, map: &KeyMap, keep_head: bool) -> Result<Store> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        Ok(match ext {
            "pth" | "pt" => {
                let mut s = PytorchStore::from_file(path).map_indices_contiguous(false);
                for (from, to) in &map.load {
                    s = s.with_key_remapping(from, to.clone());
                }
                if !keep_head {
                    s = s.with_predicate(map.not_head());
                }
                Store::Pth(Box::new(s))
            }
            "safetensors" => {
                let mut s = SafetensorsStore::from_file(path)
                    .with_from_adapter(PyTorchToBurnAdapter)
                    .skip_enum_variants(true);
                for (from, to) in &map.load {
                    s = s.with_key_remapping(from, to.clone());
                }
                if !keep_head {
                    s = s.with_predicate(map.not_head());
                }
                Store::Safetensors(Box::new(s))
            }
            _ => bail!(
                "{}: model.pretrained takes a .pth (or .pt) or a .safetensors file",
                path.display()
            ),
        })
    }

    /// Every key of the file (after the key map) with its shape and dtype.
    fn tensors(&mut self) -> Result<Vec<(String, Vec<usize>, DType)>, String> {
        fn list<S: ModuleStore>(s: &mut S) -> Result<Vec<(String, Vec<usize>, DType)>, String> {
            let all = s.get_all_snapshots().map_err(|e| e.to_string())?;
            Ok(all
                .iter()
                .map(|(k, t)| (k.clone(), t.shape.to_vec(), t.dtype))
                .collect())
        }
        match self {
            Store::Pth(s) => list(s.as_mut()),
            Store::Safetensors(s) => list(s.as_mut()),
        }
    }

    fn apply<B: Backend>(&mut self, model: &mut Model<B>) -> Result<ApplyResult, String> {
        match self {
            Store::Pth(s) => model.load_from(s.as_mut()).map_err(|e| e.to_string()),
            Store::Safetensors(s) => model.load_from(s.as_mut()).map_err(|e| e.to_string()),
        }
    }
}

/// burn-store's predicates (plain functions): every tensor but the classifier head's.
fn not_fc(path: &str, _container: &str) -> bool {
    !path.starts_with("fc.")
}

/// See [`not_fc`].
fn not_classifier(path: &str, _container: &str) -> bool {
    !path.starts_with("classifier.")
}

/// See [`not_fc`].
fn not_vgg_head(path: &str, _container: &str) -> bool {
    !path.starts_with("head.fc3.")
}

impl KeyMap {
    /// The predicate that leaves the head out.
    fn not_head(&self) -> fn(&str, &str) -> bool {
        match self.head {
            "fc." => not_fc,
            "head.fc3." => not_vgg_head,
            _ => not_classifier,
        }
    }
}

/// Loads the torchvision weights of `path` into `model` (built from `config`). The head is
/// loaded when the file's has the model's classes, else kept as initialised.
pub fn load_pretrained<B: Backend>(
    model: &mut Model<B>,
    config: &ModelConfig,
    path: &Path,
) -> Result<Loaded> {
    let map = key_map(config)?;
    let not_a_checkpoint = |e: String| {
        anyhow::anyhow!(
            "{}: not a PyTorch state_dict this can read ({e})",
            path.display()
        )
    };
    if !path.is_file() {
        bail!("model.pretrained: {} is not a file", path.display());
    }
    let tensors = Store::open(path, &map, true)?
        .tensors()
        .map_err(not_a_checkpoint)?;
    if tensors.is_empty() {
        bail!("{}: holds no tensors", path.display());
    }
    if let Some((key, _, dtype)) = tensors
        .iter()
        .find(|(k, _, d)| *d != DType::F32 && !k.ends_with("num_batches_tracked"))
    {
        bail!(
            "{}: {key} is stored as {dtype:?}; salaug loads float32 weights (save them with \
             model.float())",
            path.display()
        );
    }
    let head_weight = format!("{}weight", map.head);
    let file_classes = tensors
        .iter()
        .find(|(k, _, _)| *k == head_weight)
        .map(|(_, shape, _)| shape[0]);
    let head_replaced = match file_classes {
        Some(n) if n == config.num_classes => None,
        Some(n) => Some(n),
        None => bail!(
            "{}: no {head_weight} (is it a torchvision state_dict?)",
            path.display()
        ),
    };
    let result = Store::open(path, &map, head_replaced.is_none())?
        .apply(model)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if !result.errors.is_empty() {
        let said: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        bail!("{}: {}", path.display(), said.join("; "));
    }
    if !result.missing.is_empty() {
        let keys: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        bail!(
            "{}: the model's {} not in the file (after the key map)",
            path.display(),
            keys.join(", ")
        );
    }
    // BatchNorm's weight/bias load into gamma/beta but stay listed as unused (burn-store
    // marks the model's path, not the file's), and num_batches_tracked has no place here.
    let applied = |k: &str| result.applied.iter().any(|a| a == k);
    let unexpected: Vec<&String> = result
        .unused
        .iter()
        .filter(|k| !k.ends_with(".num_batches_tracked"))
        .filter(|k| {
            let alias = k
                .strip_suffix(".weight")
                .map(|p| format!("{p}.gamma"))
                .or_else(|| k.strip_suffix(".bias").map(|p| format!("{p}.beta")));
            !alias.is_some_and(|a| applied(&a))
        })
        .filter(|k| head_replaced.is_none() || !k.starts_with(map.head))
        .collect();
    if !unexpected.is_empty() {
        bail!(
            "{}: the file's {} match nothing in the model",
            path.display(),
            unexpected
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Loaded {
        applied: result.applied.len(),
        head_replaced,
    })
}

/// Writes `model` (built from `config`) to `path` as `.safetensors` in torchvision's key
/// layout. An existing file is replaced whole (written aside, then renamed).
pub fn export<B: Backend>(model: &Model<B>, config: &ModelConfig, path: &Path) -> Result<()> {
    let map = key_map(config)?;
    if path.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: salaug export writes .safetensors files",
            path.display()
        );
    }
    let part = path.with_extension("safetensors.part");
    let mut store = SafetensorsStore::from_file(&part)
        .with_to_adapter(BurnToPyTorchAdapter)
        .skip_enum_variants(true)
        .overwrite(true);
    for (from, to) in &map.save {
        store = store.with_key_remapping(from, to.clone());
    }
    model
        .save_into(&mut store)
        .map_err(|e| anyhow::anyhow!("writing {}: {e}", part.display()))?;
    std::fs::rename(&part, path).with_context(|| format!("writing {}", path.display()))
}
