//! The augmentations' conventions, inverses, expected maps, seeding and configs.

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::Distribution;
use rand::rngs::StdRng;
use rand::SeedableRng;
use salaug_augment::geometry::{valid_mask, warp, Affine};
use salaug_augment::mix::{CutMixParams, MixUpParams, PixelBox};
use salaug_augment::transfer::{Labels, MixWeight};
use salaug_augment::*;

type B = Flex;

fn tensor(values: Vec<f32>, shape: [usize; 4]) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn values(t: Tensor<B, 4>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().unwrap()
}

/// A smooth test image in [0.25, 0.75], `[n, c, h, w]`, different per image and channel.
fn smooth(n: usize, c: usize, h: usize, w: usize) -> Tensor<B, 4> {
    let mut v = Vec::with_capacity(n * c * h * w);
    for i in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (u, t) = (x as f32 / w as f32, y as f32 / h as f32);
                    let phase = 0.7 * i as f32 + 0.3 * ch as f32;
                    v.push(
                        0.5 + 0.25
                            * (std::f32::consts::TAU * u + phase).sin()
                            * (3.0 * t + phase).cos(),
                    );
                }
            }
        }
    }
    tensor(v, [n, c, h, w])
}

/// Largest |a − b| over the pixels where `mask` is 1 (and the number of such pixels).
fn masked_max_diff(a: Tensor<B, 4>, b: Tensor<B, 4>, mask: Tensor<B, 4>) -> (f32, usize) {
    let [n, c, h, w] = a.dims();
    let mask = values(mask.expand([n, c, h, w]));
    let mut worst = 0.0f32;
    let mut count = 0;
    for ((x, y), m) in values(a).iter().zip(values(b)).zip(mask) {
        if m > 0.5 {
            worst = worst.max((x - y).abs());
            count += 1;
        }
    }
    (worst, count)
}

fn geometric() -> Vec<Augmentation> {
    vec![
        Augmentation::Rescale(Rescale::default()),
        Augmentation::Rotation(Rotation::default()),
        Augmentation::Translation(Translation::default()),
        Augmentation::ResizedCrop(ResizedCrop::default()),
        Augmentation::Combined,
        Augmentation::Affine,
        Augmentation::Simclr { strength: 0.5 },
    ]
}

#[test]
fn geometric_inverse_recovers_a_smooth_image_inside_the_mask() {
    // Tolerance 0.03 on values in [0.25, 0.75]: two bilinear resamplings of a smooth image.
    let x = smooth(6, 1, 32, 32);
    for aug in geometric() {
        let mut rng = StdRng::seed_from_u64(5);
        let out = aug.run(x.clone(), &mut rng).unwrap();
        // The photometric steps of SimCLR change values: compare geometry only, on the maps.
        let warped = out.transfer.expected(x.clone()).0;
        let (back, mask) = out.transfer.inverse(warped).unwrap();
        let mask = mask.unwrap_or_else(|| x.ones_like());
        // Pixels whose forward warp already blended in the zeros outside the frame cannot come
        // back: keep those whose round trip of a constant image is still 1.
        let ones = x.ones_like();
        let round_trip = out
            .transfer
            .inverse(out.transfer.expected(ones).0)
            .unwrap()
            .0;
        let mask = mask * round_trip.greater_equal_elem(1.0 - 1e-4).float();
        let (err, count) = masked_max_diff(back, x.clone(), mask);
        assert!(
            count > 6 * 32 * 32 / 20,
            "{}: mask keeps only {count} pixels",
            aug.name()
        );
        assert!(err < 0.03, "{}: max error {err}", aug.name());
    }
}

#[test]
fn geometric_apply_matches_the_transfer() {
    // `expected` carries maps forward exactly as `apply` carries images.
    let x = smooth(4, 1, 16, 16);
    for aug in [
        Augmentation::HorizontalFlip(Default::default()),
        Augmentation::VerticalFlip(Default::default()),
        Augmentation::Rescale(Default::default()),
        Augmentation::Rotation(Default::default()),
        Augmentation::Translation(Default::default()),
        Augmentation::ResizedCrop(Default::default()),
        Augmentation::MixUp(Default::default()),
        Augmentation::CutOut(Default::default()),
        Augmentation::CutMix(Default::default()),
    ] {
        let mut rng = StdRng::seed_from_u64(9);
        let out = aug.run(x.clone(), &mut rng).unwrap();
        let expected = out.transfer.expected(x.clone()).0;
        let (err, _) = masked_max_diff(expected, out.images, x.ones_like());
        assert!(err < 1e-6, "{}: {err}", aug.name());
    }
}

