//! The setting checks that the units' `validate` share. Errors name the field only; the
//! [`Augmentation`](crate::Augmentation) that holds the unit prefixes its config name
//! (`rotation.p`).

use crate::error::{Error, Result};

/// An out-of-domain `field = value`.
pub fn bad(field: &str, value: f64, reason: &'static str) -> Result<()> {
    Err(Error::InvalidSetting {
        name: field.to_string(),
        value: value.to_string(),
        reason,
    })
}

/// A probability in `[0, 1]`.
pub fn prob(field: &str, p: f64) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        bad(field, p, "a probability must be in [0, 1]")
    }
}

/// A finite number `> 0`.
pub fn positive(field: &str, v: f64) -> Result<()> {
    if v > 0.0 && v.is_finite() {
        Ok(())
    } else {
        bad(field, v, "must be a finite number > 0")
    }
}

/// A range `[lo, hi]` of finite numbers with `min ≤ lo ≤ hi`.
pub fn range(field: &str, [lo, hi]: [f64; 2], min: f64) -> Result<()> {
    if lo.is_finite() && hi.is_finite() && lo <= hi && lo >= min {
        Ok(())
    } else {
        bad(
            field,
            lo,
            "must be a range [lo, hi] with lo ≤ hi, within bounds",
        )
    }
}
