//! Model formats that hold no pickle (safetensors, GGUF, ONNX, HDF5): recognised so that a scan
//! names them rather than skipping them, safetensors headers validated
//! ([`crate::formats::other`]). A stream of one is read into memory (bounded) and scanned here.

use crate::findings::{FindingKind, Severity};

use super::super::other;
use super::{Container, Ctx, Format, Parsed, Probe};

/// Safetensors, GGUF, ONNX and HDF5 files.
pub(crate) struct NonPickle;

/// A non-pickle model file.
struct Recognised<'d> {
    data: &'d [u8],
    format: Format,
}

impl Container for NonPickle {
    fn identify<'d>(&self, data: &'d [u8], _probe: Probe) -> Option<Box<dyn Parsed<'d> + 'd>> {
        // The order identification has always tried them in.
        let format = if data.starts_with(b"GGUF") {
            Format::Gguf
        } else if other::looks_like_hdf5(data) {
            Format::Hdf5
        } else if other::looks_like_safetensors(data) {
            Format::Safetensors
        } else if other::looks_like_onnx(data) {
            Format::Onnx
        } else {
            return None;
        };
        Some(Box::new(Recognised { data, format }))
    }
}

impl<'d> Parsed<'d> for Recognised<'d> {
    fn format(&self) -> Format {
        self.format
    }

    fn scan(self: Box<Self>, ctx: &mut Ctx<'_>, location: &str, _depth: usize) -> Format {
        let data = self.data;
        match self.format {
            Format::Safetensors => match other::check_safetensors(data) {
                Ok(count) => ctx.finding(
                    location,
                    FindingKind::NonPickleFormat,
                    Severity::Info,
                    0,
                    format!(
                        "safetensors with {count} tensors: not pickle-based, nothing here runs code on load"
                    ),
                ),
                Err(problem) => ctx.finding(
                    location,
                    FindingKind::NonPickleFormat,
                    Severity::Warning,
                    0,
                    format!("safetensors with a bad header: {problem}; loaders reject it"),
                ),
            },
            Format::Gguf => {
                let version = other::gguf_version(data).map_or_else(|| "?".to_string(), |v| v.to_string());
                ctx.finding(
                    location,
                    FindingKind::NonPickleFormat,
                    Severity::Info,
                    0,
                    format!("GGUF (version {version}): not pickle-based"),
                );
            }
            Format::Onnx => ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Info,
                0,
                "ONNX (protobuf): not pickle-based; custom operators it names are not checked".into(),
            ),
            // HDF5, the one left (identify names no other format).
            _ => ctx.finding(
                location,
                FindingKind::NonPickleFormat,
                Severity::Info,
                0,
                "HDF5 (Keras .h5): not pickle-based; Lambda layers it may hold are not checked".into(),
            ),
        }
        self.format
    }
}
