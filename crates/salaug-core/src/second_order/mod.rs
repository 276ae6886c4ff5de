//! The nested-autodiff plumbing: the only module of salaug that names `Autodiff<B>`.
//!
//! Training on a saliency loss needs the gradient (with respect to the weights) of a function
//! of the input gradient: a second-order derivative. With burn 0.21 this works by nesting
//! autodiff backends. The model lives at level `B` (an autodiff backend during training).
//! [`lift`] wraps it one level up, in `Autodiff<B>`, **sharing the same `B`-level parameter
//! leaves**. The images become leaves of the outer level; one outer forward and backward then
//! gives the input gradient as a `B`-level tensor whose graph still reaches the parameters, so a
//! loss built from it can be back-propagated at level `B` like any other.
//!
//! Facts this module relies on (all checked against finite differences, see `tests/`):
//! - parameters are marked untracked at the outer level, so the outer backward computes input
//!   gradients only (the inner graph through them is kept);
//! - `detach()` detaches one level only;
//! - lazily initialised parameters cloned before their first use initialise independently
//!   (the "lazy clone trap"): [`lift`] materialises them in place first;
//! - BatchNorm running statistics updated by the lifted copy are discarded (burn creates a new
//!   running state in `from_inner`). [`input_gradient`] therefore writes them back into the
//!   model when asked ([`BatchNormMode::BatchUpdating`]), so that a training step needs one
//!   forward only (the lifted one gives the logits and features at level `B` as well).
//!
//! Methods that change ReLU's backward rule (guided backpropagation, DeconvNet:
//! [`ruled_input_gradient`]) or need the gradient at an inner feature (Grad-CAM:
//! [`layer_gradient`]) reach into the model's forward through [`hooks`], which act on the outer
//! level only.

use burn::backend::Autodiff;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use burn::module::{AutodiffModule, Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::{backend::Backend, Int, Tensor, TensorPrimitive};

use crate::classifier::Classifier;
use crate::error::{check_shape, Error, Result};

pub mod hooks;

pub use hooks::{max_dim, relu, tap, uses_batch_stats, ReluRule};
pub(crate) use hooks::{with_pattern, SharedPattern};

/// The score a map explains: its input gradient is the map.
#[derive(Debug, Clone)]
pub enum Target<B: Backend> {
    /// Each image's logit of one class, `[batch]` class indices (the paper's eq. 1).
    Class(Tensor<B, 1, Int>),
    /// `Σ_k w[i, k] · logit[i, k]` for soft labels `[batch, classes]`: a MixUp or CutMix image
    /// explains the mixture of its sources' labels. One-hot rows give exactly [`Target::Class`].
    Weights(Tensor<B, 2>),
}

/// The statistics BatchNorm uses in an explaining forward, and whether that forward moves
/// the model's running statistics.
///
/// [`Batch`](Self::Batch) and [`BatchUpdating`](Self::BatchUpdating) work for any model,
/// burn's own `nn::BatchNorm` included: the explaining forward runs on an autodiff backend,
/// where a BatchNorm is in training mode. [`Running`](Self::Running) needs the model's
/// BatchNorm to ask [`uses_batch_stats`] which mode to take
/// (`salaug-models`' BatchNorm does; burn's `nn::BatchNorm` decides by the backend alone, so a
/// model built on it fails with [`Error::Unsupported`] instead of giving training-mode maps).
/// The check is that at least one BatchNorm asked: a model that mixes both kinds is not
/// caught.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BatchNormMode {
    /// Training mode: each batch normalised by its own statistics; the model's running
    /// statistics are left alone.
    #[default]
    Batch,
    /// Training mode, and the running statistics move as one training forward of the model at
    /// its own level would move them: a training step's one forward.
    BatchUpdating,
    /// Evaluation mode: every image normalised by the running statistics, which are left
    /// alone; maps of the model as it predicts.
    Running,
}

/// What an explaining pass is asked: the target score, the feature taps to return from the
/// same forward pass, and the BatchNorm mode of that forward.
#[derive(Debug, Clone)]
pub struct Explain<'a, B: Backend> {
    /// The score whose input gradient is the map.
    pub target: Target<B>,
    /// Features to return (by the model's tap names), in order.
    pub taps: &'a [String],
    /// Which statistics BatchNorm uses, and whether the forward moves the running ones.
    pub batch_norm: BatchNormMode,
}

