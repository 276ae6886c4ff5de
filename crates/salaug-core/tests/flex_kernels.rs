//! The patched flex kernels (`vendor/burn-flex/PATCHES.md`) against burn's ndarray backend,
//! through burn's public API: every result of the patched flex must be the same function of
//! its inputs as ndarray's (f32, to 1e-4 relative to the result's scale).
//!
//! Convolutions are checked forward, for every first-order gradient (input, weight, bias) and
//! for second-order gradients (the gradient of a function of an input gradient, as the
//! saliency loss takes it), over geometries that cover stride, padding, dilation, groups,
//! 1×1, rectangular kernels, output padding and batch sizes that split into image groups.
//! Convolutions are also checked forward and first order in f16 and bf16 (flex's half path
//! runs the f32 kernels on widened inputs), and every kernel here is checked to give the same
//! results on one and on two rayon threads.

use burn::backend::{Autodiff, Flex, NdArray};
use burn::prelude::*;
use burn::tensor::module::{conv2d, conv_transpose2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{bf16, f16, DType};

type F = Autodiff<Flex>;
type N = Autodiff<NdArray<f32>>;

/// Deterministic pseudo-random values in [-1, 1].
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn tensor<B: Backend, const D: usize>(shape: [usize; D], seed: u64) -> Tensor<B, D> {
    let n = shape.iter().product();
    Tensor::from_data(TensorData::new(values(n, seed), shape), &Default::default())
}

/// Values of `values(n, seed)` rounded to `round` (f16 or bf16; other types leave them as they
/// are), stored as `dtype`: with `round` a half type, the f32 reference and the half-precision
/// run see the same inputs.
fn tensor_as<B: Backend, const D: usize>(
    shape: [usize; D],
    seed: u64,
    round: DType,
    dtype: DType,
) -> Tensor<B, D> {
    let n = shape.iter().product();
    let v: Vec<f32> = values(n, seed)
        .into_iter()
        .map(|v| match round {
            DType::F16 => f16::from_f32(v).to_f32(),
            DType::BF16 => bf16::from_f32(v).to_f32(),
            _ => v,
        })
        .collect();
    Tensor::from_data(TensorData::new(v, shape), (&Default::default(), dtype))
}

fn assert_close(what: &str, a: Vec<f32>, b: Vec<f32>) {
    assert_close_to(what, a, b, 1e-4);
}

/// Every entry of `a` within `tolerance · max|b|` of `b`'s; returns the largest difference
/// relative to that scale.
fn assert_close_to(what: &str, a: Vec<f32>, b: Vec<f32>, tolerance: f32) -> f32 {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = b.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    let mut worst = 0f32;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert!(
            (x - y).abs() <= tolerance * scale,
            "{what}: entry {i}: flex {x} vs ndarray {y} (scale {scale})"
        );
        worst = worst.max((x - y).abs() / scale);
    }
    worst
}

fn data<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

#[derive(Debug, Clone, Copy)]
struct Case {
    batch: usize,
    cin: usize,
    cout: usize,
    size: [usize; 2],
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
}

