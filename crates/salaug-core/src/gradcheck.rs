//! Finite-difference checks of analytic gradients, first or second order.
//!
//! [`gradcheck`] compares the gradient that autodiff gives for every trainable parameter of a
//! module with central finite differences of the same loss. The loss closure may itself take
//! input gradients (through [`crate::second_order`]), so the same call checks second-order
//! gradients: the analytic side back-propagates through the saliency maps, while the numeric
//! side only evaluates the loss. Use it on `Autodiff<NdArray<f64>>` (`GradcheckBackend`,
//! feature `gradcheck`): f32 is too coarse for differences of this size.
//!
//! A finite difference is only a derivative in the limit. Saliency losses of deep narrow
//! networks have places where the loss changes on scales of the step itself (a ReLU or a
//! channel maximum about to switch, a BatchNorm with a tiny variance), so the difference
//! quotient at the configured step can be far from its limit while the analytic gradient is
//! right. An entry whose error exceeds [`GradcheckConfig::recheck_above`] is therefore
//! evaluated again at steps 10 and 100 times smaller. If the quotient had not converged at the
//! configured step (it moved by more than `recheck_above` relative from there to the step 10
//! times smaller) and has converged below it (the quotients at 1/10 and 1/100 of the step
//! agree within `recheck_above`), the entry is judged by the converged quotient and the report
//! counts it as refined. Otherwise its error stays the one at the configured step. Either way
//! the analytic gradient must match a converged finite difference within the caller's
//! tolerance; the tolerance itself is never loosened.
//!
//! Beware a burn 0.21 trap: the default float dtype is fixed per *device type* for the whole
//! process by the first backend that creates a tensor on it, and `NdArray<f32>` and
//! `NdArray<f64>` share `NdArrayDevice`. If anything in the process used `NdArray<f32>` first,
//! `NdArray<f64>` silently computes in f32. [`gradcheck`] therefore refuses a loss that is not
//! f64 instead of reporting meaningless errors.

use burn::module::{AutodiffModule, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{DType, Tensor, TensorData};

use crate::second_order::materialize;

/// The backend the checks are meant for: f64 on ndarray, one autodiff level.
#[cfg(feature = "gradcheck")]
pub type GradcheckBackend = burn::backend::Autodiff<burn::backend::NdArray<f64>>;

/// Settings of a finite-difference check.
#[derive(Debug, Clone, Copy)]
pub struct GradcheckConfig {
    /// Step of the central difference `(L(w + h) − L(w − h)) / 2h`.
    pub step: f64,
    /// Entries checked per parameter tensor (spread evenly over the tensor; all if fewer).
    pub entries_per_param: usize,
    /// Relative errors use `max(|analytic|, |numeric|, floor)` as denominator, with
    /// `floor = max(abs_floor, rel_floor × G)` and `G` the largest |analytic| entry of the whole
    /// model: entries whose true gradient is ~0 (below the finite differences' round-off) are
    /// judged against the model's gradient scale instead of their own.
    pub abs_floor: f64,
    /// See [`Self::abs_floor`].
    pub rel_floor: f64,
    /// Entries whose relative error exceeds this are re-evaluated at smaller steps, and this is
    /// the convergence threshold of the difference quotient (see the module docs).
    pub recheck_above: f64,
}

impl Default for GradcheckConfig {
    fn default() -> Self {
        Self {
            step: 1e-5,
            entries_per_param: 6,
            abs_floor: 1e-12,
            rel_floor: 1e-3,
            recheck_above: 1e-7,
        }
    }
}

/// The check of one parameter tensor.
#[derive(Debug, Clone)]
pub struct ParamCheck {
    /// Dotted path of the parameter in the module (e.g. `conv1.weight`).
    pub path: String,
    /// Number of entries checked.
    pub entries: usize,
    /// Largest relative error over the checked entries.
    pub max_rel_error: f64,
    /// Largest absolute value of the analytic gradient over the checked entries.
    pub max_abs_grad: f64,
    /// Whether autodiff returned a gradient for this tensor. `false` means the loss does not
    /// depend on it through any tracked operation, i.e. an exact zero gradient, which the finite
    /// differences then have to confirm.
    pub has_grad: bool,
    /// Checked entries whose difference quotient had not converged at the configured step and
    /// were judged by the converged quotient at a smaller step (see the module docs).
    pub refined: usize,
}

impl ParamCheck {
    /// Whether the largest relative error is `≤ tol` (a NaN error never is).
    pub fn within(&self, tol: f64) -> bool {
        self.max_rel_error <= tol
    }
}

/// The result of [`gradcheck`]: one row per trainable parameter tensor.
#[derive(Debug, Clone)]
pub struct GradcheckReport {
    /// The loss value at the unperturbed parameters.
    pub loss: f64,
    /// One row per trainable parameter tensor, in module order.
    pub params: Vec<ParamCheck>,
}

impl GradcheckReport {
    /// The largest relative error over all parameters.
    pub fn max_rel_error(&self) -> f64 {
        self.params
            .iter()
            .map(|p| p.max_rel_error)
            .fold(0.0, f64::max)
    }

    /// Whether some parameter was checked and every relative error is `≤ tol`.
    pub fn passes(&self, tol: f64) -> bool {
        !self.params.is_empty() && self.params.iter().all(|p| p.within(tol))
    }

    /// Panics with a table of all parameters unless [`Self::passes`].
    pub fn assert_within(&self, tol: f64) {
        assert!(
            self.passes(tol),
            "gradient check failed (tolerance {tol:e}):\n{self}"
        );
    }
}

impl core::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(f, "loss = {:.6e}", self.loss)?;
        for p in &self.params {
            writeln!(
                f,
                "  {:<32} entries {:>3}  max rel err {:.2e}  max |grad| {:.2e}{}{}",
                p.path,
                p.entries,
                p.max_rel_error,
                p.max_abs_grad,
                if p.has_grad {
                    ""
                } else {
                    "  (no gradient: exact zero)"
                },
                if p.refined > 0 {
                    format!("  ({} judged at a smaller step)", p.refined)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(())
    }
}

struct Entry {
    path: String,
    id: ParamId,
    values: Vec<f64>,
    grad: Option<Vec<f64>>,
}

struct Collect<'a, B: AutodiffBackend> {
    grads: &'a B::Gradients,
    path: Vec<String>,
    out: Vec<Entry>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        if !tensor.is_require_grad() {
            return; // running statistics and frozen tensors
        }
        let grad = tensor.grad(self.grads).map(|g| to_f64(g.into_data()));
        self.out.push(Entry {
            path: self.path.join("."),
            id: param.id,
            values: to_f64(tensor.into_data()),
            grad,
        });
    }
}

