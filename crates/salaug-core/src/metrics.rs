//! Measures of saliency maps that are not the training objective: how two maps agree in the
//! order of their pixels ([`spearman`], [`top_fraction_iou`]) and how faithful a map is to the
//! model ([`deletion_insertion`]).
//!
//! `L_sal` compares min-max-normalised values with a squared distance; a model trained on it
//! wins that distance by construction. Rank correlation and top-pixel overlap ask a different
//! question (do the maps rank the same pixels highest?), and deletion/insertion ask whether the
//! pixels a map ranks highest are the ones the model's prediction depends on (Petsiuk et al.,
//! RISE, 2018): remove (deletion) or reveal (insertion) the pixels in the map's order and track
//! the probability of the label; a faithful map gives a low deletion and a high insertion area.
//! Compare both with a random order, which the caller draws.
//!
//! Agreement works on one map at a time as host slices (ranks need a sort); faithfulness runs
//! the model on batches at any backend.

use burn::tensor::activation::softmax;
use burn::tensor::{backend::Backend, Int, Tensor, TensorData};

use crate::classifier::Classifier;
use crate::error::{Error, Result};

/// Values of `a` at the valid pixels (all when `valid` is `None`).
fn kept(a: &[f32], valid: Option<&[bool]>) -> Vec<f64> {
    match valid {
        None => a.iter().map(|&v| v as f64).collect(),
        Some(m) => a
            .iter()
            .zip(m)
            .filter(|(_, &ok)| ok)
            .map(|(&v, _)| v as f64)
            .collect(),
    }
}

/// Ranks from 1, ties sharing their average rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

fn pearson(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    if saa == 0.0 || sbb == 0.0 {
        return f64::NAN;
    }
    sab / (saa * sbb).sqrt()
}

/// Spearman rank correlation of two maps of the same size over the valid pixels: the Pearson
/// correlation of their ranks, ties given their average rank. 1 when the maps order the
/// pixels the same way, −1 when reversed; NaN when fewer than two pixels are valid or a map is
/// constant there.
pub fn spearman(a: &[f32], b: &[f32], valid: Option<&[bool]>) -> f64 {
    assert_eq!(a.len(), b.len(), "maps of different sizes");
    let (a, b) = (kept(a, valid), kept(b, valid));
    if a.len() < 2 {
        return f64::NAN;
    }
    pearson(&ranks(&a), &ranks(&b))
}

/// The valid pixels of the largest `fraction` of a map: the `ceil(fraction · valid)` highest
/// values (ties broken by pixel index).
fn top(v: &[f64], fraction: f64) -> Vec<bool> {
    let k = ((fraction * v.len() as f64).ceil() as usize).min(v.len());
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&i, &j| v[j].total_cmp(&v[i]).then(i.cmp(&j)));
    let mut out = vec![false; v.len()];
    for &i in &order[..k] {
        out[i] = true;
    }
    out
}

/// Intersection over union of the top `fraction` of the valid pixels of each map (e.g. 0.1:
/// the 10 % most salient). 1 when the maps pick the same pixels, 0 when disjoint; NaN when
/// no pixel is valid.
pub fn top_fraction_iou(a: &[f32], b: &[f32], valid: Option<&[bool]>, fraction: f64) -> f64 {
    assert_eq!(a.len(), b.len(), "maps of different sizes");
    assert!(fraction > 0.0 && fraction <= 1.0, "fraction in (0, 1]");
    let (a, b) = (kept(a, valid), kept(b, valid));
    if a.is_empty() {
        return f64::NAN;
    }
    let (ta, tb) = (top(&a, fraction), top(&b, fraction));
    let inter = ta.iter().zip(&tb).filter(|(x, y)| **x && **y).count();
    let union = ta.iter().zip(&tb).filter(|(x, y)| **x || **y).count();
    inter as f64 / union as f64
}

/// Pixel indices of a map from the most to the least salient (ties by index).
pub fn salient_order(map: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..map.len()).collect();
    order.sort_by(|&i, &j| map[j].total_cmp(&map[i]).then(i.cmp(&j)));
    order
}

/// Per-image deletion and insertion areas.
#[derive(Debug, Clone, PartialEq)]
pub struct Faithfulness {
    /// Area under the label's probability as pixels are removed in order (lower: the map
    /// found what the prediction depends on).
    pub deletion: Vec<f64>,
    /// Area under the label's probability as pixels are revealed in order on the baseline
    /// (higher is better).
    pub insertion: Vec<f64>,
}