const CASES: [Case; 9] = [
    // ResNet's 3×3 / stride 1 / padding 1.
    Case {
        batch: 3,
        cin: 4,
        cout: 6,
        size: [7, 6],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
    // Strided 3×3, batch that splits into several image groups (small planes).
    Case {
        batch: 70,
        cin: 3,
        cout: 5,
        size: [4, 5],
        kernel: [3, 3],
        stride: [2, 2],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    },
    // 1×1 (pointwise), one image and many.
    Case {
        batch: 1,
        cin: 5,
        cout: 7,
        size: [6, 6],
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: true,
    },
    Case {
        batch: 40,
        cin: 5,
        cout: 7,
        size: [3, 3],
        kernel: [1, 1],
        stride: [1, 1],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
    // 1×1 / stride 2 (a ResNet downsample).
    Case {
        batch: 2,
        cin: 6,
        cout: 4,
        size: [7, 7],
        kernel: [1, 1],
        stride: [2, 2],
        padding: [0, 0],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
    // ImageNet stem shape: 7×7 / 2 / 3.
    Case {
        batch: 2,
        cin: 3,
        cout: 8,
        size: [13, 11],
        kernel: [7, 7],
        stride: [2, 2],
        padding: [3, 3],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
    // Rectangular kernel, dilation, asymmetric stride and padding.
    Case {
        batch: 2,
        cin: 4,
        cout: 5,
        size: [9, 8],
        kernel: [3, 2],
        stride: [1, 2],
        padding: [2, 0],
        dilation: [2, 1],
        groups: 1,
        bias: true,
    },
    // Groups.
    Case {
        batch: 3,
        cin: 6,
        cout: 9,
        size: [5, 5],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 3,
        bias: true,
    },
    // Single input channel (the small CNN's first layer).
    Case {
        batch: 4,
        cin: 1,
        cout: 32,
        size: [8, 8],
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
        groups: 1,
        bias: false,
    },
];

/// Forward, first-order gradients and second-order gradients of one case on backend `B`:
/// `y = conv(x, w, b)`; `g = ∂(Σ y·r)/∂x` (tracked); `L = Σ g² · s + Σ y²`; the gradients of
/// `L` with respect to x, w and b.
fn conv_results<B: burn::tensor::backend::AutodiffBackend>(c: Case) -> Vec<(String, Vec<f32>)> {
    conv_results_as::<B>(c, DType::F32, DType::F32)
}

/// [`conv_results`] with the inputs rounded to `round` and stored as `dtype`.
fn conv_results_as<B: burn::tensor::backend::AutodiffBackend>(
    c: Case,
    round: DType,
    dtype: DType,
) -> Vec<(String, Vec<f32>)> {
    let x =
        tensor_as::<B, 4>([c.batch, c.cin, c.size[0], c.size[1]], 1, round, dtype).require_grad();
    let w = tensor_as::<B, 4>(
        [c.cout, c.cin / c.groups, c.kernel[0], c.kernel[1]],
        2,
        round,
        dtype,
    )
    .require_grad();
    let b = c
        .bias
        .then(|| tensor_as::<B, 1>([c.cout], 3, round, dtype).require_grad());
    let options = ConvOptions::new(c.stride, c.padding, c.dilation, c.groups);
    let y = conv2d(x.clone(), w.clone(), b.clone(), options.clone());
    let r = tensor_as::<B, 4>(y.dims(), 4, round, dtype);
    let first = (y.clone() * r).sum().backward();
    let gx = x.grad(&first).unwrap();
    let gw = w.grad(&first).unwrap();
    let mut out = vec![
        ("forward".to_string(), data(y.clone())),
        ("x grad".to_string(), data(gx)),
        ("w grad".to_string(), data(gw)),
    ];
    if let Some(b) = &b {
        out.push(("b grad".into(), data(b.grad(&first).unwrap())));
    }
    out
}

/// The second-order part: the model at the inner level, the input gradient from a lifted
/// (outer) pass, a loss of that gradient back-propagated to the weights (as salaug does).
fn second_order<B: Backend>(c: Case) -> Vec<(String, Vec<f32>)> {
    type Outer<B> = Autodiff<Autodiff<B>>;
    let w: Tensor<Autodiff<B>, 4> =
        tensor::<Autodiff<B>, 4>([c.cout, c.cin / c.groups, c.kernel[0], c.kernel[1]], 2)
            .require_grad();
    let x0: Tensor<Autodiff<B>, 4> =
        tensor::<Autodiff<B>, 4>([c.batch, c.cin, c.size[0], c.size[1]], 1).require_grad();
    let options = ConvOptions::new(c.stride, c.padding, c.dilation, c.groups);
    // Outer level: x is a leaf, w a constant whose inner graph is kept.
    let x = Tensor::<Outer<B>, 4>::from_inner(x0.clone()).require_grad();
    let wo = Tensor::<Outer<B>, 4>::from_inner(w.clone());
    let y = conv2d(x.clone(), wo, None, options);
    let r = tensor::<Outer<B>, 4>(y.dims(), 5);
    // A non-linear score so that the input gradient depends on x as well as on w.
    let score = (y.clone() * r).sum() + (y.clone() * y).sum().mul_scalar(0.25);
    let grads = score.backward();
    let gx: Tensor<Autodiff<B>, 4> = x.grad(&grads).unwrap();
    let s = tensor::<Autodiff<B>, 4>(gx.dims(), 6);
    let loss = (gx.clone() * gx * s).sum();
    let grads = loss.backward();
    vec![
        ("second-order w grad".into(), data(w.grad(&grads).unwrap())),
        ("second-order x grad".into(), data(x0.grad(&grads).unwrap())),
    ]
}

/// Whether flex runs `c`'s forward on its own (upstream, unpatched) small-channel kernel
/// instead of the patched im2col + GEMM (`conv::prefers_direct_conv2d`: one group, at most 4
/// input and 16 output channels; no case here is depthwise). The backward ops always take
/// the patched kernels.
fn flex_direct_forward(c: Case) -> bool {
    c.groups == 1 && c.cin <= 4 && c.cout <= 16
}

/// f16 and bf16: flex's half-precision convolutions against ndarray's f32 on the same
/// (rounded) inputs, forward and first order.
///
/// Tolerance of the patched kernels (`conv2d_gemm::dispatch`: every backward op, and the
/// forward of the cases that are not [`flex_direct_forward`]): the inputs are exact in both
/// runs, flex widens them to f32, runs the f32 kernel and rounds the result once to the half
/// type, an error of at most the unit roundoff u of the result (f16 u = 2⁻¹¹ ≈ 4.9e-4, bf16
/// u = 2⁻⁸ ≈ 3.9e-3, relative). A forward with bias rounds twice (the convolution, then the
/// bias add), and so does the bias gradient (a sum over the plane, then over the batch), each
/// time at most u of a value no larger than the scale in these cases. 4u of the scale covers
/// both roundings with a factor two to spare for the f32 summation order (1e-6).
///
/// Flex's own small-channel forward kernel accumulates in the half type (observed: the 7×7
/// stem in f16 is off by 4.2u of the scale, beyond 4u): its rounding errors grow with the
/// window's K = cin/groups·kh·kw products, about as √K for these random signs, so its forward
/// gets 4u·√K (K = 147 for the stem: 48u).
#[test]
fn conv2d_matches_ndarray_in_f16_and_bf16() {
    for (dtype, u) in [(DType::F16, 2f32.powi(-11)), (DType::BF16, 2f32.powi(-8))] {
        let (mut worst, mut worst_direct) = (0f32, 0f32);
        for c in CASES {
            let f = conv_results_as::<F>(c, dtype, dtype);
            let n = conv_results_as::<N>(c, dtype, DType::F32);
            for ((what, a), (_, b)) in f.into_iter().zip(n) {
                let what = format!("{dtype:?} {c:?}: {what}");
                if what.ends_with("forward") && flex_direct_forward(c) {
                    let k = (c.cin / c.groups * c.kernel[0] * c.kernel[1]) as f32;
                    let d = assert_close_to(&what, a, b, 4.0 * u * k.sqrt());
                    worst_direct = worst_direct.max(d);
                } else {
                    worst = worst.max(assert_close_to(&what, a, b, 4.0 * u));
                }
            }
        }
        println!(
            "{dtype:?}: largest difference {worst:.2e} of the scale ({:.2} u) in the patched \
             kernels, {worst_direct:.2e} ({:.2} u) in flex's own small-channel forward",
            worst / u,
            worst_direct / u
        );
    }
}

/// Runs `f` on a rayon pool of `n` threads (flex and gemm size their work by the current
/// pool).
fn on_threads<T: Send>(n: usize, f: impl FnOnce() -> T + Send) -> T {
    rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build()
        .unwrap()
        .install(f)
}

/// Every flex kernel checked here, on one thread and on two: the image groups, the split
/// walks and the threaded loops may change the summation order but nothing else (the weight
/// gradient sums image groups, whose number follows the thread count).
#[test]
fn flex_kernels_give_the_same_results_on_one_and_two_threads() {
    let run = || {
        let mut out = Vec::new();
        for c in CASES {
            out.extend(conv_results::<F>(c));
            out.extend(second_order::<Flex>(c));
            let t = Case {
                cin: c.cout / c.groups * c.groups,
                cout: c.cin,
                ..c
            };
            if t.cin.is_multiple_of(t.groups) && t.cout.is_multiple_of(t.groups) {
                out.extend(conv_transpose_results::<F>(t, [0, 0]));
            }
        }
        out.extend(strided_binary::<Flex>());
        out.extend(gather_scatter::<F>());
        out
    };
    let one = on_threads(1, run);
    let two = on_threads(2, run);
    assert_eq!(one.len(), two.len());
    let (mut identical, mut worst) = (0, 0f32);
    for ((what, a), (_, b)) in one.iter().zip(&two) {
        if a.iter()
            .map(|v| v.to_bits())
            .eq(b.iter().map(|v| v.to_bits()))
        {
            identical += 1;
        } else {
            let d = assert_close_to(
                &format!("1 vs 2 threads: {what}"),
                a.clone(),
                b.clone(),
                1e-6,
            );
            println!("1 vs 2 threads: {what}: differs by {d:.2e} of its scale");
            worst = worst.max(d);
        }
    }
    println!(
        "1 vs 2 threads: {identical} of {} results bit-identical, the others within {worst:.2e} of their scale",
        one.len()
    );
}

#[test]
fn conv2d_matches_ndarray_to_second_order() {
    for c in CASES {
        let f = conv_results::<F>(c);
        let n = conv_results::<N>(c);
        for ((what, a), (_, b)) in f.into_iter().zip(n) {
            assert_close(&format!("{c:?}: {what}"), a, b);
        }
        let f = second_order::<Flex>(c);
        let n = second_order::<NdArray<f32>>(c);
        for ((what, a), (_, b)) in f.into_iter().zip(n) {
            assert_close(&format!("{c:?}: {what}"), a, b);
        }
    }
}

fn conv_transpose_results<B: burn::tensor::backend::AutodiffBackend>(
    c: Case,
    padding_out: [usize; 2],
) -> Vec<(String, Vec<f32>)> {
    // conv_transpose2d's weight is [channels_in, channels_out / groups, kh, kw].
    let x = tensor::<B, 4>([c.batch, c.cin, c.size[0], c.size[1]], 7).require_grad();
    let w = tensor::<B, 4>([c.cin, c.cout / c.groups, c.kernel[0], c.kernel[1]], 8).require_grad();
    let b = c.bias.then(|| tensor::<B, 1>([c.cout], 9).require_grad());
    let options = ConvTransposeOptions::new(c.stride, c.padding, padding_out, c.dilation, c.groups);
    let y = conv_transpose2d(x.clone(), w.clone(), b.clone(), options);
    let r = tensor::<B, 4>(y.dims(), 10);
    let grads = (y.clone() * r).sum().backward();
    let mut out = vec![
        ("transpose forward".to_string(), data(y)),
        (
            "transpose x grad".to_string(),
            data(x.grad(&grads).unwrap()),
        ),
        (
            "transpose w grad".to_string(),
            data(w.grad(&grads).unwrap()),
        ),
    ];
    if let Some(b) = &b {
        out.push(("transpose b grad".into(), data(b.grad(&grads).unwrap())));
    }
    out
}

#[test]
fn conv_transpose2d_matches_ndarray() {
    for c in CASES {
        let c = Case {
            cin: c.cout / c.groups * c.groups,
            cout: c.cin,
            ..c
        };
        // conv_transpose2d needs cin divisible by groups and cout = (cout/groups)·groups.
        if !c.cin.is_multiple_of(c.groups) || !c.cout.is_multiple_of(c.groups) {
            continue;
        }
        let outs: &[[usize; 2]] = if c.stride[0] > 1 && c.stride[1] > 1 {
            &[[0, 0], [1, 1]]
        } else {
            &[[0, 0]]
        };
        for &po in outs {
            let f = conv_transpose_results::<F>(c, po);
            let n = conv_transpose_results::<N>(c, po);
            for ((what, a), (_, b)) in f.into_iter().zip(n) {
                assert_close(&format!("{c:?} padding_out {po:?}: {what}"), a, b);
            }
        }
    }
}

/// Element-wise ops over strided and broadcast operands (the row-wise walks, the threaded
/// unary and scalar loops): every
/// layout a model step produces (transposes, permutations, slices, flips, per-channel and
/// per-row broadcasts on either side), large enough to take the multi-threaded path.
fn strided_binary<B: Backend>() -> Vec<(String, Vec<f32>)> {
    let x = tensor::<B, 4>([6, 8, 64, 48], 11);
    let c = tensor::<B, 4>([1, 8, 1, 1], 12);
    let r = tensor::<B, 4>([6, 8, 64, 1], 13);
    let y = tensor::<B, 4>([8, 6, 48, 64], 14);
    let cases: Vec<(&str, Tensor<B, 4>)> = vec![
        ("sub per channel", x.clone() - c.clone()),
        ("per channel div", c.clone() / (x.clone().abs() + 1.0)),
        ("mul per row", x.clone() * r.clone()),
        (
            "add transposed",
            x.clone() + y.clone().swap_dims(0, 1).swap_dims(2, 3),
        ),
        ("sub permuted", x.clone().permute([1, 0, 3, 2]) - y.clone()),
        (
            "mul sliced",
            x.clone().slice([1..5, 2..7, 3..33, 0..29])
                * y.clone()
                    .swap_dims(0, 1)
                    .swap_dims(2, 3)
                    .slice([1..5, 2..7, 3..33, 1..30]),
        ),
        (
            "div flipped",
            x.clone().flip([1, 3]) / (c.clone().abs() + 0.5),
        ),
        ("max pair broadcast", x.clone().max_pair(r.clone())),
        ("add contiguous, shared", x.clone() + x.clone().exp()),
        (
            "sub contiguous at an offset",
            x.clone().narrow(0, 1, 5) - y.clone().swap_dims(0, 1).narrow(0, 1, 5).swap_dims(2, 3),
        ),
        (
            "exp of a permutation",
            x.clone().permute([1, 0, 3, 2]).exp(),
        ),
        ("abs sqrt of a flip", x.clone().flip([0, 2]).abs().sqrt()),
        (
            "scalar ops, shared input",
            (x.clone() * 2.5 + 1.0) / 3.0 - 0.5,
        ),
        (
            "scalar ops, sliced",
            x.clone().slice([1..5, 2..7, 3..33, 0..29]).mul_scalar(-1.5),
        ),
        (
            "relu of a transposition",
            burn::tensor::activation::relu(x.clone().swap_dims(1, 2)),
        ),
        (
            "scalar ops, owned",
            tensor::<B, 4>([6, 8, 64, 48], 15)
                .mul_scalar(0.5)
                .add_scalar(2.0),
        ),
        (
            "contiguous copy of a permutation",
            x.clone()
                .permute([2, 0, 3, 1])
                .reshape([64, 6 * 48 * 8])
                .reshape([6, 8, 64, 48]),
        ),
    ];
    cases
        .into_iter()
        .map(|(name, t)| (name.to_string(), data(t)))
        .collect()
}

#[test]
fn strided_element_wise_ops_match_ndarray() {
    let f = strided_binary::<Flex>();
    let n = strided_binary::<NdArray<f32>>();
    for ((what, a), (_, b)) in f.into_iter().zip(n) {
        assert_close(what.as_str(), a, b);
    }
}

/// `gather` / `scatter_add` along every axis of 3-D to 6-D tensors (the max-pooling and
/// score paths), forward and through autodiff (max_dim's backward scatters).
fn gather_scatter<B: burn::tensor::backend::AutodiffBackend>() -> Vec<(String, Vec<f32>)> {
    let mut out = Vec::new();
    // 65,536 elements: large enough for the multi-threaded scatter.
    let x = tensor::<B, 6>([8, 16, 16, 2, 8, 2], 21).require_grad();
    for dim in 0..6 {
        let m = x.clone().max_dim(dim);
        let w = tensor::<B, 6>(m.dims(), 22 + dim as u64);
        let g = (m.clone() * w).sum().backward();
        out.push((format!("max_dim {dim}"), data(m)));
        out.push((format!("max_dim {dim} backward"), data(x.grad(&g).unwrap())));
    }
    let t = tensor::<B, 4>([7, 9, 11, 5], 30);
    for dim in 0..4 {
        let mut shape = t.dims();
        let d = shape[dim];
        shape[dim] = 3;
        let n: usize = shape.iter().product();
        let idx: Vec<i64> = (0..n).map(|i| ((i * 7 + 3) % d) as i64).collect();
        let idx = Tensor::<B, 4, Int>::from_data(TensorData::new(idx, shape), &Default::default());
        out.push((
            format!("gather {dim}"),
            data(t.clone().gather(dim, idx.clone())),
        ));
        let v = tensor::<B, 4>(shape, 31 + dim as u64);
        out.push((
            format!("scatter_add {dim}"),
            data(
                t.clone()
                    .scatter(dim, idx, v, burn::tensor::IndexingUpdateOp::Add),
            ),
        ));
    }
    out
}

#[test]
fn gather_and_scatter_match_ndarray() {
    let f = gather_scatter::<F>();
    let n = gather_scatter::<N>();
    for ((what, a), (_, b)) in f.into_iter().zip(n) {
        assert_close(what.as_str(), a, b);
    }
}