/// Rewrites the values of every parameter with `f(id, values)` (as f64, in the parameter's
/// dtype again afterwards).
struct Perturb<F>(F);

impl<B: AutodiffBackend, F: FnMut(ParamId, &mut [f64])> ModuleMapper<B> for Perturb<F> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let id = param.id;
        param.map(|tensor| {
            let require_grad = tensor.is_require_grad();
            let data = tensor.to_data();
            let dtype = data.dtype;
            let mut values = to_f64(data.clone());
            (self.0)(id, &mut values);
            let data = TensorData::new(values, data.shape.clone()).convert_dtype(dtype);
            Tensor::from_data(data, &tensor.device()).set_require_grad(require_grad)
        })
    }
}

/// The loss at `model` and every trainable parameter's values and analytic gradient.
fn analytic<B, M, F>(model: &M, loss: &F) -> (f64, Vec<Entry>)
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M) -> Tensor<B, 1>,
{
    materialize(model);
    let value = loss(model);
    assert_eq!(
        value.dtype(),
        DType::F64,
        "gradcheck needs an f64 loss; this process computes in {:?}. burn 0.21 fixes the default \
         float dtype per device type on first use: do not use NdArray<f32> and NdArray<f64> in \
         the same process (or set it with burn::tensor::set_default_float_dtype first)",
        value.dtype()
    );
    let loss_value = to_f64(value.to_data())[0];
    let grads = value.backward();
    let mut collect = Collect::<B> {
        grads: &grads,
        path: Vec::new(),
        out: Vec::new(),
    };
    model.visit(&mut collect);
    (loss_value, collect.out)
}

fn to_f64(data: TensorData) -> Vec<f64> {
    data.convert::<f64>()
        .to_vec::<f64>()
        .expect("float tensor data converts to f64")
}