/// Deletion and insertion areas of `images` for `labels`, removing or revealing pixels in
/// `orders` (one permutation of the `h·w` pixel indices per image, most important first, e.g.
/// [`salient_order`] of its map or a random permutation), over `steps` equal steps.
///
/// At step `k` the first `round(k·h·w/steps)` pixels of an image's order (all its channels)
/// are replaced by `baseline` (deletion) or taken from the image on `baseline` (insertion);
/// the curve is the softmax probability of the label, and its area is the trapezoid rule over
/// `k/steps` in `[0, 1]`. The deletion and insertion images of a step go through the model as
/// one batch. The model runs as it is (a plain backend: evaluation mode).
///
/// # Shapes
/// - `images`, `baseline`: `[batch, channels, h, w]`
pub fn deletion_insertion<B: Backend, M: Classifier<B>>(
    model: &M,
    images: Tensor<B, 4>,
    baseline: Tensor<B, 4>,
    labels: &[usize],
    orders: &[Vec<usize>],
    steps: usize,
) -> Result<Faithfulness> {
    let [n, _, h, w] = images.dims();
    let pixels = h * w;
    if baseline.dims() != images.dims() {
        return Err(Error::Shape {
            what: "deletion/insertion baseline",
            expected: images.dims().to_vec(),
            got: baseline.dims().to_vec(),
        });
    }
    if labels.len() != n || orders.len() != n || orders.iter().any(|o| o.len() != pixels) {
        return Err(Error::Shape {
            what: "deletion/insertion labels and pixel orders (one of h·w per image)",
            expected: vec![n, pixels],
            got: vec![labels.len(), orders.first().map_or(0, Vec::len)],
        });
    }
    if steps == 0 {
        return Err(Error::InvalidSetting {
            name: "steps",
            value: steps.to_string(),
            reason: "must be at least 1",
        });
    }
    let device = images.device();
    // Position of each pixel in its image's order.
    let mut position = vec![0usize; n * pixels];
    for (i, order) in orders.iter().enumerate() {
        for (p, &px) in order.iter().enumerate() {
            position[i * pixels + px] = p;
        }
    }
    let targets = Tensor::<B, 1, Int>::from_data(
        TensorData::new(
            labels.iter().chain(labels).map(|&l| l as i64).collect(),
            [2 * n],
        ),
        &device,
    )
    .reshape([2 * n, 1]);
    let mut curves = vec![Vec::with_capacity(steps + 1); 2 * n];
    for k in 0..=steps {
        let count = (k * pixels + steps / 2) / steps;
        let mask: Vec<f32> = position
            .iter()
            .map(|&p| if p < count { 1.0 } else { 0.0 })
            .collect();
        let mask = Tensor::<B, 4>::from_data(TensorData::new(mask, [n, 1, h, w]), &device);
        let keep = mask.clone().neg().add_scalar(1.0);
        let deleted = images.clone() * keep.clone() + baseline.clone() * mask.clone();
        let inserted = baseline.clone() * keep + images.clone() * mask;
        let probs = softmax(model.logits(Tensor::cat(vec![deleted, inserted], 0)), 1)
            .gather(1, targets.clone());
        let probs = probs
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .expect("f64 values");
        for (curve, p) in curves.iter_mut().zip(probs) {
            curve.push(p);
        }
    }
    let area = |c: &Vec<f64>| {
        let inner: f64 = c[1..steps].iter().sum();
        (inner + (c[0] + c[steps]) / 2.0) / steps as f64
    };
    let (del, ins) = curves.split_at(n);
    Ok(Faithfulness {
        deletion: del.iter().map(area).collect(),
        insertion: ins.iter().map(area).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::TB;
    use burn::module::{Module, Param};

    #[test]
    fn identical_maps_agree_fully_and_reversed_ones_not_at_all() {
        let a = [0.3f32, 0.1, 0.9, 0.5, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0];
        assert!((spearman(&a, &a, None) - 1.0).abs() < 1e-12);
        assert!((top_fraction_iou(&a, &a, None, 0.1) - 1.0).abs() < 1e-12);
        // Rank correlation ignores monotone rescaling, unlike a squared distance.
        let squashed: Vec<f32> = a.iter().map(|v| v * v * 0.01).collect();
        assert!((spearman(&a, &squashed, None) - 1.0).abs() < 1e-12);
        let reversed: Vec<f32> = a.iter().map(|v| -v).collect();
        assert!((spearman(&a, &reversed, None) + 1.0).abs() < 1e-12);
        // Top 10 % of 10 pixels is one pixel: 0.9 at index 2 against 0.0 at index 9.
        assert_eq!(top_fraction_iou(&a, &reversed, None, 0.1), 0.0);
        // Top 30 %: {2, 6, 4} against {9, 1, 5}: disjoint. Top 60 %: 6 each, 2 shared (3, 8).
        assert_eq!(top_fraction_iou(&a, &reversed, None, 0.3), 0.0);
        assert!((top_fraction_iou(&a, &reversed, None, 0.6) - 2.0 / 10.0).abs() < 1e-12);
    }

    #[test]
    fn spearman_by_hand_with_ties_and_a_mask() {
        // ranks a: [1, 2.5, 2.5, 4]; b: [2, 1, 3, 4]. Deviations from the mean rank 2.5:
        // [-1.5, 0, 0, 1.5] and [-0.5, -1.5, 0.5, 1.5]: Σab = 3, Σa² = 4.5, Σb² = 5,
        // ρ = 3 / √22.5 = √0.4.
        let (a, b) = ([1.0f32, 2.0, 2.0, 5.0], [0.5f32, 0.1, 0.7, 0.9]);
        let (ra, rb) = ([1.0, 2.5, 2.5, 4.0], [2.0, 1.0, 3.0, 4.0]);
        let expected = pearson(&ra, &rb);
        assert!((expected - 0.4f64.sqrt()).abs() < 1e-12, "{expected}");
        assert!((spearman(&a, &b, None) - expected).abs() < 1e-12);
        // Invalid pixels are left out: with the last two masked, a = [1, 2], b = [0.5, 0.1].
        let valid = [true, true, false, false];
        assert!((spearman(&a, &b, Some(&valid)) + 1.0).abs() < 1e-12);
        assert!(spearman(&a, &b, Some(&[true, false, false, false])).is_nan());
        assert!(spearman(&[1.0, 1.0], &[0.0, 1.0], None).is_nan());
        // IoU over valid pixels only: top 50 % of 2 valid pixels is one each: 1 vs 0.
        assert_eq!(top_fraction_iou(&a, &b, Some(&valid), 0.5), 0.0);
    }

    /// A two-class linear model on one-channel 1×4 images: logit 1 = Σ wᵢ·xᵢ, logit 0 = 0.
    #[derive(Module, Debug)]
    struct Linear4<B: Backend> {
        w: Param<Tensor<B, 2>>,
    }

    impl<B: Backend> Classifier<B> for Linear4<B> {
        fn logits(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
            let n = images.dims()[0];
            let score = images.reshape([n, 4]).matmul(self.w.val()); // [n, 1]
            Tensor::cat(vec![score.zeros_like(), score], 1)
        }
    }

    #[test]
    fn deletion_and_insertion_areas_by_hand() {
        let device = Default::default();
        let w = [4.0, 0.0, 2.0, 1.0];
        let model = Linear4::<TB> {
            w: Param::from_tensor(Tensor::from_data(
                TensorData::new(w.to_vec(), [4, 1]),
                &device,
            )),
        };
        let x = Tensor::<TB, 4>::ones([1, 1, 1, 4], &device);
        let base = Tensor::<TB, 4>::zeros([1, 1, 1, 4], &device);
        let sigmoid = |s: f64| 1.0 / (1.0 + (-s).exp());
        // The true effect of each pixel is its weight: the order 0, 2, 3, 1.
        let best = salient_order(&[4.0, 0.0, 2.0, 1.0]);
        assert_eq!(best, [0, 2, 3, 1]);
        let f = deletion_insertion(
            &model,
            x.clone(),
            base.clone(),
            &[1],
            std::slice::from_ref(&best),
            4,
        )
        .unwrap();
        // Deletion: scores 7, 3, 1, 0, 0; insertion: 0, 4, 6, 7, 7.
        let area = |s: [f64; 5]| {
            let p: Vec<f64> = s.iter().map(|&v| sigmoid(v)).collect();
            (p[0] / 2.0 + p[1] + p[2] + p[3] + p[4] / 2.0) / 4.0
        };
        assert!((f.deletion[0] - area([7.0, 3.0, 1.0, 0.0, 0.0])).abs() < 1e-12);
        assert!((f.insertion[0] - area([0.0, 4.0, 6.0, 7.0, 7.0])).abs() < 1e-12);
        // The order by true effect beats every other order on both curves, and the reversed
        // order is the worst.
        let worst = vec![1, 3, 2, 0];
        let all = permutations(4);
        let g = deletion_insertion(
            &model,
            Tensor::cat(vec![x; all.len()], 0),
            Tensor::cat(vec![base; all.len()], 0),
            &vec![1; all.len()],
            &all,
            4,
        )
        .unwrap();
        let at = |o: &Vec<usize>| all.iter().position(|p| p == o).unwrap();
        for i in 0..all.len() {
            assert!(g.deletion[at(&best)] <= g.deletion[i] + 1e-12);
            assert!(g.insertion[at(&best)] >= g.insertion[i] - 1e-12);
            assert!(g.deletion[at(&worst)] >= g.deletion[i] - 1e-12);
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(g.deletion[at(&best)] < mean(&g.deletion) - 0.05);
        assert!(g.insertion[at(&best)] > mean(&g.insertion) + 0.05);
        let bad = deletion_insertion(
            &model,
            Tensor::ones([1, 1, 1, 4], &device),
            Tensor::zeros([1, 1, 1, 3], &device),
            &[1],
            &[best],
            4,
        );
        assert!(bad.is_err());
    }

    fn permutations(n: usize) -> Vec<Vec<usize>> {
        if n == 0 {
            return vec![Vec::new()];
        }
        let mut out = Vec::new();
        for p in permutations(n - 1) {
            for i in 0..=p.len() {
                let mut q = p.clone();
                q.insert(i, n - 1);
                out.push(q);
            }
        }
        out
    }
}