#[test]
fn flips_are_exact_and_their_own_inverse() {
    let x = smooth(8, 3, 5, 7);
    for aug in [
        Augmentation::HorizontalFlip(HorizontalFlip { p: 1.0 }),
        Augmentation::VerticalFlip(VerticalFlip { p: 1.0 }),
    ] {
        let out = aug.run(x.clone(), &mut StdRng::seed_from_u64(1)).unwrap();
        let axis = if aug.name() == "horizontal_flip" {
            3
        } else {
            2
        };
        assert_eq!(values(out.images.clone()), values(x.clone().flip([axis])));
        let (back, mask) = out.transfer.inverse(out.images).unwrap();
        assert!(mask.is_none());
        assert_eq!(values(back), values(x.clone()));
    }
    // With p = 0.5 some images flip and some do not, each exactly.
    let aug = Augmentation::HorizontalFlip(Default::default());
    let out = aug.run(x.clone(), &mut StdRng::seed_from_u64(2)).unwrap();
    let Params::HorizontalFlip(flags) = &out.params else {
        panic!()
    };
    assert!(flags.iter().any(|f| *f) && flags.iter().any(|f| !*f));
    for (i, f) in flags.iter().enumerate() {
        let img = x.clone().narrow(0, i, 1);
        let want = if *f { img.flip([3]) } else { img };
        assert_eq!(values(out.images.clone().narrow(0, i, 1)), values(want));
    }
}

/// Where the single bright pixel of a 9×9 image lands under `forward`.
fn bright_pixel_lands(forward: Affine, at: (usize, usize)) -> (usize, usize) {
    let mut v = vec![0.0f32; 81];
    v[at.1 * 9 + at.0] = 1.0;
    let out = values(warp(tensor(v, [1, 1, 9, 9]), &[forward]));
    let (i, max) = out
        .iter()
        .enumerate()
        .fold((0, 0.0f32), |b, (i, v)| if *v > b.1 { (i, *v) } else { b });
    assert!(
        max > 0.999,
        "the pixel moved to a pixel centre, unblurred ({max})"
    );
    (i % 9, i / 9)
}

#[test]
fn a_bright_pixel_lands_where_the_formula_puts_it() {
    // Rotation +90° about the centre (4, 4): right of the centre → above it (counter-clockwise
    // as displayed).
    assert_eq!(
        bright_pixel_lands(Affine::rotation_about(90.0, 4.0, 4.0), (6, 4)),
        (4, 2)
    );
    assert_eq!(
        bright_pixel_lands(Affine::rotation_about(-90.0, 4.0, 4.0), (6, 4)),
        (4, 6)
    );
    // Magnification ×2 about the centre: (5, 3) → (4 + 2·1, 4 − 2·1) = (6, 2).
    assert_eq!(
        bright_pixel_lands(Affine::scale_about(2.0, 2.0, 4.0, 4.0), (5, 3)),
        (6, 2)
    );
    // Crop rows/cols 2..7 (5×5) resized to 9×9: x' = (x − 2)·8/4, so (4, 3) → (4, 2).
    let crop = crop::CropBox {
        top: 2,
        left: 2,
        height: 5,
        width: 5,
    };
    assert_eq!(bright_pixel_lands(crop.forward([9, 9]), (4, 3)), (4, 2));
    // Translation by (+2, −1).
    assert_eq!(
        bright_pixel_lands(Affine::translation(2.0, -1.0), (3, 3)),
        (5, 2)
    );
    // The units draw within their ranges.
    let mut rng = StdRng::seed_from_u64(3);
    for a in Rotation::default().sample(50, [9, 9], &mut rng) {
        let degrees = (-a.0[1][0]).atan2(a.0[0][0]).to_degrees();
        assert!(degrees.abs() <= 10.0 + 1e-9, "{degrees}");
    }
    for a in Rescale::default().sample(50, [9, 9], &mut rng) {
        assert!((1.0..=1.1).contains(&a.0[0][0]), "{:?}", a);
    }
}

#[test]
fn validity_mask_marks_pixels_from_outside_the_frame() {
    // Shift right by 2: the first two columns of the output came from outside.
    let mask = values(valid_mask::<B>(
        &[Affine::translation(2.0, 0.0)],
        [3, 5],
        &Default::default(),
    ));
    assert_eq!(&mask[..5], &[0.0, 0.0, 1.0, 1.0, 1.0]);
}

