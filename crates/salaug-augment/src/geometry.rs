//! Affine pixel maps and the one warp every geometric augmentation uses.
//!
//! # Convention (the only one in this crate)
//! Pixel coordinates are `(x, y)` = (column, row) of pixel **centres**: the top-left pixel is
//! `(0, 0)`, the bottom-right `(W − 1, H − 1)`, `x` grows to the right and `y` downwards. An
//! [`Affine`] is the **forward** map of an augmentation: the content at pixel `p` of the
//! original lands at `A·p` in the augmented image. [`warp`] builds the augmented image by
//! sampling the original at `A⁻¹·q` for every output pixel `q`, bilinearly, with zeros outside
//! the frame.
//!
//! Under the hood this is burn's `affine_grid_2d` + `grid_sample_2d` with
//! `align_corners = true` (normalised −1 is the centre of pixel 0, +1 the centre of pixel
//! `W − 1`), which is why pixel centres map exactly: a flip or an integer translation samples
//! exactly at pixel centres. Both ops are composites of primitive tensor ops under autodiff,
//! so a warp of a saliency map is twice differentiable.

use burn::prelude::*;
use burn::tensor::grid::affine_grid_2d;
use burn::tensor::ops::{GridSampleOptions, GridSamplePaddingMode, InterpolateMode};

/// A 2-D affine map of pixel coordinates, `[[a, b, c], [d, e, f]]` (last row `0 0 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Affine(pub [[f64; 3]; 2]);

impl Affine {
    /// The identity.
    pub const IDENTITY: Affine = Affine([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);

    /// `p ↦ p + (tx, ty)`.
    pub fn translation(tx: f64, ty: f64) -> Self {
        Affine([[1.0, 0.0, tx], [0.0, 1.0, ty]])
    }

    /// Scaling by `(sx, sy)` about the point `(cx, cy)`.
    pub fn scale_about(sx: f64, sy: f64, cx: f64, cy: f64) -> Self {
        Affine([[sx, 0.0, cx - sx * cx], [0.0, sy, cy - sy * cy]])
    }

    /// Rotation of the content by `degrees` **counter-clockwise as displayed** (y pointing
    /// down), about `(cx, cy)`: a point right of the centre moves up.
    pub fn rotation_about(degrees: f64, cx: f64, cy: f64) -> Self {
        let (s, c) = degrees.to_radians().sin_cos();
        // x' = c·x + s·y, y' = −s·x + c·y relative to the centre.
        Affine([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])
    }

    /// Shear `x' = x + k·(y − cy)` (horizontal) about the row `cy`.
    pub fn shear_x(k: f64, cy: f64) -> Self {
        Affine([[1.0, k, -k * cy], [0.0, 1.0, 0.0]])
    }

    /// Shear `y' = y + k·(x − cx)` (vertical) about the column `cx`.
    pub fn shear_y(k: f64, cx: f64) -> Self {
        Affine([[1.0, 0.0, 0.0], [k, 1.0, -k * cx]])
    }

    /// Mirror `x ↦ W − 1 − x` of an image `width` pixels wide.
    pub fn flip_x(width: usize) -> Self {
        Affine([[-1.0, 0.0, width as f64 - 1.0], [0.0, 1.0, 0.0]])
    }

    /// Mirror `y ↦ H − 1 − y` of an image `height` pixels high.
    pub fn flip_y(height: usize) -> Self {
        Affine([[1.0, 0.0, 0.0], [0.0, -1.0, height as f64 - 1.0]])
    }

    /// `self` after `first`: `p ↦ self(first(p))`.
    pub fn after(&self, first: &Affine) -> Affine {
        let (a, b) = (self.0, first.0);
        let mut m = [[0.0; 3]; 2];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = a[i][0] * b[0][j] + a[i][1] * b[1][j] + if j == 2 { a[i][2] } else { 0.0 };
            }
        }
        Affine(m)
    }

    /// The inverse map.
    ///
    /// # Panics
    /// If the map is singular (no augmentation of this crate produces one).
    pub fn inverse(&self) -> Affine {
        let [[a, b, c], [d, e, f]] = self.0;
        let det = a * e - b * d;
        assert!(det.abs() > 1e-12, "singular affine map {self:?}");
        let (ia, ib, id, ie) = (e / det, -b / det, -d / det, a / det);
        Affine([[ia, ib, -(ia * c + ib * f)], [id, ie, -(id * c + ie * f)]])
    }

    /// Where the pixel `(x, y)` goes.
    pub fn apply(&self, x: f64, y: f64) -> (f64, f64) {
        let [[a, b, c], [d, e, f]] = self.0;
        (a * x + b * y + c, d * x + e * y + f)
    }

    /// Whether this is the identity (up to 1e-12).
    pub fn is_identity(&self) -> bool {
        self.0
            .iter()
            .flatten()
            .zip(Affine::IDENTITY.0.iter().flatten())
            .all(|(a, b)| (a - b).abs() < 1e-12)
    }

    /// The same map in the normalised coordinates of `affine_grid_2d`
    /// (`u = 2x/(W−1) − 1`, `v = 2y/(H−1) − 1`).
    fn normalised(&self, [h, w]: [usize; 2]) -> [[f64; 3]; 2] {
        let to_norm = Affine([
            [2.0 / (w.max(2) - 1) as f64, 0.0, -1.0],
            [0.0, 2.0 / (h.max(2) - 1) as f64, -1.0],
        ]);
        to_norm.after(self).after(&to_norm.inverse()).0
    }
}

