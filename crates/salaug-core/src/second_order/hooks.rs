//! The places where an explaining pass reaches inside a model's forward pass: its ReLUs
//! ([`relu`]), its named features ([`tap`]), its BatchNorms' mode ([`uses_batch_stats`]) and,
//! for the finite-difference path, its max pooling ([`max_dim`]).
//!
//! A model opts in by calling [`relu`] instead of `burn::tensor::activation::relu`, by
//! passing each named feature through [`tap`] before the rest of the forward uses it, and by
//! letting its BatchNorm ask [`uses_batch_stats`] instead of `B::ad_enabled`. Outside an
//! explaining pass all three are the plain operations (the ReLU is burn's, the tap the
//! identity, the BatchNorm in training mode exactly on autodiff backends), at every backend
//! level, so a model written with them trains and predicts exactly as before. Every model of
//! `salaug-models` is written this way.
//!
//! During the one-level-up pass of a saliency method ([`super::ruled_input_gradient`],
//! [`super::layer_gradient`]) they act on tensors of that level only (`Autodiff<B>`, found by
//! type):
//! - [`relu`] keeps the forward (computed by level `B`'s own ReLU, so the level-`B` graph to
//!   the parameters is the model's) and replaces the backward rule, for guided backpropagation
//!   (`(f > 0)·(R > 0)·R`) or DeconvNet (`(R > 0)·R`), the paper's eq. 4. The rule is built from
//!   level-`B` operations: a ReLU of the incoming gradient `R` (differentiable, derivative
//!   `R > 0`) and a constant mask `f > 0`, so the maps stay differentiable in the parameters.
//! - [`tap`] turns the named feature into a fresh leaf of the outer level whose value is the
//!   level-`B` feature itself: the outer backward then stops there and gives the gradient of
//!   the score at that feature (Grad-CAM's), again as a level-`B` tensor with its graph.
//! - [`uses_batch_stats`] answers false in a [`BatchNormMode::Running`] pass: the model's
//!   BatchNorms normalise by their running statistics although the pass runs on autodiff.
//!
//! The hooks live in a thread-local and are installed only for the duration of one forward
//! (`with_hooks`); nothing leaks into other threads or later passes.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::rc::Rc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{unary, Backward, Ops, OpsKind};
use burn::tensor::{activation, backend::Backend, Bool, Int, Tensor, TensorPrimitive};
use serde::{Deserialize, Serialize};

#[cfg(doc)]
use super::BatchNormMode;
use super::{AutodiffBase, Outer};

/// The backward rule of ReLU in a saliency pass (the paper's eq. 4, with `f` the ReLU's input
/// and `R` the gradient arriving from above).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReluRule {
    /// Guided backpropagation (Springenberg et al. 2015): `(f > 0)·(R > 0)·R`.
    Guided,
    /// DeconvNet (Zeiler & Fergus 2014): `(R > 0)·R`, the forward's sign ignored.
    Deconv,
}

/// A type-erased action on `&mut Option<Tensor<_, D>>`; true when it recognised the tensor.
type ReluHook = Box<dyn Fn(&mut dyn Any) -> bool>;
/// A type-erased action on a named 4-D feature; true when it recognised the tensor.
type TapHook = Box<dyn FnMut(&str, &mut dyn Any) -> bool>;

/// The activation pattern of one forward pass (which inputs of each [`relu`] are positive,
/// which element of each [`max_dim`] is the largest), recorded by one pass and imposed on
/// later ones: the finite-difference path evaluates the score at `x + εv` with the pattern of
/// `x`, on which the input gradient's derivative is defined (see
/// [`crate::finite_difference`]).
#[derive(Default)]
pub(crate) struct Pattern {
    /// Replay the recorded choices instead of recording.
    pub replay: bool,
    /// One mask (ReLU) or index tensor (maximum) per call, in call order.
    saved: Vec<Box<dyn Any>>,
    /// The next recorded choice to replay.
    at: usize,
    /// Set when a replaying pass made a call the recording pass did not (another shape or
    /// another number of calls).
    pub broken: bool,
}

impl Pattern {
    /// Replays from the first recorded choice again.
    pub fn rewind(&mut self) {
        self.replay = true;
        self.at = 0;
    }

    /// Whether a replaying pass replayed every recorded choice, and nothing else.
    pub fn replayed_all(&self) -> bool {
        !self.broken && self.at == self.saved.len()
    }

    fn next<T: Clone + 'static>(&mut self) -> Option<T> {
        let found = self
            .saved
            .get(self.at)
            .and_then(|t| t.downcast_ref::<T>())
            .cloned();
        self.at += 1;
        if found.is_none() {
            self.broken = true;
        }
        found
    }
}

