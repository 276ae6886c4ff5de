//! `salaug step`: one training step of a config recorded to a file, and compared with a
//! record made elsewhere (another backend, another machine): the way a GPU build is checked
//! against the CPU one.
//!
//! The step is [`Trainee::losses`] and its backward on the first batch of `train.batch_size`
//! training images (the balanced subset `salaug time` uses). `T(x)` is drawn on the CPU from
//! the run seed and the batch's indices ([`crate::trainee::batch_rng`]), so both sides see the
//! same augmented images. The record (`.safetensors`, f32) holds
//! - `param/<path>`: every tensor of the model before the step (parameters and BatchNorm
//!   running statistics),
//! - `loss/<term>`: `total`, `class` and, when trained, `sal` and `inv` (shape `[1]`),
//! - `grad/<path>`: the gradient of `total` for every parameter,
//!
//! with the device, the architecture and the resolved config in its metadata. With `--against`
//! the model first takes the other record's `param/*` (initialisation differs between
//! backends), the config must be the other record's, and [`compare`] gives the
//! [`StepAgreement`].

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use burn::backend::Autodiff;
use burn::module::ParamId;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, TensorSnapshot};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use salaug_core::AutodiffBase;
use salaug_spec::StepAgreement;

use crate::config::RunConfig;
use crate::data::ImageBatcher;
use crate::timing::one_batch;
use crate::trainee::{build_model, Trainee};

/// A recorded tensor: its shape and its values, row-major.
pub type Recorded = (Vec<usize>, Vec<f32>);

/// One recorded step: named f32 tensors (`param/…`, `loss/…`, `grad/…`) and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Name → (shape, values).
    pub tensors: HashMap<String, Recorded>,
    /// `device`, `arch`, `config` (the resolved config's TOML).
    pub metadata: HashMap<String, String>,
}