/// Checks the gradient of `loss` with respect to every trainable parameter of `model` against
/// central finite differences.
///
/// `loss` must be deterministic and return a one-element tensor. It is called once with
/// `model` for the analytic gradient and twice per checked entry with perturbed copies.
pub fn gradcheck<B, M, F>(model: &M, loss: F, config: GradcheckConfig) -> GradcheckReport
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M) -> Tensor<B, 1>,
{
    let (loss_value, entries) = analytic(model, &loss);
    let eval = |id: ParamId, index: usize, v: f64| -> f64 {
        let perturbed = model
            .clone()
            .map(&mut Perturb(|p: ParamId, values: &mut [f64]| {
                if p == id {
                    values[index] = v;
                }
            }));
        to_f64(loss(&perturbed).into_data())[0]
    };

    let scale = entries
        .iter()
        .flat_map(|e| e.grad.iter().flatten())
        .fold(0.0f64, |m, g| m.max(g.abs()));
    let floor = config.abs_floor.max(config.rel_floor * scale);
    let params = entries
        .into_iter()
        .map(|entry| {
            let n = entry.values.len();
            let count = config.entries_per_param.min(n).max(1);
            let mut max_rel: f64 = 0.0;
            let mut max_abs: f64 = 0.0;
            let mut refined = 0;
            for j in 0..count {
                // Evenly spread, always including the first and the last entry.
                let index = if count == 1 {
                    0
                } else {
                    j * (n - 1) / (count - 1)
                };
                let w = entry.values[index];
                let analytic = entry.grad.as_ref().map_or(0.0, |g| g[index]);
                let quotient = |step: f64| {
                    let h = step * w.abs().max(1.0);
                    (eval(entry.id, index, w + h) - eval(entry.id, index, w - h)) / (2.0 * h)
                };
                let rel = |a: f64, b: f64| (a - b).abs() / a.abs().max(b.abs()).max(floor);
                let coarse = quotient(config.step);
                let mut error = rel(analytic, coarse);
                if error > config.recheck_above {
                    let finer = quotient(config.step / 10.0);
                    let finest = quotient(config.step / 100.0);
                    let unconverged = rel(coarse, finer) > config.recheck_above;
                    let converged = rel(finer, finest) <= config.recheck_above;
                    if unconverged && converged {
                        error = rel(analytic, finest);
                        refined += 1;
                    }
                }
                max_rel = max_rel.max(error);
                max_abs = max_abs.max(analytic.abs());
            }
            ParamCheck {
                path: entry.path,
                entries: count,
                max_rel_error: max_rel,
                max_abs_grad: max_abs,
                has_grad: entry.grad.is_some(),
                refined,
            }
        })
        .collect();
    GradcheckReport {
        loss: loss_value,
        params,
    }
}

/// The result of [`directional_check`].
#[derive(Debug, Clone)]
pub struct DirectionalReport {
    /// The loss value at the unperturbed parameters.
    pub loss: f64,
    /// The analytic derivative along the direction, `Σ_p ⟨∂L/∂θ_p, v_p⟩`.
    pub analytic: f64,
    /// `(step, central difference quotient)`, in the order of the steps asked for.
    pub quotients: Vec<(f64, f64)>,
}

impl DirectionalReport {
    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / a.abs().max(b.abs()).max(1e-300)
    }

    /// Whether the difference quotient has converged to the analytic derivative: the quotients
    /// at the last two steps agree within `tol` (relative), and the last one matches the
    /// analytic derivative within `tol`.
    pub fn passes(&self, tol: f64) -> bool {
        match self.quotients.as_slice() {
            [.., (_, a), (_, b)] => Self::rel(*a, *b) <= tol && Self::rel(self.analytic, *b) <= tol,
            _ => false,
        }
    }

    /// Panics with the quotients unless [`Self::passes`].
    pub fn assert_within(&self, tol: f64) {
        assert!(
            self.passes(tol),
            "directional check failed (tolerance {tol:e}):\n{self}"
        );
    }
}

impl core::fmt::Display for DirectionalReport {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        writeln!(
            f,
            "loss = {:.6e}, analytic directional derivative {:.10e}",
            self.loss, self.analytic
        )?;
        for (step, q) in &self.quotients {
            writeln!(
                f,
                "  step {step:.0e}: quotient {q:.10e}  rel err {:.2e}",
                Self::rel(self.analytic, *q)
            )?;
        }
        Ok(())
    }
}