#[test]
fn mixup_expected_map_matches_a_hand_computed_case() {
    let maps = tensor(
        vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
        [2, 1, 2, 2],
    );
    let params = Params::MixUp(MixUpParams {
        partner: vec![1, 0],
        lambda: vec![0.25, 1.0],
    });
    let aug = Augmentation::MixUp(MixUp::default());
    let t = aug.transfer(&params, [2, 2]).unwrap();
    // Image 0: 0.25·[1,2,3,4] + 0.75·[10,20,30,40]; image 1 keeps itself.
    assert_eq!(
        values(t.expected(maps.clone()).0),
        vec![7.75, 15.5, 23.25, 31.0, 10.0, 20.0, 30.0, 40.0]
    );
    assert!(matches!(t.inverse(maps.clone()), Err(Error::NotInvertible)));
    assert_eq!(
        aug.labels(&params).unwrap().soft_targets(&[0, 2], 3),
        vec![0.25, 0.0, 0.75, 0.0, 0.0, 1.0]
    );
}

#[test]
fn cutout_and_cutmix_expected_maps_match_hand_computed_cases() {
    let maps = tensor(
        vec![1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0, 40.0],
        [2, 1, 2, 2],
    );
    let hole = PixelBox {
        top: 0,
        left: 1,
        bottom: 2,
        right: 2,
    }; // the right column
    let none = PixelBox {
        top: 0,
        left: 0,
        bottom: 0,
        right: 0,
    };
    let cutout = Augmentation::CutOut(CutOut::default());
    let t = cutout
        .transfer(&Params::CutOut(vec![hole, none]), [2, 2])
        .unwrap();
    assert_eq!(
        values(t.expected(maps.clone()).0),
        vec![1.0, 0.0, 3.0, 0.0, 10.0, 20.0, 30.0, 40.0]
    );

    let cutmix = Augmentation::CutMix(CutMix::default());
    let params = Params::CutMix(CutMixParams {
        partner: vec![1, 0],
        boxes: vec![
            PixelBox {
                top: 1,
                left: 0,
                bottom: 2,
                right: 1,
            },
            none,
        ], // bottom-left pixel
        size: [2, 2],
    });
    let t = cutmix.transfer(&params, [2, 2]).unwrap();
    assert_eq!(
        values(t.expected(maps.clone()).0),
        vec![1.0, 2.0, 30.0, 4.0, 10.0, 20.0, 30.0, 40.0]
    );
    assert_eq!(
        values(cutmix.apply(maps, &params).unwrap()),
        vec![1.0, 2.0, 30.0, 4.0, 10.0, 20.0, 30.0, 40.0]
    );
    // Labels mixed by area: image 0 keeps 3/4.
    assert_eq!(
        cutmix.labels(&params).unwrap().soft_targets(&[0, 1], 2),
        vec![0.75, 0.25, 0.0, 1.0]
    );
}

#[test]
fn augmix_weights_sum_to_one() {
    let x = smooth(16, 3, 12, 12);
    let aug = Augmentation::AugMix(AugMix::default());
    let out = aug.run(x, &mut StdRng::seed_from_u64(4)).unwrap();
    let Params::AugMix(p) = &out.params else {
        panic!()
    };
    for (w, m) in p.weights.iter().zip(&p.m) {
        assert_eq!(w.len(), 3);
        assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((0.0..=1.0).contains(m));
    }
    assert!(p
        .chains
        .iter()
        .flatten()
        .all(|c| (1..=3).contains(&c.len())));
    let Transfer::Mix(terms) = &out.transfer else {
        panic!("AugMix mixes")
    };
    assert_eq!(terms.len(), 4);
    for i in 0..16 {
        let total: f64 = terms
            .iter()
            .map(|t| match &t.weight {
                MixWeight::Scalar(v) => v[i],
                MixWeight::Pixels { .. } => panic!(),
            })
            .sum();
        assert!((total - 1.0).abs() < 1e-12);
    }
    let v = values(out.images);
    assert!(v.iter().all(|v| (-1e-6..=1.0 + 1e-6).contains(v)));
    assert_eq!(out.labels, Labels::Same);
}