impl StepRecord {
    /// Reads a record written by [`StepRecord::write`].
    pub fn read(path: &Path) -> Result<StepRecord> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let what = || format!("{}: not a `salaug step` record", path.display());
        let (_, meta) = SafeTensors::read_metadata(&bytes).with_context(what)?;
        let file = SafeTensors::deserialize(&bytes).with_context(what)?;
        let metadata = meta.metadata().clone().unwrap_or_default();
        if !metadata.contains_key("config") || !metadata.contains_key("device") {
            bail!("{}: it has no `config` and `device` metadata", what());
        }
        let mut tensors = HashMap::new();
        for (name, view) in file.tensors() {
            if view.dtype() != Dtype::F32 {
                bail!("{}: tensor {name} is {:?}, not F32", what(), view.dtype());
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        Ok(StepRecord { tensors, metadata })
    }

    /// Writes the record to `path` whole: aside, then renamed.
    pub fn write(&self, path: &Path) -> Result<()> {
        let bytes: Vec<(&String, Vec<u8>, &Vec<usize>)> = self
            .tensors
            .iter()
            .map(|(name, (shape, v))| {
                (
                    name,
                    v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                    shape,
                )
            })
            .collect();
        let views = bytes
            .iter()
            .map(|(name, data, shape)| {
                TensorView::new(Dtype::F32, shape.to_vec(), data)
                    .map(|view| (name.as_str(), view))
                    .map_err(|e| anyhow!("tensor {name}: {e}"))
            })
            .collect::<Result<Vec<_>>>()?;
        let part = path.with_extension("safetensors.part");
        safetensors::serialize_to_file(views, Some(self.metadata.clone()), &part)
            .map_err(|e| anyhow!("writing {}: {e}", part.display()))?;
        std::fs::rename(&part, path).with_context(|| format!("writing {}", path.display()))
    }

    /// How many entries are under `prefix` (`param/`, `loss/`, `grad/`).
    pub fn under_count(&self, prefix: &str) -> usize {
        self.under(prefix).len()
    }

    /// The entries under `prefix` (`param/`, `loss/`, `grad/`), by the rest of their name.
    fn under(&self, prefix: &str) -> Vec<(&str, &Recorded)> {
        let mut v: Vec<_> = (self.tensors.iter())
            .filter_map(|(k, t)| k.strip_prefix(prefix).map(|rest| (rest, t)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(b.0));
        v
    }
}

/// Runs one training step of `config` on `device` and records it. With `start`, the model
/// first takes that record's `param/*` entries (every tensor of the model must be there with
/// its shape).
pub fn record_step<B: AutodiffBase>(
    config: &RunConfig,
    start: Option<&StepRecord>,
    device: &B::Device,
) -> Result<StepRecord> {
    let mut config = config.clone();
    let (data, n) = one_batch(&mut config, "for a step")?;
    let mut model: Trainee<Autodiff<B>> = build_model::<Autodiff<B>>(&config, &data, device)?;
    if let Some(start) = start {
        let snapshots = (start.under("param/").into_iter())
            .map(|(path, (shape, v))| {
                let data = TensorData::new(v.clone(), shape.clone());
                let stack = path.split('.').map(str::to_string).collect();
                TensorSnapshot::from_data(data, stack, vec![], ParamId::new())
            })
            .collect();
        let result = model.apply(snapshots, None, None, false);
        let missing: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
        let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        if !missing.is_empty() || !result.unused.is_empty() || !errors.is_empty() {
            bail!(
                "the record's parameters do not fit this config's model: missing {missing:?}, \
                 not in the model {:?}, errors {errors:?}",
                result.unused
            );
        }
    }
    let snapshots = model.collect(None, None, false);
    let mut tensors = HashMap::new();
    for s in &snapshots {
        let data = s
            .to_data()
            .map_err(|e| anyhow!("{}: {e:?}", s.full_path()))?;
        tensors.insert(format!("param/{}", s.full_path()), values(data)?);
    }
    let batch = ImageBatcher::new(data.train.clone()).make((0..n).collect(), device);
    let l = model.losses(&batch)?;
    let terms = [
        ("total", Some(l.total.clone())),
        ("class", Some(l.class)),
        ("sal", l.sal),
        ("inv", l.inv),
    ];
    for (name, term) in terms {
        if let Some(t) = term {
            tensors.insert(format!("loss/{name}"), values(t.inner().into_data())?);
        }
    }
    let grads = GradientsParams::from_grads(l.total.backward(), &model);
    for s in &snapshots {
        let Some(id) = s.tensor_id else { continue };
        let grad = match s.shape.num_dims() {
            1 => grads.get::<B, 1>(id).map(|g| g.into_data()),
            2 => grads.get::<B, 2>(id).map(|g| g.into_data()),
            3 => grads.get::<B, 3>(id).map(|g| g.into_data()),
            4 => grads.get::<B, 4>(id).map(|g| g.into_data()),
            d => bail!("{}: a parameter of rank {d}", s.full_path()),
        };
        if let Some(g) = grad {
            tensors.insert(format!("grad/{}", s.full_path()), values(g)?);
        }
    }
    if !tensors.keys().any(|k| k.starts_with("grad/")) {
        bail!("the step gave no parameter gradient");
    }
    // Where the data lie is not part of the step: the two records may come from machines
    // with the data in different folders.
    config.data.dir = None;
    let metadata = HashMap::from([
        ("device".to_string(), B::name(device)),
        ("arch".to_string(), config.model.arch.name().to_string()),
        ("config".to_string(), config.to_toml()),
    ]);
    Ok(StepRecord { tensors, metadata })
}

fn values(data: TensorData) -> Result<Recorded> {
    let shape = data.shape.to_vec();
    let v = data
        .convert::<f32>()
        .to_vec::<f32>()
        .map_err(|e| anyhow!("{e:?}"))?;
    Ok((shape, v))
}

/// How `ours` agrees with `theirs` (the record it started from): the loss terms, the whole
/// gradient and the worst parameter, each as a relative error, against `tol`.
pub fn compare(ours: &StepRecord, theirs: &StepRecord, tol: f64) -> Result<StepAgreement> {
    if ours.metadata.get("config") != theirs.metadata.get("config") {
        bail!("the two records are of different configs (compare their `config` metadata)");
    }
    let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1e-12);
    let (our_losses, their_losses) = (ours.under("loss/"), theirs.under("loss/"));
    let names = |v: &[(&str, _)]| v.iter().map(|(k, _)| k.to_string()).collect::<Vec<_>>();
    if names(&our_losses) != names(&their_losses) {
        bail!(
            "the records have different loss terms: {:?} and {:?}",
            names(&our_losses),
            names(&their_losses)
        );
    }
    let losses: Vec<(String, f64)> = (our_losses.iter().zip(&their_losses))
        .map(|((k, a), (_, b))| (k.to_string(), rel(a.1[0] as f64, b.1[0] as f64)))
        .collect();
    let (our_grads, their_grads) = (ours.under("grad/"), theirs.under("grad/"));
    if names(&our_grads) != names(&their_grads) {
        bail!("the records have gradients of different parameters");
    }
    let (mut diff2, mut ref2, mut ours2, mut dot) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    let mut worst = (String::new(), 0.0f64);
    for ((k, a), (_, b)) in our_grads.iter().zip(&their_grads) {
        if a.0 != b.0 {
            bail!("grad/{k}: shapes {:?} and {:?}", a.0, b.0);
        }
        let (mut d2, mut r2) = (0.0f64, 0.0f64);
        for (&x, &y) in a.1.iter().zip(&b.1) {
            let (x, y) = (x as f64, y as f64);
            d2 += (x - y) * (x - y);
            r2 += y * y;
            ours2 += x * x;
            dot += x * y;
        }
        diff2 += d2;
        ref2 += r2;
        // A parameter whose reference gradient is zero is judged by its absolute difference.
        let e = if r2 > 0.0 {
            (d2 / r2).sqrt()
        } else {
            d2.sqrt()
        };
        if e >= worst.1 {
            worst = (k.to_string(), e);
        }
    }
    let grad_rel = (diff2 / ref2.max(1e-300)).sqrt();
    let grad_cosine = (dot / (ours2.sqrt() * ref2.sqrt()).max(1e-300)).clamp(-1.0, 1.0);
    let agree = grad_rel <= tol && losses.iter().all(|(_, e)| *e <= tol);
    let device = |r: &StepRecord| r.metadata.get("device").cloned().unwrap_or_default();
    Ok(StepAgreement {
        device: device(ours),
        against_device: device(theirs),
        losses,
        grad_rel,
        grad_cosine,
        worst,
        params: our_grads.len(),
        tol,
        agree,
    })
}