/// A pattern shared by the passes that record and replay it.
pub(crate) type SharedPattern = Rc<RefCell<Pattern>>;

/// Runs `f` (forward passes at any level) recording or replaying `pattern`'s choices in every
/// [`relu`] and [`max_dim`]; the other hooks are off, and the previous ones are restored
/// afterwards, also on panic.
pub(crate) fn with_pattern<R>(pattern: &SharedPattern, f: impl FnOnce() -> R) -> R {
    let hooks = Hooks {
        pattern: Some(Rc::clone(pattern)),
        ..Hooks::default()
    };
    installed(hooks, f)
}

/// Runs `f` with `hooks` installed, and the previous ones restored afterwards, also on panic.
fn installed<R>(hooks: Hooks, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Hooks>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take().unwrap_or_default();
            HOOKS.with(|h| *h.borrow_mut() = previous);
        }
    }
    let _restore = Restore(Some(HOOKS.with(|h| h.replace(hooks))));
    f()
}

/// The largest element along `dim` (kept with size 1), for models whose max pooling is
/// differentiated by the finite-difference path: `Tensor::max_dim`, except in a pass that
/// records or replays an activation pattern, where the position of the maximum is recorded,
/// or the recorded position is taken whatever the values.
pub fn max_dim<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let Some(pattern) = HOOKS.with(|h| h.borrow().pattern.clone()) else {
        return x.max_dim(dim);
    };
    let mut pattern = pattern.borrow_mut();
    if pattern.replay {
        match pattern.next::<Tensor<B, D, Int>>() {
            Some(at) if at.dims() == shape_along(&x, dim) => x.gather(dim, at),
            _ => {
                pattern.broken = true;
                x.max_dim(dim)
            }
        }
    } else {
        pattern.saved.push(Box::new(x.clone().argmax(dim)));
        x.max_dim(dim)
    }
}

/// The shape of `x` with axis `dim` reduced to 1.
fn shape_along<B: Backend, const D: usize>(x: &Tensor<B, D>, dim: usize) -> [usize; D] {
    let mut dims = x.dims();
    dims[dim] = 1;
    dims
}

#[derive(Default)]
struct Hooks {
    /// Set in a pass that records or replays an activation pattern.
    pattern: Option<SharedPattern>,
    relu: Option<ReluHook>,
    tap: Option<TapHook>,
    /// Set in a [`BatchNormMode::Running`] pass: counts the BatchNorms that asked
    /// [`uses_batch_stats`].
    running: Option<Rc<Cell<usize>>>,
}

thread_local! {
    static HOOKS: RefCell<Hooks> = RefCell::new(Hooks::default());
}

/// ReLU, for models that support guided backpropagation and DeconvNet: burn's ReLU, except in
/// a saliency pass that asks for another backward rule (see the module docs).
pub fn relu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if let Some(pattern) = HOOKS.with(|h| h.borrow().pattern.clone()) {
        let mut pattern = pattern.borrow_mut();
        if pattern.replay {
            return match pattern.next::<Tensor<B, D, Bool>>() {
                Some(on) if on.dims() == x.dims() => x.mask_fill(on.bool_not(), 0.0),
                _ => {
                    pattern.broken = true;
                    activation::relu(x)
                }
            };
        }
        pattern.saved.push(Box::new(x.clone().greater_elem(0.0)));
        return activation::relu(x);
    }
    let mut slot = Some(x);
    let hooked = HOOKS.with(|h| match &h.borrow().relu {
        Some(hook) => hook(&mut slot),
        None => false,
    });
    let x = slot.expect("a hook puts its result back");
    if hooked {
        x
    } else {
        activation::relu(x)
    }
}

/// Whether a BatchNorm on backend `B` normalises by the batch's statistics (training mode)
/// rather than by its running statistics (evaluation mode), for models whose BatchNorm honours
/// [`BatchNormMode::Running`]: true on an autodiff backend, except in an explaining pass in
/// that mode. A BatchNorm that asks this in every forward supports every [`BatchNormMode`].
pub fn uses_batch_stats<B: Backend>(device: &B::Device) -> bool {
    let running = HOOKS.with(|h| match &h.borrow().running {
        Some(count) => {
            count.set(count.get() + 1);
            true
        }
        None => false,
    });
    B::ad_enabled(device) && !running
}

/// The named feature `name` of a forward pass, for models that support Grad-CAM: the identity,
/// except in a saliency pass that asks for the gradient at `name` (see the module docs). The
/// rest of the forward must use the returned tensor.
pub fn tap<B: Backend>(name: &str, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let mut slot = Some(x);
    HOOKS.with(|h| {
        if let Some(hook) = &mut h.borrow_mut().tap {
            hook(name, &mut slot);
        }
    });
    slot.expect("a hook puts its result back")
}

