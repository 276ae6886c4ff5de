//! burn's optimiser of a run's `train.optimizer`: the one place that turns the config into
//! burn-optim's configs (training and `salaug time` both go through [`with_optimizer`]).

use burn::module::AutodiffModule;
use burn::optim::{
    decay::WeightDecayConfig, momentum::MomentumConfig, AdamConfig, AdamWConfig, SgdConfig,
};
use burn::tensor::backend::AutodiffBackend;

use crate::config::Optimizer;

/// Work that needs the run's optimiser for a module `M` on `B`, whatever the optimiser's burn
/// type (see [`with_optimizer`]).
pub trait WithOptimizer<B: AutodiffBackend, M: AutodiffModule<B> + 'static> {
    /// What the work returns.
    type Output;
    /// Does the work; `make` builds a fresh optimiser (state-free) of the configured kind.
    fn run<O>(self, make: impl Fn() -> O) -> Self::Output
    where
        O: burn::optim::Optimizer<M, B> + 'static;
}

/// Runs `work` with burn's optimiser of `optimizer`.
pub fn with_optimizer<B, M, W>(optimizer: &Optimizer, work: W) -> W::Output
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + 'static,
    W: WithOptimizer<B, M>,
{
    match *optimizer {
        Optimizer::Sgd {
            momentum,
            nesterov,
            weight_decay,
        } => {
            let mut c = SgdConfig::new();
            if momentum > 0.0 {
                c = c.with_momentum(Some(
                    MomentumConfig::new()
                        .with_momentum(momentum)
                        .with_dampening(0.0)
                        .with_nesterov(nesterov),
                ));
            }
            if weight_decay > 0.0 {
                c = c.with_weight_decay(Some(WeightDecayConfig::new(weight_decay as f32)));
            }
            work.run(|| c.init())
        }
        Optimizer::Adam { weight_decay } => {
            let c = AdamConfig::new().with_weight_decay(
                (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
            );
            work.run(|| c.init())
        }
        Optimizer::AdamW { weight_decay } => {
            let c = AdamWConfig::new().with_weight_decay(weight_decay as f32);
            work.run(|| c.init())
        }
    }
}
