//! Row-wise walks over strided operands (salaug patch, see `PATCHES.md`).
//!
//! `StridedIter` yields one storage index at a time through an odometer over every dimension,
//! which is what the general paths of flex's element-wise ops, copies and comparisons used;
//! a per-channel broadcast such as `x[N, C, H, W] - mean[1, C, 1, 1]` (BatchNorm) ran there at
//! a few hundred million elements per second. [`Walk`] collapses the dimensions that all
//! operands traverse as one run, then hands out whole innermost rows with their strides, so
//! the kernels run tight loops (unit stride, or a broadcast scalar) over each row; large walks
//! are split over rayon threads by rows.

use core::mem::MaybeUninit;

use crate::layout::Layout;

/// Largest rank handled (burn tensors have at most 8 dimensions).
pub(crate) const MAX_RANK: usize = 8;

/// Number of elements above which a walk is split over threads.
#[cfg(feature = "rayon")]
const PARALLEL_ELEMS: usize = 1 << 17;

/// `N` strided operands over one logical shape, with the output written contiguously in
/// row-major order; dimensions collapsed where every operand allows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Walk<const N: usize> {
    ndim: usize,
    shape: [usize; MAX_RANK],
    strides: [[isize; MAX_RANK]; N],
    offsets: [isize; N],
}

impl<const N: usize> Walk<N> {
    /// The walk over `layouts`, which must share one shape of rank ≤ [`MAX_RANK`]. Returns
    /// `None` otherwise.
    pub(crate) fn new(layouts: [&Layout; N]) -> Option<Self> {
        let shape = layouts[0].shape();
        let rank = shape.num_dims();
        if rank > MAX_RANK || layouts.iter().any(|l| l.shape() != shape) {
            return None;
        }
        let mut walk = Walk {
            ndim: 0,
            shape: [0; MAX_RANK],
            strides: [[0; MAX_RANK]; N],
            offsets: [0; N],
        };
        for (k, l) in layouts.iter().enumerate() {
            walk.offsets[k] = l.start_offset() as isize;
        }
        for d in 0..rank {
            let size = shape[d];
            if size == 1 {
                continue;
            }
            // Merge into the previous (outer) dimension when, for every operand, stepping the
            // outer dimension equals stepping this one `size` times.
            let merge = walk.ndim > 0
                && layouts.iter().enumerate().all(|(k, l)| {
                    let st = l.strides()[d];
                    (size as isize)
                        .checked_mul(st)
                        .is_some_and(|run| walk.strides[k][walk.ndim - 1] == run)
                });
            if merge {
                walk.shape[walk.ndim - 1] *= size;
                for (k, l) in layouts.iter().enumerate() {
                    walk.strides[k][walk.ndim - 1] = l.strides()[d];
                }
            } else {
                walk.shape[walk.ndim] = size;
                for (k, l) in layouts.iter().enumerate() {
                    walk.strides[k][walk.ndim] = l.strides()[d];
                }
                walk.ndim += 1;
            }
        }
        Some(walk)
    }

    /// Elements in the walk.
    pub(crate) fn len(&self) -> usize {
        self.shape[..self.ndim].iter().product()
    }

    /// Length of an innermost row.
    pub(crate) fn row_len(&self) -> usize {
        if self.ndim == 0 {
            1
        } else {
            self.shape[self.ndim - 1]
        }
    }

    /// Stride of operand `k` along a row.
    pub(crate) fn row_stride(&self, k: usize) -> isize {
        if self.ndim == 0 {
            0
        } else {
            self.strides[k][self.ndim - 1]
        }
    }

    fn rows(&self) -> usize {
        self.len() / self.row_len().max(1)
    }

