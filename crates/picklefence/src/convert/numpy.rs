//! NumPy inputs: a `.npy` array (one tensor) or an `.npz` archive (one tensor per `.npy`
//! member, named as `numpy.load` names it), read from their headers; object arrays (a pickle)
//! have no safetensors form.

use std::borrow::Cow;

use crate::formats::npy::{parse_header, NpyHeader, Payload};
use crate::formats::zip::ZipArchive;

use super::storages::member;
use super::tensor::{Dtype, TensorSpec};
use super::ConvertError;

/// Members read at most from an `.npz`.
const MAX_MEMBERS: usize = 1 << 16;

/// The arrays of an input and the bytes they read.
pub(super) struct Arrays<'a> {
    pub specs: Vec<TensorSpec>,
    pub records: Vec<Cow<'a, [u8]>>,
}

/// A `.npy` file: one tensor, named `name`.
pub(super) fn npy<'a>(
    data: Cow<'a, [u8]>,
    at: u64,
    name: &str,
    into: &mut Arrays<'a>,
) -> Result<(), ConvertError> {
    let header = parse_header(&data).map_err(|e| ConvertError::Malformed {
        offset: at,
        what: format!("{name}: {e}"),
    })?;
    let spec = array_spec(&header, data.len() as u64, into.records.len(), at, name)?;
    into.specs.push(spec);
    into.records.push(data);
    Ok(())
}

/// An `.npz` archive: each `.npy` member, named without its `.npy`.
pub(super) fn npz(data: &[u8]) -> Result<Arrays<'_>, ConvertError> {
    let archive = ZipArchive::parse(data, MAX_MEMBERS).map_err(|e| ConvertError::Malformed {
        offset: 0,
        what: e.to_string(),
    })?;
    let mut arrays = Arrays {
        specs: Vec::new(),
        records: Vec::new(),
    };
    for entry in &archive.entries {
        let name = entry.display_name();
        let Some(key) = name.strip_suffix(".npy") else {
            continue;
        };
        let bytes = member(data, entry)?;
        npy(
            bytes,
            entry.data_offset.unwrap_or(entry.local_offset),
            key,
            &mut arrays,
        )?;
    }
    Ok(arrays)
}

/// The tensor a header describes over the record of `len` bytes it heads.
fn array_spec(
    header: &NpyHeader,
    len: u64,
    record: usize,
    at: u64,
    name: &str,
) -> Result<TensorSpec, ConvertError> {
    let shown = header.type_str.clone().unwrap_or_else(|| header.descr.clone());
    if header.payload != Payload::Raw {
        return Err(ConvertError::Unsupported {
            offset: at,
            what: format!("{name}: an array of dtype {shown} (Python objects or an unknown type)"),
        });
    }
    let layout = Layout {
        shape: header.shape.clone(),
        fortran: header.fortran_order,
        offset_bytes: header.data_offset,
        bytes: len.saturating_sub(header.data_offset),
    };
    spec(name, at, header.type_str.as_deref(), &shown, layout, record)
}

/// Where an array's items lie in its record.
pub(super) struct Layout {
    pub shape: Vec<u64>,
    /// Column-major items.
    pub fortran: bool,
    /// Where the items start in the record, and how many bytes follow.
    pub offset_bytes: u64,
    pub bytes: u64,
}

/// The tensor of an array of NumPy type `type_str` (None: a structured dtype, `shown`) laid out
/// as `layout` in record `record`.
pub(super) fn spec(
    name: &str,
    at: u64,
    type_str: Option<&str>,
    shown: &str,
    layout: Layout,
    record: usize,
) -> Result<TensorSpec, ConvertError> {
    let unsupported = |what: String| ConvertError::Unsupported {
        offset: at,
        what: format!("{name}: {what}"),
    };
    let type_str = type_str.ok_or_else(|| unsupported(format!("a structured dtype {shown}")))?;
    let (dtype, big_endian) = Dtype::from_numpy(type_str)
        .ok_or_else(|| unsupported(format!("dtype {type_str} has no safetensors counterpart")))?;
    let shape = layout.shape;
    // Element strides: row-major, or column-major for a Fortran-ordered array.
    let mut stride = vec![0u64; shape.len()];
    let mut step = 1u64;
    let order: Vec<usize> = if layout.fortran {
        (0..shape.len()).collect()
    } else {
        (0..shape.len()).rev().collect()
    };
    for i in order {
        if let (Some(slot), Some(&d)) = (stride.get_mut(i), shape.get(i)) {
            *slot = step;
            step = step.saturating_mul(d.max(1));
        }
    }
    TensorSpec::from_array(
        name,
        at,
        dtype,
        record,
        layout.offset_bytes,
        layout.bytes,
        shape,
        stride,
        big_endian,
    )
    .map_err(|what| ConvertError::Malformed {
        offset: at,
        what: format!("{name}: {what}"),
    })
}