#[test]
fn photometric_transforms_keep_range_and_compare_maps_as_they_are() {
    let mut rng = StdRng::seed_from_u64(6);
    let x = Tensor::<B, 4>::random(
        [8, 3, 16, 16],
        Distribution::Uniform(0.0, 1.0),
        &Default::default(),
    );
    for aug in [
        Augmentation::ColorJitter(ColorJitter {
            p: 1.0,
            ..ColorJitter::simclr(1.0)
        }),
        Augmentation::Grayscale(Grayscale { p: 1.0 }),
        Augmentation::Clahe(Clahe::default()),
    ] {
        let out = aug.run(x.clone(), &mut rng).unwrap();
        assert_eq!(out.transfer, Transfer::Identity);
        let v = values(out.images.clone());
        assert!(v.iter().all(|v| (0.0..=1.0).contains(v)), "{}", aug.name());
        assert_ne!(v, values(x.clone()), "{} changed nothing", aug.name());
    }
}

#[test]
fn hue_shift_of_a_full_turn_is_the_identity_and_half_turn_swaps_complements() {
    let red = tensor(vec![0.8, 0.2, 0.2], [1, 3, 1, 1]);
    let jitter = ColorJitter {
        brightness: 0.0,
        contrast: 0.0,
        saturation: 0.0,
        hue: 0.5,
        p: 1.0,
    };
    let half = color::Jitter {
        hue: 0.5,
        ..color::Jitter::NONE
    };
    let out = values(jitter.apply(red.clone(), &vec![half]));
    // Hue 0 (red) + 0.5 → cyan with the same value and saturation: (0.2, 0.8, 0.8).
    for (a, b) in out.iter().zip([0.2, 0.8, 0.8]) {
        assert!((a - b).abs() < 1e-5, "{out:?}");
    }
    let third = color::Jitter {
        hue: 1.0 / 3.0,
        ..color::Jitter::NONE
    };
    let out = values(jitter.apply(red, &vec![third]));
    for (a, b) in out.iter().zip([0.2, 0.8, 0.2]) {
        assert!((a - b).abs() < 1e-5, "{out:?}"); // red → green
    }
}

fn every_augmentation() -> Vec<Augmentation> {
    let mut all = geometric();
    all.extend([
        Augmentation::HorizontalFlip(Default::default()),
        Augmentation::VerticalFlip(Default::default()),
        Augmentation::ColorJitter(Default::default()),
        Augmentation::Grayscale(Default::default()),
        Augmentation::Clahe(Default::default()),
        Augmentation::MixUp(Default::default()),
        Augmentation::CutOut(Default::default()),
        Augmentation::CutMix(Default::default()),
        Augmentation::AugMix(Default::default()),
    ]);
    all
}

#[test]
fn same_seed_same_output_and_replay_different_seed_differs() {
    let x = smooth(8, 3, 32, 32);
    for aug in every_augmentation() {
        let a = aug.run(x.clone(), &mut StdRng::seed_from_u64(11)).unwrap();
        let b = aug.run(x.clone(), &mut StdRng::seed_from_u64(11)).unwrap();
        let c = aug.run(x.clone(), &mut StdRng::seed_from_u64(12)).unwrap();
        assert_eq!(a.params, b.params, "{}", aug.name());
        assert_eq!(values(a.images.clone()), values(b.images), "{}", aug.name());
        assert_ne!(a.params, c.params, "{}", aug.name());
        assert_ne!(values(a.images.clone()), values(c.images), "{}", aug.name());
        // Replaying the returned parameters gives the same images.
        let replay = aug.apply(x.clone(), &a.params).unwrap();
        assert_eq!(values(replay), values(a.images), "{}", aug.name());
    }
}

