//! The order in which an epoch's images reach the step, and how the images of an epoch are
//! dealt to several devices.
//!
//! burn's MultiDevice strategy splits the training loader's dataset into one contiguous slice
//! per device (`burn::data::dataloader::split::split_dataloader`: device `j` of `N` gets
//! positions `[j·⌊n/N⌋, (j+1)·⌊n/N⌋)`, the last one the remainder too), and each slice is
//! then shuffled on its own. Over the dataset in file order that would give each device the
//! same images every epoch (and, for class folders, only some of the classes). So with
//! several devices the loader's dataset is a fresh seeded permutation of the whole set each
//! epoch ([`Deal`]): every device's share is a disjoint, uniformly random shard, as PyTorch's
//! `DistributedSampler` gives.

use std::sync::Arc;

use burn::data::dataset::Dataset;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::Item;

/// One epoch's images dealt to `shards` devices: a seeded permutation of `0..len`, sliced as
/// burn's MultiDevice strategy slices its loader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deal {
    order: Vec<usize>,
    shard_of: Vec<u16>,
    shards: usize,
}

impl Deal {
    /// The permutation of `0..len` drawn from `seed`, dealt to `shards` (≥ 1) devices.
    pub fn new(len: usize, shards: usize, seed: u64) -> Deal {
        let shards = shards.max(1);
        let mut order: Vec<usize> = (0..len).collect();
        order.shuffle(&mut StdRng::seed_from_u64(seed));
        let mut shard_of = vec![0u16; len];
        for (position, &index) in order.iter().enumerate() {
            shard_of[index] = shard_at(position, len, shards) as u16;
        }
        Deal {
            order,
            shard_of,
            shards,
        }
    }

    /// Rank `rank`'s images of a group of `world` processes: the permutation of `0..len` drawn
    /// from `seed` (the same on every rank), of which rank `r` takes positions
    /// `[r·⌈len/world⌉, (r+1)·⌈len/world⌉)`, read cyclically, as PyTorch's
    /// `DistributedSampler` pads: every rank has as many images (and so as many steps, which
    /// the group's all-reduces need), and when `world` does not divide `len` the first images
    /// of the permutation are trained twice in the epoch. With `world` dividing `len`, rank
    /// `r`'s images are shard `r` of [`Deal::new`]`(len, world, seed)`.
    pub fn for_rank(len: usize, world: usize, rank: usize, seed: u64) -> Deal {
        let all = Deal::new(len, 1, seed).order;
        let each = len.div_ceil(world.max(1));
        let order: Vec<usize> = match len {
            0 => Vec::new(),
            _ => (rank * each..(rank + 1) * each)
                .map(|p| all[p % len])
                .collect(),
        };
        Deal {
            shard_of: vec![0; len],
            order,
            shards: 1,
        }
    }

    /// The images in loader order (shard 0's first).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The shard (device) that trains on image `index`.
    pub fn shard_of(&self, index: usize) -> usize {
        self.shard_of[index] as usize
    }

    /// The images of shard `shard`, in the order its device sees them.
    pub fn shard(&self, shard: usize) -> &[usize] {
        let (n, s) = (self.order.len(), self.shards);
        let start = shard * (n / s);
        let end = if shard + 1 == s { n } else { start + n / s };
        &self.order[start..end]
    }
}

/// The shard of loader position `position` of `len` over `shards` devices (burn's split).
fn shard_at(position: usize, len: usize, shards: usize) -> usize {
    match len / shards {
        0 => shards - 1,
        step => (position / step).min(shards - 1),
    }
}

/// Optimiser steps in an epoch of `len` images, `batch` per device, on `devices` devices: the
/// batches of the largest shard (burn's MultiDevice strategy steps while any device has a
/// batch left).
pub fn steps_per_epoch(len: usize, batch: usize, devices: usize) -> usize {
    let devices = devices.max(1);
    let largest = len - (devices - 1) * (len / devices);
    largest.div_ceil(batch)
}

/// The order of the images that burn's data loader goes through.
#[derive(Debug, Clone)]
pub enum Order {
    /// In dataset order (evaluation).
    InOrder,
    /// burn's loader shuffle with this seed (one device).
    Shuffled(u64),
    /// Dealt to several devices ([`Deal`]); each batch records its shard.
    Dealt(Arc<Deal>),
}

