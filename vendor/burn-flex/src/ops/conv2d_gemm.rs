//! 2-D convolution, its input gradient and its weight gradient as im2col / col2im + GEMM on
//! NCHW data (salaug patch, see `PATCHES.md`).
//!
//! Burn's default `conv2d_x_backward` is a transposed convolution whose col2im runs serially,
//! and its default `conv2d_weight_backward` is a convolution of `swap_dims(0, 1)` views whose
//! "kernel" is the whole output plane (one thin GEMM per input channel). Under nested autodiff
//! (second-order training) every convolution of a model becomes about six convolution-sized
//! operations, all of which reduce to the three kernels of this module:
//!
//! - [`conv2d`]: `y = conv(x, w)`: per image group, `Y[cout, cols] = W[cout, k] · col(x)[k, cols]`;
//! - [`conv2d_x_grad`]: `dx = convᵀ(dy, w)` (also the forward of `conv_transpose2d`):
//!   `col = Wᵀ · dY`, then col2im;
//! - [`conv2d_w_grad`]: `dw = Σ_n dY_n · col(x_n)ᵀ` (also `conv_transpose2d`'s weight gradient).
//!
//! Images are processed in groups whose im2col matrices sit side by side, so that layers with
//! small planes (ResNet's last stage: 4×4) still get GEMMs with a few hundred columns; groups
//! run in parallel (rayon), each GEMM single-threaded; a single group lets the GEMM itself
//! fan out. `groups > 1` (grouped convolution) runs one GEMM per channel group.
//! f32 and f64 are native; f16 / bf16 go through f32.

use alloc::vec;
use alloc::vec::Vec;
use burn_backend::DType;
use burn_std::{Bytes, Shape};

use crate::{FlexTensor, Layout};

/// Element types with a native kernel.
pub(crate) trait ConvElem:
    burn_backend::Element
    + bytemuck::Pod
    + Copy
    + Send
    + Sync
    + Default
    + core::ops::AddAssign
    + 'static
{
    const ONE: Self;
    const DTYPE: DType;
}
impl ConvElem for f32 {
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F32;
}
impl ConvElem for f64 {
    const ONE: Self = 1.0;
    const DTYPE: DType = DType::F64;
}

/// The geometry of one forward convolution `x [n, cin, h, w] ⋆ w [cout, cin/groups, kh, kw]
/// → y [n, cout, oh, ow]`; the three kernels share it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv2dGeometry {
    /// Images.
    pub batch: usize,
    /// Channels of `x`.
    pub in_channels: usize,
    /// Height and width of `x`.
    pub in_size: [usize; 2],
    /// Channels of `y`.
    pub out_channels: usize,
    /// Height and width of `y`.
    pub out_size: [usize; 2],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding (each side).
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Channel groups.
    pub groups: usize,
}

impl Conv2dGeometry {
    fn cin_g(&self) -> usize {
        self.in_channels / self.groups
    }
    fn cout_g(&self) -> usize {
        self.out_channels / self.groups
    }
    /// Rows of an im2col matrix: `cin_g · kh · kw`.
    fn k(&self) -> usize {
        self.cin_g() * self.kernel[0] * self.kernel[1]
    }
    /// Output pixels per image.
    fn p(&self) -> usize {
        self.out_size[0] * self.out_size[1]
    }
    /// Input pixels per image.
    fn q(&self) -> usize {
        self.in_size[0] * self.in_size[1]
    }
    /// A 1×1, stride-1, unpadded convolution: im2col is the image itself.
    fn pointwise(&self) -> bool {
        self.kernel == [1, 1]
            && self.stride == [1, 1]
            && self.padding == [0, 0]
            && self.out_size == self.in_size
    }
    fn check(&self) {
        assert!(self.groups >= 1, "conv2d: groups must be at least 1");
        assert!(
            self.in_channels % self.groups == 0 && self.out_channels % self.groups == 0,
            "conv2d: channels ({}, {}) not divisible by groups {}",
            self.in_channels,
            self.out_channels,
            self.groups
        );
        assert!(
            self.stride[0] >= 1
                && self.stride[1] >= 1
                && self.dilation[0] >= 1
                && self.dilation[1] >= 1,
            "conv2d: stride and dilation must be at least 1"
        );
    }