impl<'a, B: Backend> Explain<'a, B> {
    /// Explain each image's class `classes[i]` (`[batch]`); no taps, [`BatchNormMode::Batch`].
    pub fn class(classes: Tensor<B, 1, Int>) -> Self {
        Self::target(Target::Class(classes))
    }

    /// Explain each image's soft label `weights[i]` (`[batch, classes]`).
    pub fn weights(weights: Tensor<B, 2>) -> Self {
        Self::target(Target::Weights(weights))
    }

    fn target(target: Target<B>) -> Self {
        Self {
            target,
            taps: &[],
            batch_norm: BatchNormMode::default(),
        }
    }

    /// Also return these features of the same forward pass.
    pub fn with_taps(mut self, taps: &'a [String]) -> Self {
        self.taps = taps;
        self
    }

    /// Run the forward pass in this BatchNorm mode.
    pub fn with_batch_norm(mut self, mode: BatchNormMode) -> Self {
        self.batch_norm = mode;
        self
    }

    /// The same request without the taps and without moving the running statistics: for a
    /// method's further passes over the same images (the statistics move once per step).
    pub fn again(&self) -> Self {
        Self {
            target: self.target.clone(),
            taps: &[],
            batch_norm: match self.batch_norm {
                BatchNormMode::BatchUpdating => BatchNormMode::Batch,
                mode => mode,
            },
        }
    }
}

/// The backend one autodiff level above `B`.
pub type Outer<B> = Autodiff<B>;

/// A backend that `Autodiff` makes an autodiff backend in this build: every backend, or, when
/// burn's `distributed` feature is on (salaug-core's `distributed`, the `cuda-ddp` build), the
/// backends that implement burn's `DistributedBackend` (CUDA; not Flex or NdArray). The
/// functions that run a model one level up ([`Outer`]) ask for it instead of `Backend`, so one
/// source serves both builds.
#[cfg(not(feature = "distributed"))]
pub trait AutodiffBase: Backend {}
#[cfg(not(feature = "distributed"))]
impl<B: Backend> AutodiffBase for B {}

/// A backend that `Autodiff` makes an autodiff backend in this build: every backend, or, when
/// burn's `distributed` feature is on (salaug-core's `distributed`, the `cuda-ddp` build), the
/// backends that implement burn's `DistributedBackend` (CUDA; not Flex or NdArray). The
/// functions that run a model one level up ([`Outer`]) ask for it instead of `Backend`, so one
/// source serves both builds.
#[cfg(feature = "distributed")]
pub trait AutodiffBase: burn::tensor::backend::distributed::DistributedBackend {}
#[cfg(feature = "distributed")]
impl<B: burn::tensor::backend::distributed::DistributedBackend> AutodiffBase for B {}

/// A classifier that can run one autodiff level up while sharing its parameters.
///
/// For a model `Net<B>` written generically over the backend, implement it with
/// [`impl_lift!`](crate::impl_lift): `salaug_core::impl_lift!(Net);`.
pub trait Lift<B: AutodiffBase>: Classifier<B> + Clone {
    /// The same model type on `Autodiff<B>`.
    type Lifted: Classifier<Outer<B>> + AutodiffModule<Outer<B>, InnerModule = Self>;
}

/// Implements [`Lift`] for a model type `Name<B>` that implements [`Classifier`] for every backend.
#[macro_export]
macro_rules! impl_lift {
    ($name:ident) => {
        impl<B: $crate::second_order::AutodiffBase> $crate::second_order::Lift<B> for $name<B> {
            type Lifted = $name<$crate::second_order::Outer<B>>;
        }
    };
}

/// Initialises every lazily initialised parameter of `model` in place.
///
/// Clones taken afterwards share the parameter values (and, on an autodiff backend, the leaves).
pub fn materialize<B: Backend, M: Module<B>>(model: &M) {
    struct Touch;
    impl<B: Backend> ModuleVisitor<B> for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let _ = param.val();
        }
    }
    model.visit(&mut Touch);
}

/// Marks every parameter of an outer-level module as untracked at the outer level only.
struct UntrackOuter;

impl<B: Backend> ModuleMapper<Outer<B>> for UntrackOuter {
    fn map_float<const D: usize>(
        &mut self,
        param: Param<Tensor<Outer<B>, D>>,
    ) -> Param<Tensor<Outer<B>, D>> {
        param.map(|tensor| tensor.set_require_grad(false))
    }
}