    /// Calls `f(row, starts)` for rows `first .. first + count`: `row` is the row's index
    /// (the output's elements `row · row_len ..`), `starts[k]` operand `k`'s storage index of
    /// the row's first element.
    fn rows_range(&self, first: usize, count: usize, mut f: impl FnMut(usize, [isize; N])) {
        if count == 0 {
            return;
        }
        let outer = self.ndim.saturating_sub(1);
        // Odometer over the outer dimensions, started at `first`.
        let mut idx = [0usize; MAX_RANK];
        let mut rem = first;
        for d in (0..outer).rev() {
            idx[d] = rem % self.shape[d];
            rem /= self.shape[d];
        }
        let mut pos = self.offsets;
        for k in 0..N {
            for d in 0..outer {
                pos[k] += idx[d] as isize * self.strides[k][d];
            }
        }
        for row in first..first + count {
            f(row, pos);
            // Advance.
            let mut d = outer;
            while d > 0 {
                d -= 1;
                idx[d] += 1;
                if idx[d] < self.shape[d] {
                    for k in 0..N {
                        pos[k] += self.strides[k][d];
                    }
                    break;
                }
                idx[d] = 0;
                for k in 0..N {
                    pos[k] -= (self.shape[d] as isize - 1) * self.strides[k][d];
                }
            }
        }
    }

    /// Fills `out` (row-major, `self.len()` elements, e.g. a vector's spare capacity) row by
    /// row: `f(out_row, starts)` with `out_row` the output's slice for a row (or, when rows
    /// are few and long, a piece of one: its length is `out_row.len()`) and `starts` the
    /// operands' storage indices of its first element; `f` must write `out_row` whole. Split
    /// over threads when large.
    pub(crate) fn fill<T: Send>(
        &self,
        out: &mut [MaybeUninit<T>],
        f: impl Fn(&mut [MaybeUninit<T>], [isize; N]) + Sync,
    ) {
        let row_len = self.row_len();
        let rows = self.rows();
        debug_assert_eq!(out.len(), rows * row_len);
        if rows == 0 || row_len == 0 {
            return;
        }
        #[cfg(feature = "rayon")]
        {
            let threads = rayon::current_num_threads();
            if threads > 1 && self.len() >= PARALLEL_ELEMS {
                use rayon::prelude::*;
                let tasks = 4 * threads;
                if rows >= tasks {
                    // Chunks of whole rows.
                    let per = rows.div_ceil(tasks);
                    out.par_chunks_mut(per * row_len)
                        .enumerate()
                        .for_each(|(c, part)| {
                            let first = c * per;
                            let count = part.len() / row_len;
                            self.rows_range(first, count, |row, starts| {
                                let r = row - first;
                                f(&mut part[r * row_len..(r + 1) * row_len], starts)
                            });
                        });
                } else {
                    // Few long rows (a contiguous tensor is one row): pieces of rows.
                    let pieces = tasks.div_ceil(rows);
                    let piece = row_len.div_ceil(pieces).div_ceil(64) * 64;
                    out.par_chunks_mut(row_len)
                        .enumerate()
                        .for_each(|(row, out_row)| {
                            self.rows_range(row, 1, |_, starts| {
                                out_row
                                    .par_chunks_mut(piece)
                                    .enumerate()
                                    .for_each(|(p, part)| {
                                        let mut s = starts;
                                        for k in 0..N {
                                            s[k] += (p * piece) as isize * self.row_stride(k);
                                        }
                                        f(part, s)
                                    });
                            });
                        });
                }
                return;
            }
        }
        self.rows_range(0, rows, |row, starts| {
            f(&mut out[row * row_len..(row + 1) * row_len], starts)
        });
    }
}

/// The values of a strided row of `len` elements starting at `start` with `stride`.
#[inline(always)]
pub(crate) fn row<T: Copy>(src: &[T], start: isize, stride: isize, len: usize) -> RowRef<'_, T> {
    if stride == 1 {
        RowRef::Unit(&src[start as usize..start as usize + len])
    } else if stride == 0 || len <= 1 {
        RowRef::Scalar(src[start as usize])
    } else {
        RowRef::Strided { src, start, stride }
    }
}

/// One operand's row, classified for the kernels.
pub(crate) enum RowRef<'a, T> {
    /// Unit stride.
    Unit(&'a [T]),
    /// One value repeated (stride 0, or a row of one element).
    Scalar(T),
    /// Any other stride.
    Strided {
        src: &'a [T],
        start: isize,
        stride: isize,
    },
}

impl<T: Copy> RowRef<'_, T> {
    /// Element `i`.
    #[inline(always)]
    pub(crate) fn get(&self, i: usize) -> T {
        match self {
            RowRef::Unit(s) => s[i],
            RowRef::Scalar(v) => *v,
            RowRef::Strided {
                src, start, stride, ..
            } => src[(*start + i as isize * *stride) as usize],
        }
    }
}