    /// Images per group and the number of groups: at least `TARGET_COLS` GEMM columns per
    /// group where the batch allows, and at least two groups per thread where that keeps
    /// `MIN_COLS` columns.
    fn image_groups(&self) -> (usize, usize) {
        const TARGET_COLS: usize = 1024;
        const MIN_COLS: usize = 256;
        let p = self.p().max(1);
        let n = self.batch.max(1);
        let mut per = TARGET_COLS.div_ceil(p).clamp(1, n);
        let want = 2 * threads();
        while per > 1 && n.div_ceil(per) < want && (per / 2) * p >= MIN_COLS {
            per /= 2;
        }
        (per, n.div_ceil(per))
    }
}

fn threads() -> usize {
    #[cfg(feature = "rayon")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "rayon"))]
    {
        1
    }
}

/// Runs `f(group)` for every group, in parallel where there is more than one.
fn for_groups(count: usize, f: impl Fn(usize) + Send + Sync) {
    #[cfg(feature = "rayon")]
    {
        if count > 1 {
            use rayon::prelude::*;
            (0..count).into_par_iter().for_each(f);
            return;
        }
    }
    (0..count).for_each(f)
}

/// GEMM parallelism when a single group does all the work.
fn gemm_parallelism(groups: usize) -> gemm::Parallelism {
    #[cfg(feature = "rayon")]
    {
        if groups == 1 && threads() > 1 {
            return gemm::Parallelism::Rayon(0);
        }
    }
    let _ = groups;
    gemm::Parallelism::None
}

/// A raw pointer shared by tasks that write disjoint parts of one buffer.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}
impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the whole `Send + Sync` wrapper).
    fn at(self, offset: usize) -> *mut T {
        unsafe { self.0.add(offset) }
    }
}

/// Runs `f` with a scratch buffer of `len` elements whose contents are unspecified (earlier
/// scratch values): callers write every element they read. One buffer per thread, kept
/// between calls, so that the im2col matrices do not cost an allocation (and, above glibc's
/// mmap threshold, fresh zeroed pages) per image group.
fn with_scratch<T: ConvElem, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    #[cfg(feature = "std")]
    {
        use core::cell::RefCell;
        std::thread_local! {
            static SCRATCH: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
        }
        let words = (len * core::mem::size_of::<T>()).div_ceil(8);
        let mut f = Some(f);
        let done = SCRATCH.with(|cell| {
            // A nested use on the same thread (rayon may run another task while this one
            // waits) falls back to a fresh buffer.
            let mut buf = cell.try_borrow_mut().ok()?;
            if buf.len() < words {
                *buf = vec![0u64; words];
            }
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut buf[..words]);
            let elems: &mut [T] =
                bytemuck::cast_slice_mut(&mut bytes[..len * core::mem::size_of::<T>()]);
            Some((f.take().unwrap())(elems))
        });
        if let Some(r) = done {
            return r;
        }
        return (f.take().unwrap())(&mut vec![T::default(); len]);
    }
    #[cfg(not(feature = "std"))]
    f(&mut vec![T::default(); len])
}

/// `dst[m×n] (+)= lhs[m×k] · rhs[k×n]`, all row-major with the given row strides, except that
/// `lhs_t` reads lhs as the transpose of a row-major `[k×m]` matrix with row stride `lhs_ld`.
#[allow(clippy::too_many_arguments)]
unsafe fn matmul<T: ConvElem>(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut T,
    dst_ld: usize,
    accumulate: bool,
    lhs: *const T,
    lhs_ld: usize,
    lhs_t: bool,
    rhs: *const T,
    rhs_ld: usize,
    rhs_t: bool,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    let (lhs_cs, lhs_rs) = if lhs_t {
        (lhs_ld as isize, 1)
    } else {
        (1, lhs_ld as isize)
    };
    let (rhs_cs, rhs_rs) = if rhs_t {
        (rhs_ld as isize, 1)
    } else {
        (1, rhs_ld as isize)
    };
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                for c in 0..n {
                    unsafe { *dst.add(r * dst_ld + c) = T::default() };
                }
            }
        }
        return;
    }
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_ld as isize,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        )
    }
}