/// Checks the derivative of `loss` along one random direction of all trainable parameters at
/// once against central differences at each of `steps` (e.g. `[1e-6, 1e-7, 1e-8, 1e-9]`).
///
/// For losses with many kinks (a map whose every ReLU passes back `(R > 0)·R`, such as
/// DeconvNet's through a deep network), a per-entry check at a fixed step straddles a switch
/// somewhere too often to judge; along one direction the quotients can be followed down to
/// steps where they converge, and [`DirectionalReport::passes`] asks that they converge to the
/// analytic value. The direction's entries are uniform in [−1, 1], drawn from `seed`.
pub fn directional_check<B, M, F>(model: &M, loss: F, seed: u64, steps: &[f64]) -> DirectionalReport
where
    B: AutodiffBackend,
    M: AutodiffModule<B>,
    F: Fn(&M) -> Tensor<B, 1>,
{
    let (loss_value, entries) = analytic(model, &loss);
    // splitmix64: a fixed, dependency-free stream.
    let mut state = seed;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        2.0 * ((z >> 11) as f64 / (1u64 << 53) as f64) - 1.0
    };
    let mut directions = std::collections::HashMap::new();
    let mut analytic = 0.0;
    for entry in &entries {
        let v: Vec<f64> = entry.values.iter().map(|_| uniform()).collect();
        if let Some(g) = &entry.grad {
            analytic += g.iter().zip(&v).map(|(g, v)| g * v).sum::<f64>();
        }
        directions.insert(entry.id, v);
    }
    let at = |t: f64| {
        let shifted = model
            .clone()
            .map(&mut Perturb(|p: ParamId, values: &mut [f64]| {
                if let Some(v) = directions.get(&p) {
                    values.iter_mut().zip(v).for_each(|(w, v)| *w += t * v);
                }
            }));
        to_f64(loss(&shifted).into_data())[0]
    };
    let quotients = steps
        .iter()
        .map(|&h| (h, (at(h) - at(-h)) / (2.0 * h)))
        .collect();
    DirectionalReport {
        loss: loss_value,
        analytic,
        quotients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::module::Module;

    type B = Autodiff<NdArray<f64>>;

    #[derive(Module, Debug)]
    struct One<B: burn::tensor::backend::Backend> {
        w: Param<Tensor<B, 1>>,
    }

    fn one(w: f64) -> One<B> {
        One {
            w: Param::from_tensor(Tensor::from_floats([w], &Default::default())),
        }
    }

    /// A jump 3e-6 above w = 0.5: inside the step 1e-5, outside 1e-6. The difference quotient at
    /// 1e-5 is off by jump / 2h = 5e-4 relative and has not converged; at 1e-6 and 1e-7 it has,
    /// and the entry is judged there, where the analytic gradient is right.
    #[test]
    fn an_unconverged_difference_is_judged_where_it_converges() {
        let jump = 1e-8;
        let report = gradcheck(
            &one(0.5),
            |m| {
                let w = m.w.val();
                let step = w.clone().greater_elem(0.5 + 3e-6).float() * jump;
                w.powi_scalar(2) + step.detach()
            },
            GradcheckConfig::default(),
        );
        assert_eq!(report.params[0].refined, 1, "{report}");
        assert!(report.passes(1e-8), "{report}");
    }

    #[derive(Module, Debug)]
    struct Two<B: burn::tensor::backend::Backend> {
        a: Param<Tensor<B, 1>>,
        b: Param<Tensor<B, 2>>,
    }

    /// Along a direction, a right gradient converges to the quotient and a wrong one does not.
    #[test]
    fn the_directional_check_tells_a_right_gradient_from_a_wrong_one() {
        let device = Default::default();
        let model = Two::<B> {
            a: Param::from_tensor(Tensor::from_floats([0.3, -0.7], &device)),
            b: Param::from_tensor(Tensor::from_floats([[0.5, 1.5], [-1.0, 0.2]], &device)),
        };
        let steps = [1e-5, 1e-6, 1e-7];
        let smooth = |m: &Two<B>| {
            let a = m.a.val();
            let b = m.b.val();
            (a.clone().unsqueeze::<2>().matmul(b).sin().sum() + a.exp().sum()).reshape([1])
        };
        let report = directional_check(&model, smooth, 7, &steps);
        assert!(report.passes(1e-7), "{report}");
        // The same loss with a term the analytic gradient does not see.
        let wrong = |m: &Two<B>| smooth(m) + m.a.val().detach().sum().reshape([1]) * 0.01;
        let report = directional_check(&model, wrong, 7, &steps);
        assert!(!report.passes(1e-4), "{report}");
    }

    /// A wrong gradient is never excused: the difference quotient converges at once, away from
    /// it.
    #[test]
    fn a_wrong_gradient_of_a_smooth_loss_still_fails() {
        let report = gradcheck(
            &one(0.5),
            |m| {
                let w = m.w.val();
                // The analytic gradient misses the second term's 0.01.
                w.clone().powi_scalar(2) + w.detach() * 0.01
            },
            GradcheckConfig::default(),
        );
        assert_eq!(report.params[0].refined, 0, "{report}");
        assert!(!report.passes(1e-3), "{report}");
    }
}