/// `dst[i] = op(a[i], b[i])` for two classified rows, with tight loops for the unit-stride and
/// broadcast combinations.
#[inline(always)]
pub(crate) fn zip_rows<T: Copy, R>(
    dst: &mut [MaybeUninit<R>],
    a: RowRef<'_, T>,
    b: RowRef<'_, T>,
    op: impl Fn(T, T) -> R,
) {
    match (&a, &b) {
        (RowRef::Unit(x), RowRef::Unit(y)) => {
            for ((d, &x), &y) in dst.iter_mut().zip(x.iter()).zip(y.iter()) {
                d.write(op(x, y));
            }
        }
        (RowRef::Unit(x), RowRef::Scalar(y)) => {
            let y = *y;
            for (d, &x) in dst.iter_mut().zip(x.iter()) {
                d.write(op(x, y));
            }
        }
        (RowRef::Scalar(x), RowRef::Unit(y)) => {
            let x = *x;
            for (d, &y) in dst.iter_mut().zip(y.iter()) {
                d.write(op(x, y));
            }
        }
        _ => {
            for (i, d) in dst.iter_mut().enumerate() {
                d.write(op(a.get(i), b.get(i)));
            }
        }
    }
}

/// `dst[i] = op(a[i])` for a classified row.
#[inline(always)]
pub(crate) fn map_row<T: Copy, R: Copy>(
    dst: &mut [MaybeUninit<R>],
    a: RowRef<'_, T>,
    op: impl Fn(T) -> R,
) {
    match &a {
        RowRef::Unit(x) => {
            for (d, &x) in dst.iter_mut().zip(x.iter()) {
                d.write(op(x));
            }
        }
        RowRef::Scalar(x) => {
            let v = op(*x);
            for d in dst.iter_mut() {
                d.write(v);
            }
        }
        RowRef::Strided { .. } => {
            for (i, d) in dst.iter_mut().enumerate() {
                d.write(op(a.get(i)));
            }
        }
    }
}

/// `op(lhs, rhs)` element-wise into a new row-major buffer, for operands of one shape (after
/// broadcasting) with any strides. `None` when the rank is over [`MAX_RANK`].
pub(crate) fn zip_map<T: Copy + Send + Sync, R: Copy + Send>(
    lhs: &[T],
    lhs_layout: &Layout,
    rhs: &[T],
    rhs_layout: &Layout,
    op: impl Fn(T, T) -> R + Sync,
) -> Option<alloc::vec::Vec<R>> {
    let walk = Walk::new([lhs_layout, rhs_layout])?;
    let (sa, sb) = (walk.row_stride(0), walk.row_stride(1));
    let n = walk.len();
    let mut out = alloc::vec::Vec::with_capacity(n);
    walk.fill(&mut out.spare_capacity_mut()[..n], |dst, [a, b]| {
        let len = dst.len();
        zip_rows(dst, row(lhs, a, sa, len), row(rhs, b, sb, len), &op)
    });
    // SAFETY: `fill` wrote every row, and the rows cover `0..n`.
    unsafe { out.set_len(n) };
    Some(out)
}

/// `op(x)` element-wise into a new row-major buffer, for an operand with any strides.
pub(crate) fn map<T: Copy + Send + Sync, R: Copy + Send>(
    src: &[T],
    layout: &Layout,
    op: impl Fn(T) -> R + Sync,
) -> Option<alloc::vec::Vec<R>> {
    let walk = Walk::new([layout])?;
    let s = walk.row_stride(0);
    let n = walk.len();
    let mut out = alloc::vec::Vec::with_capacity(n);
    walk.fill(&mut out.spare_capacity_mut()[..n], |dst, [a]| {
        let len = dst.len();
        map_row(dst, row(src, a, s, len), &op)
    });
    // SAFETY: `fill` wrote every row, and the rows cover `0..n`.
    unsafe { out.set_len(n) };
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strided_index::StridedIter;
    use burn_std::Shape;

    fn reference(l: &Layout) -> alloc::vec::Vec<usize> {
        StridedIter::new(l).collect()
    }

    fn walked(l: &Layout) -> alloc::vec::Vec<usize> {
        let src: alloc::vec::Vec<usize> = (0..10_000).collect();
        map(&src, l, |v| v).unwrap()
    }

    #[test]
    fn walks_match_the_strided_iterator() {
        let base = Layout::contiguous(Shape::from(alloc::vec![2, 3, 4, 5]));
        let layouts = [
            base.clone(),
            base.transpose(0, 1),
            base.transpose(1, 3),
            base.permute(&[3, 1, 0, 2]),
            base.narrow(2, 1, 2),
            base.flip(&[3]),
            base.flip(&[0, 2]),
            Layout::new(
                Shape::from(alloc::vec![2, 3, 4, 5]),
                alloc::vec![0, 1, 0, 0],
                7,
            ),
        ];
        for l in layouts {
            assert_eq!(walked(&l), reference(&l), "{l:?}");
        }
    }
}

