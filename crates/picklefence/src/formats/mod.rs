//! Content identification and readers for the containers that carry pickles: PyTorch (zip,
//! legacy, tar, TorchScript), NumPy (`.npy`, `.npz`), joblib and its compressors, compressed
//! pickles, tar and zip archives (nested, bounded), and the non-pickle model formats a scan must
//! name rather than skip. Identification is by content only, never by file name.
//!
//! The parsers (`zip`, `tar`, `npy`, `torch`, `compress`, `other`) read one format each; the
//! containers that scan with them are in `container/`, one file per kind, behind one trait and
//! one registry.

pub mod compress;
mod container;
mod ctx;
pub mod joblib;
pub mod npy;
pub mod other;
mod pylit;
pub mod tar;
pub mod torch;
pub mod zip;

use serde::Serialize;

use compress::Codec;
pub(crate) use container::{scan_reader, scan_slice};
pub(crate) use ctx::{decoder_at, join, Ctx};

/// What an input is, by content. `name()` is stable (it appears in reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// One or more pickles.
    Pickle,
    /// A pickle carrying joblib `NumpyArrayWrapper` arrays.
    Joblib,
    /// joblib's old single-file compressed format (`ZF`, joblib up to 0.9): a zlib-compressed pickle.
    JoblibZf,
    /// `torch.save` since 1.6: a zip with `<folder>/data.pkl`.
    PytorchZip,
    /// `torch.jit.save`: a zip with `<folder>/constants.pkl` (and `code/`).
    TorchScript,
    /// `torch.save(..., _use_new_zipfile_serialization=False)`: sequential pickles and raw storages.
    PytorchLegacy,
    /// The oldest `torch.save` format: a tar with `sys_info`, `pickle`, `storages`, `tensors`.
    PytorchTar,
    /// A NumPy `.npy` array (a pickle after the header when its dtype is `object`).
    Npy,
    /// `numpy.savez`: a zip of `.npy` members.
    Npz,
    /// Any other zip archive.
    Zip,
    /// Any other tar archive.
    Tar,
    /// A compressed stream (its codec's name is the format's).
    Compressed(Codec),
    /// safetensors: a JSON header and raw tensors, no pickle.
    Safetensors,
    /// GGUF (llama.cpp), no pickle.
    Gguf,
    /// ONNX (protobuf), no pickle.
    Onnx,
    /// HDF5 (Keras `.h5`), no pickle.
    Hdf5,
    /// Keras v3 `.keras` (a zip with `config.json` and `metadata.json`).
    Keras,
    /// An archive or compressor the scanner cannot open.
    UnsupportedArchive(&'static str),
    /// No bytes at all.
    Empty,
    /// Nothing the scanner recognises.
    Unknown,
}

impl Format {
    /// The stable name reports use (`pickle`, `pytorch-zip`, `gzip`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Format::Pickle => "pickle",
            Format::Joblib => "joblib",
            Format::JoblibZf => "joblib-zf",
            Format::PytorchZip => "pytorch-zip",
            Format::TorchScript => "torchscript",
            Format::PytorchLegacy => "pytorch-legacy",
            Format::PytorchTar => "pytorch-tar",
            Format::Npy => "npy",
            Format::Npz => "npz",
            Format::Zip => "zip",
            Format::Tar => "tar",
            Format::Compressed(codec) => codec.name(),
            Format::Safetensors => "safetensors",
            Format::Gguf => "gguf",
            Format::Onnx => "onnx",
            Format::Hdf5 => "hdf5",
            Format::Keras => "keras",
            Format::UnsupportedArchive(name) => name,
            Format::Empty => "empty",
            Format::Unknown => "unknown",
        }
    }

    /// Whether the format can hold pickles the scanner reads.
    pub fn carries_pickles(self) -> bool {
        !matches!(
            self,
            Format::Safetensors
                | Format::Gguf
                | Format::Onnx
                | Format::Hdf5
                | Format::Empty
                | Format::Unknown
        )
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Format {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}
/// Identifies `data` (the whole input) by content: the first container of the registry
/// (`container::REGISTRY`) that recognises it says what it is.
pub fn identify(data: &[u8]) -> Format {
    container::find(data, container::Probe::whole(container::IDENTIFY_MEMBERS)).format()
}