impl Order {
    /// The training order of epoch `epoch` of a run seeded by `seed`, on `devices` devices: a
    /// shuffle (one device) or a deal (several) of `len` images, drawn from the run seed and
    /// the epoch, so a resumed run sees the epochs an unbroken one would.
    pub fn of_epoch(len: usize, devices: usize, seed: u64, epoch: usize) -> Order {
        let draw = Order::draw(seed, epoch);
        match devices {
            0 | 1 => Order::Shuffled(draw),
            n => Order::Dealt(Arc::new(Deal::new(len, n, draw))),
        }
    }

    /// The training order of epoch `epoch` on rank `rank` of a group of `world` processes
    /// ([`Deal::for_rank`], from the same draw as [`Order::of_epoch`]).
    pub fn of_rank_epoch(len: usize, world: usize, rank: usize, seed: u64, epoch: usize) -> Order {
        let draw = Order::draw(seed, epoch);
        Order::Dealt(Arc::new(Deal::for_rank(len, world, rank, draw)))
    }

    /// The seed of one epoch's order.
    fn draw(seed: u64, epoch: usize) -> u64 {
        seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64)
    }
}

/// A dataset of indices into a shared image set, for burn's data loader: `0..len`, or the
/// images of a [`Deal`] in its order.
#[derive(Debug, Clone)]
pub struct IndexDataset {
    len: usize,
    order: Option<Arc<Deal>>,
}

impl IndexDataset {
    /// Indices `0..len`.
    pub fn new(len: usize) -> Self {
        Self { len, order: None }
    }

    /// The indices of `deal`, in its order.
    pub fn dealt(deal: Arc<Deal>) -> Self {
        Self {
            len: deal.order.len(),
            order: Some(deal),
        }
    }
}

impl Dataset<Item> for IndexDataset {
    fn get(&self, index: usize) -> Option<Item> {
        match &self.order {
            Some(deal) => deal.order.get(index).copied(),
            None => (index < self.len).then_some(index),
        }
    }
    fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deal_gives_each_device_a_disjoint_random_shard_as_burns_split_slices_it() {
        for (len, shards) in [(10, 1), (10, 2), (11, 3), (2, 2), (5, 4)] {
            let deal = Deal::new(len, shards, 7);
            let mut all: Vec<usize> = (0..shards).flat_map(|s| deal.shard(s).to_vec()).collect();
            assert_eq!(all, deal.order(), "shards are consecutive slices");
            all.sort();
            assert_eq!(all, (0..len).collect::<Vec<_>>(), "a permutation");
            for s in 0..shards {
                for &i in deal.shard(s) {
                    assert_eq!(deal.shard_of(i), s);
                }
            }
            // burn's split_dataloader: ⌊len/N⌋ each, the last the remainder too.
            for s in 0..shards - 1 {
                assert_eq!(deal.shard(s).len(), len / shards);
            }
        }
        // Seeded: the same seed the same deal, another seed another one.
        assert_eq!(Deal::new(100, 2, 1), Deal::new(100, 2, 1));
        assert_ne!(Deal::new(100, 2, 1).order(), Deal::new(100, 2, 2).order());
        // Not in file order (each epoch a fresh shard).
        assert_ne!(Deal::new(100, 2, 1).shard(0), (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn ranks_get_equal_disjoint_shards_padded_cyclically() {
        // Divisible: rank r's images are the devices' shard r.
        for r in 0..2 {
            assert_eq!(
                Deal::for_rank(100, 2, r, 5).order(),
                Deal::new(100, 2, 5).shard(r)
            );
        }
        // Not divisible: 3 ranks of 10 images get 4 each; together every image, the first
        // two of the permutation twice.
        let whole = Deal::new(10, 1, 9);
        let ranks: Vec<Vec<usize>> = (0..3)
            .map(|r| Deal::for_rank(10, 3, r, 9).order().to_vec())
            .collect();
        assert!(ranks.iter().all(|r| r.len() == 4));
        let mut all: Vec<usize> = ranks.concat();
        assert_eq!(&all[10..], &whole.order()[..2]);
        all.sort();
        all.dedup();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        // Every batch is shard 0 of its own process.
        assert!((0..10).all(|i| Deal::for_rank(10, 3, 1, 9).shard_of(i) == 0));
    }

    #[test]
    fn steps_per_epoch_follow_the_largest_shard() {
        assert_eq!(steps_per_epoch(100, 10, 1), 10);
        assert_eq!(steps_per_epoch(101, 10, 1), 11);
        assert_eq!(steps_per_epoch(100, 10, 2), 5);
        assert_eq!(steps_per_epoch(101, 10, 2), 6); // 50 and 51 images
        assert_eq!(steps_per_epoch(8, 4, 2), 1);
        assert_eq!(steps_per_epoch(11, 2, 3), 3); // 3, 3 and 5 images
    }
}
