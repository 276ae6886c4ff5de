//! Linear resampling of images and maps, written as matrix products so that it is
//! differentiable to any order (burn 0.21's `interpolate` and pooling modules are not twice
//! differentiable).

use burn::tensor::{backend::Backend, Tensor, TensorData};

/// Bilinear resize with half-pixel centres (PyTorch's `interpolate(mode="bilinear",
/// align_corners=False)`, OpenCV's `resize`), written as two products with constant
/// interpolation matrices, `R_h · x · R_wᵀ`, which are differentiable to any order (burn
/// 0.21's `interpolate` is not twice differentiable).
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - output: `[batch, channels, height, width]`
pub fn resize_bilinear<B: Backend>(x: Tensor<B, 4>, [height, width]: [usize; 2]) -> Tensor<B, 4> {
    let [_, _, h, w] = x.dims();
    if (h, w) == (height, width) {
        return x;
    }
    let device = x.device();
    let rows = interpolation_matrix::<B>(h, height, &device);
    let cols = interpolation_matrix::<B>(w, width, &device);
    separable(x, rows, cols)
}

/// `x` with every channel's rows mixed by `rows` and its columns by `cols`:
/// `out[.., i, j] = Σ_{r, s} rows[r, i] · x[.., r, s] · cols[s, j]`, two matrix products,
/// differentiable to any order. Resizes and pools that are linear and act on rows and columns
/// apart ([`resize_bilinear`], `salaug_models::ops::adaptive_avg_pool2d`) are this with
/// constant matrices.
///
/// # Shapes
/// - `x`: `[batch, channels, h, w]`
/// - `rows`: `[h, out_h]`, `cols`: `[w, out_w]`
/// - output: `[batch, channels, out_h, out_w]`
pub fn separable<B: Backend>(
    x: Tensor<B, 4>,
    rows: Tensor<B, 2>,
    cols: Tensor<B, 2>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = x.dims();
    let [_, out_h] = rows.dims();
    let [_, out_w] = cols.dims();
    let x = x.reshape([n * c * h, w]).matmul(cols); // [n·c·h, out_w]
    let x = x.reshape([n, c, h, out_w]).swap_dims(2, 3); // [n, c, out_w, h]
    let x = x.reshape([n * c * out_w, h]).matmul(rows); // [n·c·out_w, out_h]
    x.reshape([n, c, out_w, out_h]).swap_dims(2, 3)
}

/// `[len, out]` matrix whose column `i` holds the two weights of output `i`: source position
/// `max(0, (i + ½)·len/out − ½)`, its floor and the next sample (clamped at the edge).
fn interpolation_matrix<B: Backend>(len: usize, out: usize, device: &B::Device) -> Tensor<B, 2> {
    let mut m = vec![0.0f64; len * out];
    for i in 0..out {
        let src = ((i as f64 + 0.5) * len as f64 / out as f64 - 0.5).max(0.0);
        let lo = (src.floor() as usize).min(len - 1);
        let hi = (lo + 1).min(len - 1);
        let frac = src - lo as f64;
        m[lo * out + i] += 1.0 - frac;
        m[hi * out + i] += frac;
    }
    Tensor::from_data(
        TensorData::new(m, [len, out]).convert::<B::FloatElem>(),
        device,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{tensor4, values, TB};

    #[test]
    fn bilinear_resize_matches_pytorch_values() {
        // torch.nn.functional.interpolate(torch.tensor([[[[1., 2.], [3., 4.]]]]), size=(4, 4),
        // mode="bilinear", align_corners=False)
        let x = tensor4::<TB>(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]);
        let expected = [
            1.0, 1.25, 1.75, 2.0, //
            1.5, 1.75, 2.25, 2.5, //
            2.5, 2.75, 3.25, 3.5, //
            3.0, 3.25, 3.75, 4.0,
        ];
        let got = values(resize_bilinear(x, [4, 4]));
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
        // Down to 1×1: the centre, the mean of the four; to 2×3: rows kept, columns mixed.
        let x = tensor4::<TB>(&[1.0, 2.0, 3.0, 4.0], [1, 1, 2, 2]);
        assert_eq!(values(resize_bilinear(x.clone(), [1, 1])), [2.5]);
        let got = values(resize_bilinear(x, [2, 3]));
        let expected = [1.0, 1.5, 2.0, 3.0, 3.5, 4.0];
        for (g, e) in got.iter().zip(expected) {
            assert!((g - e).abs() < 1e-12, "{got:?}");
        }
    }
}
