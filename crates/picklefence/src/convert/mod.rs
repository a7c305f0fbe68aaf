//! Pickle checkpoints to safetensors, without torch and without running the file: a checkpoint
//! whose scan is clean under the policy is evaluated as data ([`crate::evaluate`]: dicts, lists,
//! tensors, storages, module states; nothing is called) and its tensors are written with the
//! `safetensors` crate. NumPy `.npy`/`.npz` arrays are read from their headers (`numpy.rs`);
//! NumPy arrays in a pickle or a joblib file (plain or compressed) from the pickle, as
//! `joblib.load` reads it (`storages::pickled`), nested containers as for a checkpoint.
//!
//! - `storages.rs` finds each storage's bytes (zip records, the legacy format's sequential
//!   records, the tar format's storages and tensors members) and the byte order;
//! - `tree.rs` walks the loaded value: tensors by dotted path, plain leaves as JSON metadata,
//!   whole-module pickles as `state_dict()` would name their parameters and buffers;
//! - `tensor.rs` checks each view against its storage and writes it out (contiguous views are
//!   borrowed from the input, others materialised one tensor at a time).
//!
//! Tensors that share a storage are written separately (each with its own bytes), so that every
//! key `torch.load` gives is in the output; [`Converted::shared`] lists them.

mod numpy;
mod storages;
mod tensor;
mod tree;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::formats::Format;
use crate::policy::Policy;
use crate::scan::{scan_bytes, with_file, Pages, ScanError, ScanOptions, ScanReport, Verdict};

/// Why a checkpoint was not converted (no output file is left behind in any case).
#[derive(Debug, Error)]
pub enum ConvertError {
    /// The scan found violations under the policy in force: the file is never evaluated.
    #[error("the file is unsafe under the policy in force ({} findings); nothing was converted", .0.findings.len())]
    Unsafe(Box<ScanReport>),
    /// The input is not a checkpoint format the converter reads.
    #[error("not a checkpoint the converter reads (PyTorch, NumPy, or NumPy arrays in a pickle or joblib file): the content is {0}")]
    NotACheckpoint(String),
    /// The checkpoint holds something safetensors cannot express (a quantized or sparse tensor,
    /// a dtype without a safetensors counterpart), at `offset` of its pickle or record.
    #[error("offset {offset}: {what}")]
    Unsupported {
        /// Byte offset in the pickle (or the input, for records) of the value.
        offset: u64,
        /// What it is.
        what: String,
    },
    /// The checkpoint contradicts itself (a view outside its storage, a missing storage record,
    /// a pickle that stops where `torch.load` would raise).
    #[error("offset {offset}: {what}")]
    Malformed {
        /// Byte offset in the pickle (or the input, for records) of the value.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// Two values of the checkpoint flatten to the same name.
    #[error("two values of the checkpoint are both named {name:?} once their keys are joined with '.'")]
    NameClash {
        /// The name.
        name: String,
    },
    /// The output would be far larger than the input (views of one storage are written
    /// separately, and expanded views are materialised).
    #[error("the output would be {bytes} bytes, more than the limit of {limit} for this input")]
    TooLarge {
        /// Bytes the tensors would take.
        bytes: u64,
        /// The limit ([`output_limit`]).
        limit: u64,
    },
    /// The input file could not be read.
    #[error(transparent)]
    Input(#[from] ScanError),
    /// Writing the output failed (the partial file is removed).
    #[error("cannot write {path}: {message}")]
    Write {
        /// The output path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// A value of the checkpoint that is neither a tensor nor written as metadata.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dropped {
    /// Its dotted path (`""` for the checkpoint itself).
    pub path: String,
    /// What it is and why it was not written.
    pub what: String,
}

/// What a conversion wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Converted {
    /// The input's format (as the scanner names it).
    pub format: String,
    /// Tensor names, in the checkpoint's order.
    pub tensors: Vec<String>,
    /// Bytes of tensor data written.
    pub tensor_bytes: u64,
    /// `__metadata__`: each plain leaf (numbers, strings, lists and dicts of them) as JSON text
    /// under its dotted path, and `format: pt`.
    pub metadata: BTreeMap<String, String>,
    /// Values not written, with why.
    pub dropped: Vec<Dropped>,
    /// Tensors whose storage an earlier tensor also uses: `(tensor, first tensor of that
    /// storage)`. Each is written with its own bytes.
    pub shared: Vec<(String, String)>,
}

/// The most bytes of tensor data a conversion writes for an input of `input_len` bytes: twice
/// the input and 256 MiB more. Real checkpoints stay far below it (tied weights double a
/// tensor at most); a file whose thousands of views of one storage, or expanded views, would
/// fill a disk does not.
pub fn output_limit(input_len: u64) -> u64 {
    input_len.saturating_mul(2).saturating_add(256 << 20)
}

/// A checkpoint read and checked, ready to be written.
#[derive(Debug)]
pub struct Plan<'a> {
    converted: Converted,
    storages: Vec<std::borrow::Cow<'a, [u8]>>,
    tensors: Vec<tensor::Planned>,
}

impl Plan<'_> {
    /// What writing it produces.
    pub fn summary(&self) -> &Converted {
        &self.converted
    }

    /// Writes the safetensors file to `output` through a temporary file in the same directory,
    /// renamed into place once complete.
    pub fn write(&self, output: &Path) -> Result<Converted, ConvertError> {
        tensor::write(self, output, &Pages::none())?;
        Ok(self.converted.clone())
    }

    /// The safetensors file, in memory (at most [`output_limit`] bytes of tensors).
    pub fn to_bytes(&self) -> Result<Vec<u8>, ConvertError> {
        tensor::serialize(self)
    }
}

