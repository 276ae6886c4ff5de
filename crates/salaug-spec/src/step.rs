//! The record `salaug step --against` prints: how one training step of a configuration agrees
//! with the same step recorded elsewhere (another backend, another machine).

use serde::{Deserialize, Serialize};

/// The agreement of two records of one training step (`salaug step`): the same initial
/// weights and batch, each with its losses and every parameter's gradient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepAgreement {
    /// The backend's name for the device of this process.
    pub device: String,
    /// The device recorded in the other file.
    pub against_device: String,
    /// Per loss term (`total`, `class`, `sal`, `inv`): |ours − theirs| / max(|theirs|, 1e-12).
    pub losses: Vec<(String, f64)>,
    /// ‖g − g′‖ / ‖g′‖ over all parameters' gradients together.
    pub grad_rel: f64,
    /// The cosine between the two gradients (all parameters together).
    pub grad_cosine: f64,
    /// The parameter whose gradient differs most, relatively, and by how much.
    pub worst: (String, f64),
    /// Parameters compared.
    pub params: usize,
    /// The largest relative error allowed, for each loss term and for `grad_rel`.
    pub tol: f64,
    /// Every loss term and `grad_rel` within `tol`.
    pub agree: bool,
}

impl StepAgreement {
    /// The JSON line `salaug step --against` prints.
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("an agreement record serialises")
    }

    /// Reads the record from `salaug step --against`'s output (its last non-empty line).
    pub fn from_output(output: &str) -> Result<StepAgreement, String> {
        let line = output
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .ok_or("salaug step printed nothing")?;
        serde_json::from_str(line).map_err(|e| format!("not a step agreement record: {e}: {line}"))
    }
}
