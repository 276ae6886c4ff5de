//! Shape changes applied once after loading: zero padding, resizing, gray to RGB.

use image::imageops::FilterType;

use super::ImageSet;
pub use crate::config::Prepare;

impl Prepare {
    /// The `[c, h, w]` of images of `shape` after this preparation.
    pub fn shape(&self, [c, h, w]: [usize; 3]) -> [usize; 3] {
        let (h, w) = match self.pad_to {
            Some(p) => (h.max(p), w.max(p)),
            None => (h, w),
        };
        let (h, w) = self.resize_to.map_or((h, w), |s| (s, s));
        [if self.rgb && c == 1 { 3 } else { c }, h, w]
    }

    /// Applies the preparation.
    pub fn apply(&self, set: ImageSet) -> ImageSet {
        let mut set = set;
        if let Some(p) = self.pad_to {
            set = pad(set, p);
        }
        if let Some(s) = self.resize_to {
            if set.shape[1] != s || set.shape[2] != s {
                set = resize(set, s);
            }
        }
        if self.rgb && set.shape[0] == 1 {
            set = to_rgb(set);
        }
        set
    }
}

fn map_images(set: ImageSet, shape: [usize; 3], f: impl Fn(&[u8]) -> Vec<u8>) -> ImageSet {
    let mut pixels = Vec::with_capacity(set.len() * shape.iter().product::<usize>());
    for i in 0..set.len() {
        pixels.extend(f(set.image(i)));
    }
    ImageSet {
        pixels,
        shape,
        ..set
    }
}

fn pad(set: ImageSet, to: usize) -> ImageSet {
    let [c, h, w] = set.shape;
    if h >= to && w >= to {
        return set;
    }
    let (nh, nw) = (h.max(to), w.max(to));
    let (top, left) = ((nh - h) / 2, (nw - w) / 2);
    map_images(set, [c, nh, nw], |img| {
        let mut out = vec![0u8; c * nh * nw];
        for ch in 0..c {
            for y in 0..h {
                let src = &img[(ch * h + y) * w..(ch * h + y + 1) * w];
                let dst = (ch * nh + y + top) * nw + left;
                out[dst..dst + w].copy_from_slice(src);
            }
        }
        out
    })
}

fn resize(set: ImageSet, to: usize) -> ImageSet {
    let [c, h, w] = set.shape;
    map_images(set, [c, to, to], |img| {
        let mut out = Vec::with_capacity(c * to * to);
        for ch in 0..c {
            let plane = image::GrayImage::from_raw(
                w as u32,
                h as u32,
                img[ch * h * w..(ch + 1) * h * w].to_vec(),
            )
            .expect("plane size matches");
            out.extend(
                image::imageops::resize(&plane, to as u32, to as u32, FilterType::Triangle)
                    .into_raw(),
            );
        }
        out
    })
}

fn to_rgb(set: ImageSet) -> ImageSet {
    let [_, h, w] = set.shape;
    map_images(set, [3, h, w], |img| img.repeat(3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_resize_rgb() {
        let set = ImageSet {
            pixels: vec![9; 2 * 2 * 4],
            labels: vec![0, 1],
            shape: [1, 2, 4],
            classes: 2,
        };
        let p = Prepare {
            pad_to: Some(4),
            resize_to: None,
            rgb: true,
        };
        let out = p.apply(set.clone());
        assert_eq!(out.shape, [3, 4, 4]);
        assert_eq!(p.shape(set.shape), out.shape);
        // Row 0 is padding, rows 1-2 the image, row 3 padding; every channel the same.
        assert_eq!(
            &out.image(1)[..16],
            &[0, 0, 0, 0, 9, 9, 9, 9, 9, 9, 9, 9, 0, 0, 0, 0]
        );
        assert_eq!(&out.image(1)[16..32], &out.image(1)[..16]);
        let big = Prepare {
            resize_to: Some(8),
            ..Default::default()
        }
        .apply(out);
        assert_eq!(big.shape, [3, 8, 8]);
        assert_eq!(big.pixels.len(), 2 * 3 * 64);
    }
}