/// `op` applied to every element of `data` in place, on rayon threads when large.
pub(crate) fn par_update<T: Copy + Send>(data: &mut [T], op: impl Fn(T) -> T + Sync) {
    #[cfg(feature = "rayon")]
    if data.len() >= PARALLEL_ELEMS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        let chunk = data.len().div_ceil(4 * rayon::current_num_threads());
        data.par_chunks_mut(chunk).for_each(|c| {
            for x in c.iter_mut() {
                *x = op(*x);
            }
        });
        return;
    }
    for x in data.iter_mut() {
        *x = op(*x);
    }
}

/// `op` of every element of `src` into a new vector, on rayon threads when large.
pub(crate) fn par_map<T: Copy + Sync, R: Copy + Send>(
    src: &[T],
    op: impl Fn(T) -> R + Sync,
) -> alloc::vec::Vec<R> {
    let n = src.len();
    let mut out = alloc::vec::Vec::with_capacity(n);
    {
        let dst = &mut out.spare_capacity_mut()[..n];
        let run = |d: &mut [MaybeUninit<R>], s: &[T]| {
            for (d, &x) in d.iter_mut().zip(s) {
                d.write(op(x));
            }
        };
        #[cfg(feature = "rayon")]
        if n >= PARALLEL_ELEMS && rayon::current_num_threads() > 1 {
            use rayon::prelude::*;
            let chunk = n.div_ceil(4 * rayon::current_num_threads());
            dst.par_chunks_mut(chunk)
                .zip(src.par_chunks(chunk))
                .for_each(|(d, s)| run(d, s));
        } else {
            run(dst, src);
        }
        #[cfg(not(feature = "rayon"))]
        run(dst, src);
    }
    // SAFETY: every element of `0..n` was written above.
    unsafe { out.set_len(n) };
    out
}

/// `f(dst_chunk, src_chunk)` over matching chunks of `dst` and `src` (equal lengths), on rayon
/// threads when large. Chunks are multiples of `align` elements (except the last), so that
/// callers can keep whole rows together.
pub(crate) fn par_chunks2<T: Send + Sync, U: Sync>(
    dst: &mut [T],
    src: &[U],
    align: usize,
    f: impl Fn(&mut [T], &[U]) + Sync,
) {
    debug_assert_eq!(dst.len(), src.len());
    #[cfg(feature = "rayon")]
    if dst.len() >= PARALLEL_ELEMS && rayon::current_num_threads() > 1 {
        use rayon::prelude::*;
        let align = align.max(1);
        let chunk = dst
            .len()
            .div_ceil(4 * rayon::current_num_threads())
            .div_ceil(align)
            * align;
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| f(d, s));
        return;
    }
    let _ = align;
    f(dst, src)
}

/// `f(first_row, rows)` over chunks of whole rows of `data` (rows of `row_len` elements), on
/// rayon threads when large.
pub(crate) fn par_rows<T: Send>(
    data: &mut [T],
    row_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    let row_len = row_len.max(1);
    #[cfg(feature = "rayon")]
    if data.len() >= PARALLEL_ELEMS && rayon::current_num_threads() > 1 && data.len() > row_len {
        use rayon::prelude::*;
        let rows = data.len() / row_len;
        let per = rows.div_ceil(4 * rayon::current_num_threads()).max(1);
        data.par_chunks_mut(per * row_len)
            .enumerate()
            .for_each(|(c, chunk)| f(c * per, chunk));
        return;
    }
    f(0, data)
}