/// Warps each image of `images` by its forward map: `out(q) = images(A⁻¹·q)`, bilinear, zeros
/// outside the frame. Identity maps leave their image untouched (bit-exact).
///
/// # Shapes
/// - `images`: `[batch, channels, h, w]`, `forward.len() == batch`
/// - output: same as `images`
pub fn warp<B: Backend>(images: Tensor<B, 4>, forward: &[Affine]) -> Tensor<B, 4> {
    let [n, c, h, w] = images.dims();
    assert_eq!(forward.len(), n, "one affine map per image");
    if forward.iter().all(Affine::is_identity) {
        return images;
    }
    let device = images.device();
    let theta: Vec<f64> = forward
        .iter()
        .flat_map(|a| a.inverse().normalised([h, w]).into_iter().flatten())
        .collect();
    let theta = Tensor::<B, 3>::from_data(
        TensorData::new(theta, [n, 2, 3]).convert::<B::FloatElem>(),
        &device,
    );
    let grid = affine_grid_2d(theta, [n, c, h, w]);
    let warped = images.clone().grid_sample_2d(
        grid,
        GridSampleOptions::new(InterpolateMode::Bilinear)
            .with_padding_mode(GridSamplePaddingMode::Zeros)
            .with_align_corners(true),
    );
    // Keep identity images exact (the grid's round-off would blur them by ~1e-7).
    let keep: Vec<bool> = forward.iter().map(Affine::is_identity).collect();
    if keep.iter().any(|k| *k) {
        select_per_sample(&keep, images, warped)
    } else {
        warped
    }
}

/// The validity mask of [`warp`]: 1 where the output pixel samples the original frame with
/// all four bilinear neighbours inside it, else 0. A constant: it carries no gradient.
///
/// # Shapes
/// - output: `[batch, 1, h, w]`
pub fn valid_mask<B: Backend>(
    forward: &[Affine],
    [h, w]: [usize; 2],
    device: &B::Device,
) -> Tensor<B, 4> {
    let ones = Tensor::<B, 4>::ones([forward.len(), 1, h, w], device);
    warp(ones, forward).greater_equal_elem(1.0 - 1e-4).float()
}

/// Per image: `when_true[i]` where `choose[i]`, else `when_false[i]`.
pub fn select_per_sample<B: Backend>(
    choose: &[bool],
    when_true: Tensor<B, 4>,
    when_false: Tensor<B, 4>,
) -> Tensor<B, 4> {
    let [n, c, h, w] = when_true.dims();
    assert_eq!(choose.len(), n, "one choice per image");
    if choose.iter().all(|c| *c) {
        return when_true;
    }
    if !choose.iter().any(|c| *c) {
        return when_false;
    }
    let device = when_true.device();
    let mask = Tensor::<B, 1, Bool>::from_data(TensorData::new(choose.to_vec(), [n]), &device)
        .reshape([n, 1, 1, 1])
        .expand([n, c, h, w]);
    when_false.mask_where(mask, when_true)
}

/// A `[batch, 1, 1, 1]` tensor of per-image factors.
pub fn per_sample<B: Backend>(values: &[f64], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [values.len(), 1, 1, 1]).convert::<B::FloatElem>(),
        device,
    )
}

/// Image `i` of the output is image `index[i]` of `x` (the identity order is returned as is).
pub fn take<B: Backend>(x: Tensor<B, 4>, index: &[usize]) -> Tensor<B, 4> {
    if index.iter().enumerate().all(|(i, &j)| i == j) && index.len() == x.dims()[0] {
        return x;
    }
    let device = x.device();
    let idx: Vec<i64> = index.iter().map(|&i| i as i64).collect();
    x.select(
        0,
        Tensor::<B, 1, Int>::from_data(TensorData::new(idx, [index.len()]), &device),
    )
}

/// A `[batch, 1, h, w]` tensor of per-pixel factors given row-major.
pub fn per_pixel<B: Backend>(
    values: Vec<f64>,
    [n, h, w]: [usize; 3],
    device: &B::Device,
) -> Tensor<B, 4> {
    Tensor::from_data(
        TensorData::new(values, [n, 1, h, w]).convert::<B::FloatElem>(),
        device,
    )
}

/// Runs `f(image_index, plane)` on the host over every `[h, w]` plane (each channel of each
/// image) and uploads the result: for histogram operations, which are not tensor ops. Only
/// augmented images go through it, and they need no gradient.
pub fn map_planes<B: Backend>(
    images: Tensor<B, 4>,
    mut f: impl FnMut(usize, &mut [f32]),
) -> Tensor<B, 4> {
    let [n, c, h, w] = images.dims();
    let device = images.device();
    let mut values = images
        .into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("float image data");
    for (k, plane) in values.chunks_mut(h * w).enumerate() {
        f(k / c, plane);
    }
    Tensor::from_data(TensorData::new(values, [n, c, h, w]), &device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_and_composition() {
        let a = Affine::rotation_about(17.0, 3.0, 4.0).after(&Affine::translation(1.0, -2.0));
        let id = a.after(&a.inverse());
        assert!(id.is_identity(), "{id:?}");
        let (x, y) = a.apply(5.0, 6.0);
        let (bx, by) = a.inverse().apply(x, y);
        assert!((bx - 5.0).abs() < 1e-12 && (by - 6.0).abs() < 1e-12);
    }

    #[test]
    fn rotation_turns_counter_clockwise_as_displayed() {
        // A point right of the centre moves up (smaller y) by a quarter turn.
        let (x, y) = Affine::rotation_about(90.0, 5.0, 5.0).apply(8.0, 5.0);
        assert!(
            (x - 5.0).abs() < 1e-12 && (y - 2.0).abs() < 1e-12,
            "({x}, {y})"
        );
    }

    #[test]
    fn normalised_flip_is_a_sign_change() {
        let n = Affine::flip_x(7).normalised([5, 7]);
        assert_eq!(n, [[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]);
    }
}