/// The range of output columns `o` whose input column `o·s + off` lies in `[0, len)`.
#[inline]
fn valid_range(out: usize, stride: usize, off: isize, len: usize) -> (usize, usize) {
    // o·s + off ≥ 0  ⇔  o ≥ ceil(−off / s)
    let lo = if off >= 0 {
        0
    } else {
        ((-off) as usize).div_ceil(stride)
    };
    // o·s + off ≤ len − 1  ⇔  o ≤ floor((len − 1 − off) / s)
    let hi = if (len as isize) - 1 - off < 0 {
        0
    } else {
        (((len as isize) - 1 - off) as usize) / stride + 1
    };
    (lo.min(out), hi.min(out).max(lo.min(out)))
}

/// Writes the im2col matrix of one image's channel group (`x`: `cin_g × h × w`) into the
/// columns `col_off .. col_off + p` of `col` (`k` rows, row stride `ld`).
fn im2col<T: ConvElem>(g: &Conv2dGeometry, x: &[T], col: &mut [T], ld: usize, col_off: usize) {
    let [ih, iw] = g.in_size;
    let [oh, ow] = g.out_size;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let p = oh * ow;
    for c in 0..g.cin_g() {
        let xc = &x[c * ih * iw..(c + 1) * ih * iw];
        for a in 0..kh {
            let (ylo, yhi) = valid_range(oh, sh, (a * dh) as isize - ph as isize, ih);
            for b in 0..kw {
                let row = (c * kh + a) * kw + b;
                let dst = &mut col[row * ld + col_off..row * ld + col_off + p];
                let xoff = (b * dw) as isize - pw as isize;
                let (xlo, xhi) = valid_range(ow, sw, xoff, iw);
                dst[..ylo * ow].fill(T::default());
                dst[yhi * ow..].fill(T::default());
                for oy in ylo..yhi {
                    let iy = oy * sh + a * dh - ph;
                    let src = &xc[iy * iw..(iy + 1) * iw];
                    let d = &mut dst[oy * ow..(oy + 1) * ow];
                    d[..xlo].fill(T::default());
                    d[xhi..].fill(T::default());
                    if xlo < xhi {
                        let start = (xlo * sw) as isize + xoff;
                        if sw == 1 {
                            d[xlo..xhi].copy_from_slice(
                                &src[start as usize..start as usize + (xhi - xlo)],
                            );
                        } else {
                            for (v, &x) in d[xlo..xhi]
                                .iter_mut()
                                .zip(src[start as usize..].iter().step_by(sw))
                            {
                                *v = x;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Adds the columns `col_off .. col_off + p` of `col` back into one image's channel group
/// (`dx`: `cin_g × h × w`): the adjoint of [`im2col`].
fn col2im<T: ConvElem>(g: &Conv2dGeometry, col: &[T], ld: usize, col_off: usize, dx: &mut [T]) {
    let [ih, iw] = g.in_size;
    let [oh, ow] = g.out_size;
    let [kh, kw] = g.kernel;
    let [sh, sw] = g.stride;
    let [ph, pw] = g.padding;
    let [dh, dw] = g.dilation;
    let p = oh * ow;
    for c in 0..g.cin_g() {
        let xc = &mut dx[c * ih * iw..(c + 1) * ih * iw];
        for a in 0..kh {
            let (ylo, yhi) = valid_range(oh, sh, (a * dh) as isize - ph as isize, ih);
            for b in 0..kw {
                let row = (c * kh + a) * kw + b;
                let src = &col[row * ld + col_off..row * ld + col_off + p];
                let xoff = (b * dw) as isize - pw as isize;
                let (xlo, xhi) = valid_range(ow, sw, xoff, iw);
                if xlo >= xhi {
                    continue;
                }
                for oy in ylo..yhi {
                    let iy = oy * sh + a * dh - ph;
                    let d = &mut xc[iy * iw..(iy + 1) * iw];
                    let s = &src[oy * ow + xlo..oy * ow + xhi];
                    let start = ((xlo * sw) as isize + xoff) as usize;
                    if sw == 1 {
                        for (t, &v) in d[start..start + s.len()].iter_mut().zip(s) {
                            *t += v;
                        }
                    } else {
                        for (t, &v) in d[start..].iter_mut().step_by(sw).zip(s) {
                            *t += v;
                        }
                    }
                }
            }
        }
    }
}

/// Copies `rows × p` blocks of `count` images (image stride `img_stride`, starting at
/// `src[first_off]`) side by side into `dst` (`rows × count·p`).
fn gather_rows<T: ConvElem>(
    src: &[T],
    first_off: usize,
    img_stride: usize,
    count: usize,
    rows: usize,
    p: usize,
    dst: &mut [T],
) {
    let ld = count * p;
    for j in 0..count {
        let base = first_off + j * img_stride;
        for r in 0..rows {
            dst[r * ld + j * p..r * ld + (j + 1) * p]
                .copy_from_slice(&src[base + r * p..base + (r + 1) * p]);
        }
    }
}

fn contiguous_vec<T: ConvElem>(t: &FlexTensor) -> FlexTensor {
    let t = t.to_contiguous();
    debug_assert_eq!(t.dtype(), T::DTYPE);
    t
}

fn output<T: ConvElem>(data: Vec<T>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(Shape::from(shape.to_vec())),
        T::DTYPE,
    )
}

/// `y = conv(x, w) + bias`.
pub(crate) fn conv2d<T: ConvElem>(
    x: &FlexTensor,
    w: &FlexTensor,
    bias: Option<&FlexTensor>,
    g: &Conv2dGeometry,
) -> FlexTensor {
    g.check();
    let x = contiguous_vec::<T>(x);
    let w = contiguous_vec::<T>(w);
    let xs: &[T] = x.storage();
    let ws: &[T] = w.storage();
    let (cin_g, cout_g, k, p, q) = (g.cin_g(), g.cout_g(), g.k(), g.p(), g.q());
    let len = g.batch * g.out_channels * p;
    let shape = [g.batch, g.out_channels, g.out_size[0], g.out_size[1]];
    let mut y: Vec<T> = Vec::with_capacity(len);
    let accumulate = bias.is_some();
    if let Some(b) = bias {
        let b = contiguous_vec::<T>(b);
        let bs: &[T] = b.storage();
        for i in 0..g.batch * g.out_channels {
            y.extend(core::iter::repeat_n(bs[i % g.out_channels], p));
        }
    }
    if len == 0 {
        unsafe { y.set_len(len) };
        return output(y, shape);
    }
    let (per, count) = g.image_groups();
    let par = gemm_parallelism(count);
    let yp = Shared(y.as_mut_ptr());
    for_groups(count, |gi| {
        let n0 = gi * per;
        let cnt = per.min(g.batch - n0);
        let cols = cnt * p;
        let direct = cnt == 1;
        let col_len = if g.pointwise() && direct { 0 } else { k * cols };
        let out_len = if direct { 0 } else { cout_g * cols };
        with_scratch::<T, _>(col_len + out_len, |scratch| {
            let (col, out) = scratch.split_at_mut(col_len);
            for cg in 0..g.groups {
                let rhs: *const T = if g.pointwise() && direct {
                    xs[n0 * g.in_channels * q + cg * cin_g * q..].as_ptr()
                } else {
                    for j in 0..cnt {
                        let xo = (n0 + j) * g.in_channels * q + cg * cin_g * q;
                        im2col(g, &xs[xo..xo + cin_g * q], col, cols, j * p);
                    }
                    col.as_ptr()
                };
                let lhs = ws[cg * cout_g * k..].as_ptr();
                if direct {
                    let dst = yp.at(n0 * g.out_channels * p + cg * cout_g * p);
                    unsafe {
                        matmul(
                            cout_g, p, k, dst, p, accumulate, lhs, k, false, rhs, cols, false, par,
                        )
                    };
                    continue;
                }
                unsafe {
                    matmul(
                        cout_g,
                        cols,
                        k,
                        out.as_mut_ptr(),
                        cols,
                        false,
                        lhs,
                        k,
                        false,
                        rhs,
                        cols,
                        false,
                        par,
                    )
                };
                for j in 0..cnt {
                    for o in 0..cout_g {
                        let dst = yp.at((n0 + j) * g.out_channels * p + (cg * cout_g + o) * p);
                        let src = &out[o * cols + j * p..o * cols + (j + 1) * p];
                        if accumulate {
                            for (i, &v) in src.iter().enumerate() {
                                unsafe { *dst.add(i) += v };
                            }
                        } else {
                            unsafe { core::ptr::copy_nonoverlapping(src.as_ptr(), dst, p) };
                        }
                    }
                }
            }
        })
    });
    // SAFETY: every element was written above (bias fill, or GEMM / copy of every plane).
    unsafe { y.set_len(len) };
    output(y, shape)
}

/// `dx = convᵀ(dy, w)`: the gradient of [`conv2d`] with respect to `x`, shape
/// `[batch, in_channels, in_size]`. Input pixels no kernel tap reaches get zero.
pub(crate) fn conv2d_x_grad<T: ConvElem>(
    dy: &FlexTensor,
    w: &FlexTensor,
    g: &Conv2dGeometry,
) -> FlexTensor {
    g.check();
    let dy = contiguous_vec::<T>(dy);
    let w = contiguous_vec::<T>(w);
    let dys: &[T] = dy.storage();
    let ws: &[T] = w.storage();
    let (cin_g, cout_g, k, p, q) = (g.cin_g(), g.cout_g(), g.k(), g.p(), g.q());
    let shape = [g.batch, g.in_channels, g.in_size[0], g.in_size[1]];
    let mut dx = vec![T::default(); g.batch * g.in_channels * q];
    if dx.is_empty() || p == 0 {
        return output(dx, shape);
    }
    let (per, count) = g.image_groups();
    let par = gemm_parallelism(count);
    let dxp = Shared(dx.as_mut_ptr());
    for_groups(count, |gi| {
        let n0 = gi * per;
        let cnt = per.min(g.batch - n0);
        let cols = cnt * p;
        let direct = cnt == 1;
        let rhs_len = if direct { 0 } else { cout_g * cols };
        let col_len = if g.pointwise() && direct { 0 } else { k * cols };
        with_scratch::<T, _>(rhs_len + col_len, |scratch| {
            let (rhs_buf, col) = scratch.split_at_mut(rhs_len);
            for cg in 0..g.groups {
                let rhs: *const T = if direct {
                    dys[n0 * g.out_channels * p + cg * cout_g * p..].as_ptr()
                } else {
                    gather_rows(
                        dys,
                        n0 * g.out_channels * p + cg * cout_g * p,
                        g.out_channels * p,
                        cnt,
                        cout_g,
                        p,
                        rhs_buf,
                    );
                    rhs_buf.as_ptr()
                };
                // lhs = W_gᵀ: W_g is [cout_g × k] row-major.
                let lhs = ws[cg * cout_g * k..].as_ptr();
                if g.pointwise() && direct {
                    let dst = dxp.at(n0 * g.in_channels * q + cg * cin_g * q);
                    unsafe {
                        matmul(
                            k, p, cout_g, dst, p, false, lhs, k, true, rhs, cols, false, par,
                        )
                    };
                    continue;
                }
                unsafe {
                    matmul(
                        k,
                        cols,
                        cout_g,
                        col.as_mut_ptr(),
                        cols,
                        false,
                        lhs,
                        k,
                        true,
                        rhs,
                        cols,
                        false,
                        par,
                    )
                };
                for j in 0..cnt {
                    let off = (n0 + j) * g.in_channels * q + cg * cin_g * q;
                    // SAFETY: image groups write disjoint images of `dx`.
                    let dst = unsafe { core::slice::from_raw_parts_mut(dxp.at(off), cin_g * q) };
                    col2im(g, col, cols, j * p, dst);
                }
            }
        })
    });
    output(dx, shape)
}

/// `dw = Σ_n dy_n · im2col(x_n)ᵀ`: the gradient of [`conv2d`] with respect to `w`, shape
/// `[out_channels, in_channels / groups, kh, kw]`.
///
/// Image groups are dealt to at most one task per thread in a fixed order; each task
/// accumulates its own partial gradient, and the partials are summed in task order, so the
/// result does not depend on scheduling.
pub(crate) fn conv2d_w_grad<T: ConvElem>(
    x: &FlexTensor,
    dy: &FlexTensor,
    g: &Conv2dGeometry,
) -> FlexTensor {
    g.check();
    let x = contiguous_vec::<T>(x);
    let dy = contiguous_vec::<T>(dy);
    let xs: &[T] = x.storage();
    let dys: &[T] = dy.storage();
    let (cin_g, cout_g, k, p, q) = (g.cin_g(), g.cout_g(), g.k(), g.p(), g.q());
    let wlen = g.out_channels * k;
    let shape = [g.out_channels, cin_g, g.kernel[0], g.kernel[1]];
    if g.batch == 0 || p == 0 || wlen == 0 {
        return output(vec![T::default(); wlen], shape);
    }
    let (per, count) = g.image_groups();
    let tasks = count.min(threads()).max(1);
    let par = gemm_parallelism(tasks);
    // Accumulates image group `gi` into `dw` (overwriting it when `first`).
    let group = |gi: usize, dw: *mut T, first: bool| {
        let n0 = gi * per;
        let cnt = per.min(g.batch - n0);
        let cols = cnt * p;
        let direct = cnt == 1;
        let lhs_len = if direct { 0 } else { cout_g * cols };
        let col_len = if g.pointwise() && direct { 0 } else { k * cols };
        with_scratch::<T, _>(lhs_len + col_len, |scratch| {
            let (lhs_buf, col) = scratch.split_at_mut(lhs_len);
            for cg in 0..g.groups {
                let lhs: *const T = if direct {
                    dys[n0 * g.out_channels * p + cg * cout_g * p..].as_ptr()
                } else {
                    gather_rows(
                        dys,
                        n0 * g.out_channels * p + cg * cout_g * p,
                        g.out_channels * p,
                        cnt,
                        cout_g,
                        p,
                        lhs_buf,
                    );
                    lhs_buf.as_ptr()
                };
                let rhs: *const T = if g.pointwise() && direct {
                    xs[n0 * g.in_channels * q + cg * cin_g * q..].as_ptr()
                } else {
                    for j in 0..cnt {
                        let xo = (n0 + j) * g.in_channels * q + cg * cin_g * q;
                        im2col(g, &xs[xo..xo + cin_g * q], col, cols, j * p);
                    }
                    col.as_ptr()
                };
                // dW_g[cout_g × k] (+)= dY[cout_g × cols] · colᵀ[cols × k]
                unsafe {
                    matmul(
                        cout_g,
                        k,
                        cols,
                        dw.add(cg * cout_g * k),
                        k,
                        !first,
                        lhs,
                        cols,
                        false,
                        rhs,
                        cols,
                        true,
                        par,
                    )
                };
            }
        })
    };
    let mut partial: Vec<T> = Vec::with_capacity(tasks * wlen);
    {
        let pp = Shared(partial.as_mut_ptr());
        for_groups(tasks, |t| {
            let dw = pp.at(t * wlen);
            for (i, gi) in (t..count).step_by(tasks).enumerate() {
                group(gi, dw, i == 0);
            }
        });
    }
    // SAFETY: task `t` wrote its whole partial (its first group overwrites every element).
    unsafe { partial.set_len(tasks * wlen) };
    let mut dw = partial;
    let (first, rest) = dw.split_at_mut(wlen);
    for part in rest.chunks(wlen) {
        for (d, &s) in first.iter_mut().zip(part) {
            *d += s;
        }
    }
    dw.truncate(wlen);
    output(dw, shape)
}

/// Runs `f` in the tensor's own precision where a native kernel exists, else in f32 and casts
/// the result back (f16, bf16).
pub(crate) fn dispatch(
    dtype: DType,
    inputs: Vec<FlexTensor>,
    f32_kernel: impl Fn(&[FlexTensor]) -> FlexTensor,
    f64_kernel: impl Fn(&[FlexTensor]) -> FlexTensor,
) -> FlexTensor {
    use crate::ops::module::{cast_from_f32, cast_to_f32};
    use burn_std::{bf16, f16};
    match dtype {
        DType::F32 => f32_kernel(&inputs),
        DType::F64 => f64_kernel(&inputs),
        DType::F16 => {
            let inputs: Vec<_> = inputs
                .into_iter()
                .map(|t| cast_to_f32(t, f16::to_f32))
                .collect();
            cast_from_f32(f32_kernel(&inputs), f16::from_f32)
        }
        DType::BF16 => {
            let inputs: Vec<_> = inputs
                .into_iter()
                .map(|t| cast_to_f32(t, bf16::to_f32))
                .collect();
            cast_from_f32(f32_kernel(&inputs), bf16::from_f32)
        }
        dtype => panic!("conv2d: unsupported dtype {dtype:?}"),
    }
}