/// Lifts `model` one autodiff level up, sharing its `B`-level parameter leaves.
///
/// Parameters are constants at the outer level: an outer backward computes gradients with
/// respect to the outer leaves you create (the images) only, and every result keeps its
/// `B`-level graph back to the parameters.
pub fn lift<B: AutodiffBase, M: Lift<B>>(model: &M) -> M::Lifted {
    materialize(model);
    M::Lifted::from_inner(model.clone()).map(&mut UntrackOuter)
}

/// What one outer forward and backward pass gives, all at level `B`.
#[derive(Debug, Clone)]
pub struct InputGradient<B: Backend> {
    /// Logits of the forward pass, `[batch, classes]`; tracked at level `B`.
    pub logits: Tensor<B, 2>,
    /// The features requested as taps, in order; tracked at level `B`.
    pub features: Vec<Tensor<B, 4>>,
    /// d score / d images, `[batch, channels, height, width]`; its `B`-level graph reaches the
    /// parameters, so losses built from it are differentiable with respect to them.
    pub gradient: Tensor<B, 4>,
}

/// One forward and backward pass one level up: the gradient of the target score with respect
/// to the input images, plus the logits and requested features of the same forward.
///
/// The score is [`Target::Class`]'s sum over the batch of each image's target logit (the
/// paper's eq. 1 for every image at once), or [`Target::Weights`]'
/// `Σ_i Σ_k w[i, k] · logit[i, k]`. With batch-coupled layers (BatchNorm in training mode) the
/// gradient of the sum also carries the small cross-image terms, exactly as the same
/// computation in PyTorch does.
///
/// With [`BatchNormMode::BatchUpdating`] the BatchNorm running statistics that the lifted
/// forward updated are written back into `model`, exactly as a forward of `model` itself at
/// level `B` on `images` would update them; the returned logits and features are tracked at
/// level `B`, so a training step takes `L_class`, `L_inv` and `L_sal` from this one forward.
///
/// `images` may be constants or tracked tensors of level `B`; the outer level treats them as
/// leaves. Fails if the target does not hold one class (or one row of weights) per image, or a
/// tap is unknown.
pub fn input_gradient<B: AutodiffBase, M: Lift<B>>(
    model: &M,
    images: Tensor<B, 4>,
    explain: &Explain<'_, B>,
) -> Result<InputGradient<B>> {
    explaining_pass(model, images, explain, None, None).map(Pass::input)
}

/// [`input_gradient`] with ReLU's backward rule replaced by `rule` (guided backpropagation or
/// DeconvNet) in every ReLU the model computes with [`hooks::relu`]; the forward pass, the
/// logits, the features and the level-`B` graph are the model's own. Fails if the forward
/// computed no ReLU through the hook (the map would silently be the plain gradient).
pub fn ruled_input_gradient<B: AutodiffBase, M: Lift<B>>(
    model: &M,
    images: Tensor<B, 4>,
    explain: &Explain<'_, B>,
    rule: ReluRule,
) -> Result<InputGradient<B>> {
    explaining_pass(model, images, explain, Some(rule), None).map(Pass::input)
}

/// What one outer pass gives at a named feature, all at level `B`.
#[derive(Debug, Clone)]
pub struct LayerGradient<B: Backend> {
    /// Logits of the forward pass, `[batch, classes]`; tracked at level `B`.
    pub logits: Tensor<B, 2>,
    /// The features requested as taps, in order; tracked at level `B`.
    pub features: Vec<Tensor<B, 4>>,
    /// The feature itself, `[batch, channels, h, w]`; tracked at level `B`.
    pub activation: Tensor<B, 4>,
    /// d score / d feature, same shape; its level-`B` graph reaches the parameters after the
    /// feature.
    pub gradient: Tensor<B, 4>,
}

/// The gradient of the target score at the model's feature `layer` (Grad-CAM's), with the
/// feature, the logits and the requested features of the same forward; scores as in
/// [`input_gradient`].
///
/// The model must pass that feature through [`hooks::tap`]: the outer backward starts at the
/// score and stops at the feature, so it costs only the layers above it. Fails if `layer` is
/// not one of the model's features or the forward did not tap it exactly once.
pub fn layer_gradient<B: AutodiffBase, M: Lift<B>>(
    model: &M,
    images: Tensor<B, 4>,
    explain: &Explain<'_, B>,
    layer: &str,
) -> Result<LayerGradient<B>> {
    let pass = explaining_pass(model, images, explain, None, Some(layer))?;
    let (activation, gradient) = pass.at;
    Ok(LayerGradient {
        logits: pass.logits,
        features: pass.features,
        activation,
        gradient,
    })
}