#[test]
fn configs_parse_and_bad_values_are_errors() {
    #[derive(serde::Deserialize)]
    struct File {
        augmentation: Augmentation,
    }
    let parse = |s: &str| toml::from_str::<File>(s).map(|f| f.augmentation);
    assert_eq!(
        parse("[augmentation]\nkind = \"rotation\"\nmax_degrees = 15.0").unwrap(),
        Augmentation::Rotation(Rotation {
            max_degrees: 15.0,
            p: 1.0
        })
    );
    assert_eq!(
        parse("[augmentation]\nkind = \"combined\"").unwrap(),
        Augmentation::Combined
    );
    assert_eq!(
        parse("[augmentation]\nkind = \"affine\"").unwrap(),
        Augmentation::Affine
    );
    // Table 3's affine transformation is table 1's geometric transforms with their settings.
    let combined = Augmentation::Combined.steps().unwrap();
    let geometric: Vec<_> = combined
        .into_iter()
        .filter(|a| !matches!(a, Augmentation::Clahe(_)))
        .collect();
    assert_eq!(Augmentation::Affine.steps().unwrap(), geometric);
    assert_eq!(
        parse("[augmentation]\nkind = \"simclr\"").unwrap(),
        Augmentation::Simclr { strength: 0.5 }
    );
    assert!(parse("[augmentation]\nkind = \"rotation\"\nmax_degree = 15.0").is_err());
    assert!(parse("[augmentation]\nkind = \"twirl\"").is_err());
    for bad in [
        Augmentation::HorizontalFlip(HorizontalFlip { p: 1.5 }),
        Augmentation::MixUp(MixUp { alpha: 0.0 }),
        Augmentation::ResizedCrop(ResizedCrop {
            scale: [0.5, 0.1],
            ..Default::default()
        }),
        Augmentation::Clahe(Clahe {
            grid: [0, 4],
            ..Default::default()
        }),
        Augmentation::Sequence {
            steps: vec![Augmentation::CutMix(CutMix { alpha: f64::NAN })],
        },
    ] {
        let err = bad
            .run(smooth(2, 1, 8, 8), &mut StdRng::seed_from_u64(0))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{err}");
    }
    // Parameters of one augmentation cannot be replayed by another.
    let p =
        Augmentation::Rotation(Default::default()).sample(2, [8, 8], &mut StdRng::seed_from_u64(0));
    let err = Augmentation::CutOut(Default::default())
        .apply(smooth(2, 1, 8, 8), &p)
        .unwrap_err();
    assert!(err.to_string().contains("cut_out"), "{err}");
    // Mixing composed with geometry is refused, not silently wrong.
    let seq = Augmentation::Sequence {
        steps: vec![
            Augmentation::MixUp(Default::default()),
            Augmentation::Rotation(Default::default()),
        ],
    };
    assert!(matches!(
        seq.run(smooth(2, 1, 8, 8), &mut StdRng::seed_from_u64(0)),
        Err(Error::Unsupported(_))
    ));
}

#[test]
fn pair_chooses_inverse_or_expected_and_checks_shapes() {
    let x = smooth(2, 1, 8, 8);
    let out = Augmentation::Rotation(Default::default())
        .run(x.clone(), &mut StdRng::seed_from_u64(0))
        .unwrap();
    let pair = out
        .transfer
        .pair(x.clone(), out.images.clone(), Compare::Auto)
        .unwrap();
    assert_eq!(values(pair.reference.clone()), values(x.clone())); // inverse: originals stay
    assert!(pair.mask.is_some());
    let pair = out
        .transfer
        .pair(x.clone(), out.images.clone(), Compare::Expected)
        .unwrap();
    assert_eq!(values(pair.other), values(out.images.clone()));
    assert!(out
        .transfer
        .pair(x.clone(), smooth(2, 1, 4, 4), Compare::Auto)
        .is_err());
    let mix = Augmentation::MixUp(Default::default())
        .run(x.clone(), &mut StdRng::seed_from_u64(0))
        .unwrap();
    assert!(matches!(
        mix.transfer
            .pair(x.clone(), mix.images.clone(), Compare::Inverse),
        Err(Error::NotInvertible)
    ));
    assert!(mix.transfer.pair(x, mix.images, Compare::Auto).is_ok());
}

/// Every unit is named once: a config `kind = "<name>"` with its defaults parses to the unit
/// that reports that name, validates, and draws parameters that only it can replay.
#[test]
fn every_unit_is_named_once_and_replays_only_its_own_params() {
    let device = Default::default();
    let x = Tensor::<B, 4>::ones([2, 3, 8, 8], &device) * 0.5;
    let rot = Augmentation::Rotation(Default::default());
    let rot_params = rot.sample(2, [8, 8], &mut StdRng::seed_from_u64(0));
    for &name in Augmentation::UNITS {
        let aug: Augmentation = toml::from_str(&format!("kind = \"{name}\"")).unwrap();
        assert_eq!(aug.name(), name);
        aug.validate().unwrap();
        let out = aug.run(x.clone(), &mut StdRng::seed_from_u64(1)).unwrap();
        assert_eq!(aug.apply(x.clone(), &out.params).unwrap().dims(), x.dims());
        if name != "rotation" {
            let err = aug.apply(x.clone(), &rot_params).unwrap_err().to_string();
            assert!(err.contains(name), "{name}: {err}");
        }
    }
    assert_eq!(Augmentation::UNITS.len(), 13);
    let err = toml::from_str::<Augmentation>("kind = \"rotation\"\np = 2.0")
        .unwrap()
        .validate()
        .unwrap_err()
        .to_string();
    assert!(err.contains("rotation.p"), "{err}");
}
