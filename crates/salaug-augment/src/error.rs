//! The error type of salaug-augment.

/// Errors a user can cause: bad settings, shapes that do not fit, impossible requests.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// A setting is out of its domain.
    #[error("invalid augmentation setting {name} = {value}: {reason}")]
    InvalidSetting {
        /// The setting, as in the config file.
        name: String,
        /// The offending value.
        value: String,
        /// What is allowed.
        reason: &'static str,
    },
    /// Tensors that must match in shape do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// What was compared.
        what: &'static str,
        /// The required shape.
        expected: Vec<usize>,
        /// The given shape.
        got: Vec<usize>,
    },
    /// The maps of a mixing augmentation were asked to be warped back.
    #[error("a mixing augmentation has no inverse: compare expected maps instead")]
    NotInvertible,
    /// Parameters drawn by one augmentation were replayed on another.
    #[error("parameters of {params} cannot be replayed by {augmentation}")]
    ParamsMismatch {
        /// The augmentation asked to replay.
        augmentation: &'static str,
        /// The kind of parameters given.
        params: &'static str,
    },
    /// A combination this crate does not support.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// An error of salaug-core (e.g. while computing the maps that an augmentation pairs).
    #[error(transparent)]
    Core(#[from] salaug_core::Error),
}

/// Result alias of salaug-augment.
pub type Result<T> = core::result::Result<T, Error>;