/// Reads the checkpoint in `data` (scanned first with `policy`: an unsafe file is refused
/// before it is evaluated).
pub fn plan<'a>(data: &'a [u8], policy: &Policy, options: &ScanOptions) -> Result<Plan<'a>, ConvertError> {
    let report = scan_bytes(data, policy, options);
    if report.verdict == Verdict::Unsafe {
        return Err(ConvertError::Unsafe(Box::new(report)));
    }
    let format = crate::formats::identify(data);
    let mut converted = Converted {
        format: format.name().to_string(),
        ..Converted::default()
    };
    let (walked, storages) = match format {
        Format::PytorchZip | Format::PytorchLegacy | Format::PytorchTar => {
            let found = match format {
                Format::PytorchZip => storages::zip(data)?,
                Format::PytorchLegacy => storages::legacy(data)?,
                _ => storages::tar(data)?,
            };
            // NumPy arrays in the checkpoint come after its storage records.
            let (walked, arrays) = tree::walk(&found, &mut converted)?;
            let mut storages = found.into_storages();
            storages.extend(arrays);
            (walked, storages)
        }
        Format::Pickle | Format::Joblib => {
            let (found, format) = storages::pickled(data, policy, options)?;
            let (walked, arrays) = tree::walk(&found, &mut converted)?;
            converted.format = format.to_string();
            (walked, arrays)
        }
        Format::Compressed(codec) => {
            // joblib's compressed dumps: the whole pickle decompressed (within the scan's
            // budget), each array then copied out of it.
            let inner = decompress(codec, data, options)?;
            if !matches!(crate::formats::identify(&inner), Format::Pickle | Format::Joblib) {
                return Err(ConvertError::NotACheckpoint(format!(
                    "{} of no pickle",
                    codec.name()
                )));
            }
            let (found, format) = storages::pickled(&inner, policy, options)?;
            let (walked, arrays) = tree::walk(&found, &mut converted)?;
            converted.format = format!("{format} ({})", codec.name());
            let owned = arrays
                .into_iter()
                .map(|bytes| Cow::Owned(bytes.into_owned()))
                .collect();
            (walked, owned)
        }
        Format::Npy | Format::Npz => {
            let arrays = match format {
                Format::Npy => {
                    let mut arrays = numpy::Arrays {
                        specs: Vec::new(),
                        records: Vec::new(),
                    };
                    numpy::npy(std::borrow::Cow::Borrowed(data), 0, "array", &mut arrays)?;
                    arrays
                }
                _ => numpy::npz(data)?,
            };
            (arrays.specs, arrays.records)
        }
        other => return Err(ConvertError::NotACheckpoint(other.name().to_string())),
    };
    if walked.is_empty()
        && storages.is_empty()
        && matches!(format, Format::Pickle | Format::Joblib | Format::Compressed(_))
    {
        return Err(ConvertError::NotACheckpoint(format!(
            "a {} of no NumPy array",
            converted.format
        )));
    }
    let tensors = tensor::plan_all(walked, &storages, &mut converted)?;
    let limit = output_limit(data.len() as u64);
    if converted.tensor_bytes > limit {
        return Err(ConvertError::TooLarge {
            bytes: converted.tensor_bytes,
            limit,
        });
    }
    Ok(Plan {
        converted,
        storages,
        tensors,
    })
}

/// The whole of a compressed input, within the scan's decompression budget.
fn decompress(
    codec: crate::formats::compress::Codec,
    data: &[u8],
    options: &ScanOptions,
) -> Result<Vec<u8>, ConvertError> {
    use crate::formats::compress::{open, read_bounded, Budget};
    let budget = Budget::new(options.max_decompressed, options.max_ratio, options.ratio_floor);
    let too_large = |what: String| ConvertError::Unsupported { offset: 0, what };
    let reader = open(codec, data, &budget).map_err(|e| ConvertError::Malformed {
        offset: 0,
        what: format!("{}: {e}", codec.name()),
    })?;
    match read_bounded(reader, options.max_decompressed) {
        Ok(Ok(inner)) => Ok(inner),
        Ok(Err(max)) => Err(too_large(format!(
            "the {} stream decompresses to more than {max} bytes",
            codec.name()
        ))),
        Err((e, at)) => Err(match budget.take_tripped() {
            Some(limit) => too_large(limit),
            None => ConvertError::Malformed {
                offset: 0,
                what: format!(
                    "{} stream broken after {at} decompressed bytes: {e}",
                    codec.name()
                ),
            },
        }),
    }
}

/// Converts the checkpoint at `input` into the safetensors file `output` (see [`plan`]). A
/// file changed while it is read is an error, and no output is left behind.
pub fn convert_path(
    input: &Path,
    output: &Path,
    policy: &Policy,
    options: &ScanOptions,
) -> Result<Converted, ConvertError> {
    let staged = tensor::staging_path(output);
    // Each tensor's pages of a mapped input are given back once written: memory stays bounded
    // by the largest tensor, not the checkpoint.
    let written = with_file(input, |data, pages| {
        let plan = plan(data, policy, options)?;
        tensor::write(&plan, &staged, pages)?;
        Ok(plan.converted)
    });
    let converted = match written {
        Ok(Ok(converted)) => converted,
        Ok(Err(e)) => return Err(e),
        Err(e) => {
            let _ = std::fs::remove_file(&staged);
            return Err(e.into());
        }
    };
    std::fs::rename(&staged, output).map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        ConvertError::Write {
            path: output.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(converted)
}