/// The results of [`explaining_pass`], at level `B`: the logits and features, and the value
/// and gradient of the outer leaf (the images, or the layer when one was asked for).
struct Pass<B: Backend> {
    logits: Tensor<B, 2>,
    features: Vec<Tensor<B, 4>>,
    at: (Tensor<B, 4>, Tensor<B, 4>),
}

impl<B: Backend> Pass<B> {
    /// The input gradient of a pass without a layer.
    fn input(self) -> InputGradient<B> {
        let (_, gradient) = self.at;
        InputGradient {
            logits: self.logits,
            features: self.features,
            gradient,
        }
    }
}

/// The one outer pass behind [`input_gradient`], [`ruled_input_gradient`] and
/// [`layer_gradient`]: lift, forward with the hooks, backward from the target score, write
/// back the running statistics when asked.
fn explaining_pass<B: AutodiffBase, M: Lift<B>>(
    model: &M,
    images: Tensor<B, 4>,
    explain: &Explain<'_, B>,
    rule: Option<ReluRule>,
    layer: Option<&str>,
) -> Result<Pass<B>> {
    if let Some(name) = layer {
        if !model.feature_names().iter().any(|f| f == name) {
            return Err(Error::UnknownTap {
                name: name.to_string(),
                available: model.feature_names(),
            });
        }
    }
    let lifted = lift(model);
    let leaf = Tensor::<Outer<B>, 4>::from_inner(images);
    // At a layer, the outer backward stops there: the input need not be tracked.
    let leaf = if layer.is_none() {
        leaf.require_grad()
    } else {
        leaf
    };
    let captured: hooks::Captured<B> = Default::default();
    let ruled = Rc::new(Cell::new(0));
    let asked = Rc::new(Cell::new(0));
    let running = explain.batch_norm == BatchNormMode::Running;
    let (logits, features) = hooks::with_hooks::<B, _>(
        rule.map(|rule| (rule, ruled.clone())),
        layer.map(|name| (name, captured.clone())),
        running.then(|| asked.clone()),
        || lifted.logits_and_features(leaf.clone(), explain.taps),
    )?;
    if let (Some(rule), 0) = (rule, ruled.get()) {
        return Err(Error::Unsupported {
            what: format!(
                "the {rule:?} ReLU backward rule: the forward pass computed no ReLU through \
                 salaug_core::relu; a model supports ReLU rules by writing its ReLUs with it"
            ),
        });
    }
    if running && asked.get() == 0 && has_running_state(model) {
        return Err(Error::Unsupported {
            what: "BatchNormMode::Running: the model keeps running statistics, but no \
                   BatchNorm of its forward pass asked salaug_core::uses_batch_stats (burn's \
                   nn::BatchNorm decides by the backend alone); a model supports evaluation-mode \
                   maps by letting its BatchNorm ask it, as salaug-models' BatchNorm does"
                .to_string(),
        });
    }
    let tapped = match (layer, captured.borrow_mut().take()) {
        (None, _) => None,
        (Some(_), Some(Ok(tapped))) => Some(tapped),
        (Some(name), found) => {
            let how = if found.is_some() {
                "more than once"
            } else {
                "never"
            };
            return Err(Error::Unsupported {
                what: format!(
                    "the gradient at feature '{name}': the forward pass passed it through \
                     salaug_core::tap {how}; a model supports gradients at a feature by \
                     passing it through salaug_core::tap exactly once"
                ),
            });
        }
    };
    let grads = target_score(&explain.target, logits.clone())?.backward();
    // The leaf's gradient; zeros where the score does not depend on it.
    let at = tapped.unwrap_or(leaf);
    let gradient = at
        .grad(&grads)
        .unwrap_or_else(|| at.clone().inner().detach().zeros_like());
    if explain.batch_norm == BatchNormMode::BatchUpdating {
        commit_running_state(model, &lifted);
    }
    Ok(Pass {
        logits: logits.inner(),
        features: features.into_iter().map(Tensor::inner).collect(),
        at: (at.inner(), gradient),
    })
}

