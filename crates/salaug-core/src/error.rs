//! The error type of salaug-core.

/// Errors a user of salaug-core can cause (bad shapes, unknown feature taps, bad settings).
///
/// Programmer errors inside the crate panic with a message naming the values instead.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum Error {
    /// Two tensors that must have the same shape do not.
    #[error("shape mismatch in {what}: expected {expected:?}, got {got:?}")]
    Shape {
        /// What was being compared.
        what: &'static str,
        /// The shape that was required.
        expected: Vec<usize>,
        /// The shape that was given.
        got: Vec<usize>,
    },
    /// A feature tap that the classifier does not expose was requested.
    #[error("unknown feature tap '{name}'; this model exposes: {available:?}")]
    UnknownTap {
        /// The requested name.
        name: String,
        /// The names the model exposes.
        available: Vec<String>,
    },
    /// A loss weight or numeric setting is out of its domain.
    #[error("invalid setting {name} = {value}: {reason}")]
    InvalidSetting {
        /// The setting's name, as in the config file.
        name: &'static str,
        /// The offending value.
        value: String,
        /// Why it is rejected and what is allowed.
        reason: &'static str,
    },
    /// The model does not support what a saliency method needs from it.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked and why the model cannot give it.
        what: String,
    },
}

/// Result alias of salaug-core.
pub type Result<T> = core::result::Result<T, Error>;

/// Checks that `got` equals `expected`, naming `what` in the error.
pub(crate) fn check_shape(what: &'static str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected == got {
        Ok(())
    } else {
        Err(Error::Shape {
            what,
            expected: expected.to_vec(),
            got: got.to_vec(),
        })
    }
}
