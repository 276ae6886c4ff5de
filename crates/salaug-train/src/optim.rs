//! burn's optimiser of a run's `train.optimizer`: the one place that turns the config into
//! burn-optim's configs (training and `salaug time` both go through [`with_optimizer`]).

use burn::module::AutodiffModule;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::{
    decay::WeightDecayConfig, momentum::MomentumConfig, AdamConfig, AdamWConfig, SgdConfig,
};
use burn::tensor::backend::AutodiffBackend;

use crate::config::{GradClip, Optimizer, TrainConfig};

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

/// Runs `work` with burn's optimiser of `train.optimizer`, clipping gradients as
/// `train.grad_clip` says.
pub fn with_optimizer<B, M, W>(train: &TrainConfig, work: W) -> W::Output
where
    B: AutodiffBackend,
    M: AutodiffModule<B> + 'static,
    W: WithOptimizer<B, M>,
{
    let clip = train.grad_clip.map(|c| match c {
        GradClip::Norm(v) => GradientClippingConfig::Norm(v as f32),
        GradClip::Value(v) => GradientClippingConfig::Value(v as f32),
    });
    match train.optimizer {
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
            let c = c.with_gradient_clipping(clip);
            work.run(|| c.init())
        }
        Optimizer::Adam { weight_decay } => {
            let c = AdamConfig::new()
                .with_weight_decay(
                    (weight_decay > 0.0).then(|| WeightDecayConfig::new(weight_decay as f32)),
                )
                .with_grad_clipping(clip);
            work.run(|| c.init())
        }
        Optimizer::AdamW { weight_decay } => {
            let c = AdamWConfig::new()
                .with_weight_decay(weight_decay as f32)
                .with_grad_clipping(clip);
            work.run(|| c.init())
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Autodiff;
    use burn::module::{Module, Param};
    use burn::optim::{GradientsParams, Optimizer as BurnOptimizer};
    use burn::prelude::*;

    use super::*;
    use crate::config::TrainConfig;

    type B = Autodiff<crate::backend::Selected>;

    #[derive(Module, Debug)]
    struct Weights<B: Backend> {
        w: Param<Tensor<B, 1>>,
    }

    /// One step of the configured optimiser on `L = 1000 · Σ w` (every gradient entry 1000).
    struct OneStep;
    impl WithOptimizer<B, Weights<B>> for OneStep {
        type Output = Vec<f32>;
        fn run<O: BurnOptimizer<Weights<B>, B> + 'static>(self, make: impl Fn() -> O) -> Vec<f32> {
            let device = Default::default();
            let m = Weights {
                w: Param::from_tensor(Tensor::<B, 1>::zeros([4], &device)),
            };
            let grads = m.w.val().mul_scalar(0.0).add_scalar(1.0).mul_scalar(1000.0);
            let loss = (m.w.val() * grads.detach()).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &m);
            let m = make().step(0.1, m, grads);
            m.w.val().into_data().to_vec().unwrap()
        }
    }

    #[test]
    fn grad_clip_reaches_burns_optimiser_per_tensor() {
        let mut train = TrainConfig {
            optimizer: Optimizer::Sgd {
                momentum: 0.0,
                nesterov: false,
                weight_decay: 0.0,
            },
            ..TrainConfig::default()
        };
        // Unclipped: w = 0 - 0.1 · 1000.
        assert_eq!(with_optimizer(&train, OneStep), vec![-100.0; 4]);
        // Each entry clamped to 0.5.
        train.grad_clip = Some(GradClip::Value(0.5));
        assert_eq!(with_optimizer(&train, OneStep), vec![-0.05; 4]);
        // The tensor's norm (2000) scaled to 1: each entry 0.5.
        train.grad_clip = Some(GradClip::Norm(1.0));
        let w = with_optimizer(&train, OneStep);
        assert!(w.iter().all(|v| (v + 0.05).abs() < 1e-6), "{w:?}");
        for (kind, optimizer) in [
            ("adam", Optimizer::Adam { weight_decay: 0.0 }),
            ("adamw", Optimizer::AdamW { weight_decay: 0.0 }),
        ] {
            train.optimizer = optimizer;
            // Adam's first step is about lr · g / (|g| + ε) (burn's ε = 1e-5): lr whatever a
            // large gradient's size, but about 1e-5 · lr for a gradient clipped to 1e-10.
            train.grad_clip = Some(GradClip::Value(1e-10));
            let clipped = with_optimizer(&train, OneStep);
            train.grad_clip = None;
            let free = with_optimizer(&train, OneStep);
            assert!(
                clipped.iter().all(|v| v.abs() < 1e-4),
                "{kind}: {clipped:?}"
            );
            assert!(
                free.iter().all(|v| (v + 0.1).abs() < 1e-3),
                "{kind}: {free:?}"
            );
        }
    }
}
