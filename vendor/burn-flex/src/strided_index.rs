use crate::layout::Layout;
#[cfg(test)]
use alloc::vec;
#[cfg(test)]
use alloc::vec::Vec;

/// Iterator that yields linear indices for strided tensor access.
///
/// Handles non-contiguous tensors (including those with negative strides from flip)
/// by computing the correct storage index for each logical element position.
///
/// salaug patch: shape and strides are copied into fixed arrays and the innermost dimension
/// steps without the odometer (the odometer used to re-read the shape's rank per element).
pub struct StridedIter<'a> {
    /// Current storage index (signed to handle negative strides)
    storage_index: isize,
    multi_index: [usize; MAX_RANK],
    shape: [usize; MAX_RANK],
    strides: [isize; MAX_RANK],
    ndims: usize,
    remaining: usize,
    _layout: core::marker::PhantomData<&'a Layout>,
}

const MAX_RANK: usize = 16;

impl<'a> StridedIter<'a> {
    /// Create a new strided iterator for the given layout.
    pub fn new(layout: &'a Layout) -> Self {
        let ndims = layout.num_dims();
        assert!(
            ndims <= MAX_RANK,
            "StridedIter: rank {ndims} over {MAX_RANK}"
        );
        let mut shape = [1usize; MAX_RANK];
        let mut strides = [0isize; MAX_RANK];
        for d in 0..ndims {
            shape[d] = layout.shape()[d];
            strides[d] = layout.strides()[d];
        }
        Self {
            storage_index: layout.start_offset() as isize,
            multi_index: [0; MAX_RANK],
            shape,
            strides,
            ndims,
            remaining: layout.num_elements(),
            _layout: core::marker::PhantomData,
        }
    }
}

impl Iterator for StridedIter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.remaining == 0 {
            return None;
        }

        debug_assert!(
            self.storage_index >= 0,
            "StridedIter: negative storage index"
        );
        let idx = self.storage_index as usize;
        self.remaining -= 1;
        if self.ndims == 0 {
            return Some(idx);
        }

        // Innermost dimension first.
        let last = self.ndims - 1;
        self.multi_index[last] += 1;
        if self.multi_index[last] < self.shape[last] {
            self.storage_index += self.strides[last];
            return Some(idx);
        }
        self.advance_outer(last);
        Some(idx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl StridedIter<'_> {
    /// Wraps dimension `d` (its index just reached its size) and carries into the outer ones.
    fn advance_outer(&mut self, mut d: usize) {
        loop {
            self.multi_index[d] = 0;
            self.storage_index -= (self.shape[d] as isize - 1) * self.strides[d];
            if d == 0 {
                return;
            }
            d -= 1;
            self.multi_index[d] += 1;
            if self.multi_index[d] < self.shape[d] {
                self.storage_index += self.strides[d];
                return;
            }
        }
    }
}

impl ExactSizeIterator for StridedIter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_std::Shape;

    #[test]
    fn test_contiguous_iteration() {
        let layout = Layout::contiguous(Shape::from(vec![2, 3]));
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn test_transposed_iteration() {
        // Original: [[0, 1, 2], [3, 4, 5]] (shape [2, 3], strides [3, 1])
        // Transposed: [[0, 3], [1, 4], [2, 5]] (shape [3, 2], strides [1, 3])
        let layout = Layout::contiguous(Shape::from(vec![2, 3])).transpose(0, 1);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![0, 3, 1, 4, 2, 5]);
    }

    #[test]
    fn test_narrowed_iteration() {
        // Original: [[0, 1, 2, 3], [4, 5, 6, 7]] (shape [2, 4])
        // Narrowed dim=1, start=1, len=2: [[1, 2], [5, 6]]
        let layout = Layout::contiguous(Shape::from(vec![2, 4])).narrow(1, 1, 2);
        let indices: Vec<_> = StridedIter::new(&layout).collect();
        assert_eq!(indices, vec![1, 2, 5, 6]);
    }
}