/// The target score of `logits` at the outer level, its classes or weights constant at every
/// level.
fn target_score<B: AutodiffBase>(
    target: &Target<B>,
    logits: Tensor<Outer<B>, 2>,
) -> Result<Tensor<Outer<B>, 1>> {
    let lifted = match target {
        Target::Class(classes) => Target::Class(Tensor::from_inner(classes.clone())),
        Target::Weights(weights) => Target::Weights(Tensor::from_inner(weights.clone().detach())),
    };
    lifted.score(logits)
}

impl<B: Backend> Target<B> {
    /// The score of `logits` `[batch, classes]`: the sum of each image's target logit, or
    /// `Σ_i Σ_k w[i, k] · logit[i, k]` (the weights constant). Fails if the target does not
    /// hold one class (or one row of weights) per image.
    pub fn score(&self, logits: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
        let [batch, _] = logits.dims();
        match self {
            Target::Class(classes) => {
                check_shape(
                    "targets (one class index per image)",
                    &[batch],
                    &classes.dims(),
                )?;
                Ok(logits.gather(1, classes.clone().reshape([batch, 1])).sum())
            }
            Target::Weights(weights) => {
                check_shape(
                    "score weights (one row of class weights per image)",
                    &logits.dims(),
                    &weights.dims(),
                )?;
                Ok((logits * weights.clone().detach()).sum())
            }
        }
    }
}

/// The ids of `model`'s non-trainable floats (BatchNorm's running statistics).
fn untrained<B: Backend, M: Module<B>>(model: &M) -> HashSet<ParamId> {
    struct Untrained(HashSet<ParamId>);
    impl<B: Backend> ModuleVisitor<B> for Untrained {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if !param.is_require_grad() {
                self.0.insert(param.id);
            }
        }
    }
    let mut found = Untrained(HashSet::new());
    model.visit(&mut found);
    found.0
}

/// Whether `model` keeps floats that are not trained (BatchNorm's running statistics): those
/// that do not require a gradient once the model is lifted as it is (burn reinstates each
/// parameter's own flag there, on any `B`; running statistics come up untracked).
fn has_running_state<B: AutodiffBase, M: Lift<B>>(model: &M) -> bool {
    !untrained(&M::Lifted::from_inner(model.clone())).is_empty()
}

/// The values of `model`'s non-trainable floats (BatchNorm's running statistics), detached.
pub(crate) fn running_state<B: Backend, M: Module<B>>(
    model: &M,
) -> HashMap<ParamId, TensorPrimitive<B>> {
    struct Values<B: Backend>(HashMap<ParamId, TensorPrimitive<B>>);
    impl<B: Backend> ModuleVisitor<B> for Values<B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if !param.is_require_grad() {
                self.0
                    .insert(param.id, param.val().detach().into_primitive());
            }
        }
    }
    let mut values = Values(HashMap::new());
    model.visit(&mut values);
    values.0
}

/// Writes `values` (by parameter id) into `model`'s non-trainable floats.
///
/// burn keeps running statistics in shared cells (`RunningState`): mapping a clone of `model`
/// writes into the cells that `model` and its other clones share, while the clone's
/// parameters are dropped. Trainable parameters (those that require a gradient) are left
/// alone.
pub(crate) fn set_running_state<B: Backend, M: Module<B>>(
    model: &M,
    values: HashMap<ParamId, TensorPrimitive<B>>,
) {
    struct Write<B: Backend>(HashMap<ParamId, TensorPrimitive<B>>);
    impl<B: Backend> ModuleMapper<B> for Write<B> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            match (param.is_require_grad(), self.0.remove(&param.id)) {
                (false, Some(value)) => param.map(|_| Tensor::from_primitive(value)),
                _ => param,
            }
        }
    }
    if values.is_empty() {
        return;
    }
    let _ = model.clone().map(&mut Write(values));
}

/// Writes the values of `lifted`'s non-trainable floats (BatchNorm's running statistics) into
/// `model`'s, detached at every level.
fn commit_running_state<B: AutodiffBase, M: Lift<B>>(model: &M, lifted: &M::Lifted) {
    let untrained = untrained(model);
    if untrained.is_empty() {
        return;
    }
    let mut values = running_state(&lifted.valid());
    values.retain(|id, _| untrained.contains(id));
    set_running_state(model, values);
}