/// Where [`with_hooks`] leaves the leaf that replaced a tapped feature.
pub(crate) type Captured<B> = Rc<RefCell<Option<Result<Tensor<Outer<B>, 4>, ()>>>>;

/// Runs `f` (a forward pass at level `Outer<B>`) with the ReLU rule `rule.0` (counting the
/// ReLUs it applied to in `rule.1`), if `layer` is given, the feature `layer.0` replaced by
/// an outer leaf that is stored in `layer.1` (`Err(())` when the forward tapped that name
/// twice), and, if `running` is given, every BatchNorm that asks [`uses_batch_stats`] in
/// evaluation mode (counted there). The previous hooks are restored afterwards, also on panic.
pub(crate) fn with_hooks<B: AutodiffBase, R>(
    rule: Option<(ReluRule, Rc<Cell<usize>>)>,
    layer: Option<(&str, Captured<B>)>,
    running: Option<Rc<Cell<usize>>>,
    f: impl FnOnce() -> R,
) -> R {
    let hooks = Hooks {
        relu: rule.map(|(rule, count)| -> ReluHook {
            Box::new(move |slot: &mut dyn Any| {
                let applied = rule_on::<B, 1>(rule, slot)
                    || rule_on::<B, 2>(rule, slot)
                    || rule_on::<B, 3>(rule, slot)
                    || rule_on::<B, 4>(rule, slot)
                    || rule_on::<B, 5>(rule, slot);
                count.set(count.get() + applied as usize);
                applied
            })
        }),
        tap: layer.map(|(name, captured)| -> TapHook {
            let name = name.to_string();
            Box::new(move |at: &str, slot: &mut dyn Any| {
                if at != name {
                    return false;
                }
                let Some(slot) = slot.downcast_mut::<Option<Tensor<Outer<B>, 4>>>() else {
                    return false;
                };
                let x = slot.take().expect("the slot holds the feature");
                let leaf = Tensor::<Outer<B>, 4>::from_inner(x.inner()).require_grad();
                let mut captured = captured.borrow_mut();
                *captured = match *captured {
                    None => Some(Ok(leaf.clone())),
                    Some(_) => Some(Err(())),
                };
                *slot = Some(leaf);
                true
            })
        }),
        running,
        pattern: None,
    };
    installed(hooks, f)
}

/// Applies the ReLU with backward rule `rule` if `slot` holds a `D`-dimensional tensor of the
/// outer level; false (and `slot` untouched) otherwise.
fn rule_on<B: Backend, const D: usize>(rule: ReluRule, slot: &mut dyn Any) -> bool {
    let Some(slot) = slot.downcast_mut::<Option<Tensor<Outer<B>, D>>>() else {
        return false;
    };
    let x = slot.take().expect("the slot holds the tensor");
    *slot = Some(ruled_relu(rule, x));
    true
}

/// ReLU at the outer level whose backward is `rule`.
fn ruled_relu<B: Backend, const D: usize>(
    rule: ReluRule,
    x: Tensor<Outer<B>, D>,
) -> Tensor<Outer<B>, D> {
    let x = x.into_primitive().tensor();
    // The forward at level B: the model's own ReLU, tracked at level B.
    let out = activation::relu(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(
        x.primitive.clone(),
    )));
    let primitive = out.clone().into_primitive().tensor();
    let result = match RuledRelu::<D>
        .prepare::<NoCheckpointing>([x.node.clone()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let mask = match rule {
                ReluRule::Guided => Some(out.lower_equal_elem(0.0)),
                ReluRule::Deconv => None,
            };
            prep.finish(mask, primitive)
        }
        OpsKind::UnTracked(prep) => prep.finish(primitive),
    };
    Tensor::from_primitive(TensorPrimitive::Float(result))
}

/// The backward step of [`ruled_relu`].
#[derive(Debug)]
struct RuledRelu<const D: usize>;

impl<B: Backend, const D: usize> Backward<B, 1> for RuledRelu<D> {
    /// Guided: where the forward's output is zero (`f ≤ 0`); DeconvNet: `None`.
    type State = Option<Tensor<B, D, Bool>>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let inactive = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| {
            // (R > 0)·R, differentiable at level B (its derivative is the mask R > 0).
            let r = activation::relu(Tensor::<B, D>::from_primitive(TensorPrimitive::Float(grad)));
            match inactive {
                Some(inactive) => r.mask_fill(inactive, 0.0),
                None => r,
            }
            .into_primitive()
            .tensor()
        });
    }
}
