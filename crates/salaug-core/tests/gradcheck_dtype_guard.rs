//! burn 0.21 fixes the default float dtype per device type for the whole process on first use,
//! and `NdArray<f32>` and `NdArray<f64>` share one device type. This binary (its own process)
//! touches `NdArray<f32>` first, after which `NdArray<f64>` computes in f32: the gradient check
//! must refuse to run rather than report meaningless errors.

mod common;

use burn::prelude::*;
use salaug_core::gradcheck::{gradcheck, GradcheckBackend as GB, GradcheckConfig};
use salaug_core::{SaliencyKind, SaliencyLossConfig};

#[test]
#[should_panic(expected = "gradcheck needs an f64 loss")]
fn gradcheck_refuses_a_process_locked_to_f32() {
    let device = Default::default();
    let _ = Tensor::<burn::backend::NdArray<f32>, 1>::ones([1], &device);
    let model = common::TestNet::<GB>::new(1, &device);
    let (x, y) = common::batch::<GB>(2, 2, 8, &device);
    gradcheck(
        &model,
        |m| {
            common::flip_sal_loss(
                m,
                &x,
                &y,
                SaliencyLossConfig::default(),
                SaliencyKind::Gradient,
                false,
            )
        },
        GradcheckConfig::default(),
    );
}
