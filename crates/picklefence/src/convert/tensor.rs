//! One tensor of a checkpoint: its storage, dtype and view (offset, size, stride), checked
//! against the storage's bytes, and written out as a contiguous little-endian block.

use std::borrow::Cow;
use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::tensor::View;
use safetensors::Dtype as StDtype;

use crate::evaluate::{Heap, Val};

use super::storages::{Found, TarTensor};
use super::{ConvertError, Converted, Plan};
use crate::scan::Pages;

/// An element type torch and safetensors share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dtype {
    safetensors: StDtype,
    /// Bytes per element.
    size: u64,
    /// Bytes that are swapped together to change byte order (a complex number's parts apart).
    unit: u64,
}

impl Dtype {
    const fn new(safetensors: StDtype, size: u64) -> Self {
        Dtype {
            safetensors,
            size,
            unit: size,
        }
    }

    /// The dtype of a typed storage class (`FloatStorage`, ...).
    fn from_storage(class: &str) -> Option<Dtype> {
        Some(match class {
            "DoubleStorage" => Dtype::new(StDtype::F64, 8),
            "FloatStorage" => Dtype::new(StDtype::F32, 4),
            "HalfStorage" => Dtype::new(StDtype::F16, 2),
            "BFloat16Storage" => Dtype::new(StDtype::BF16, 2),
            "LongStorage" => Dtype::new(StDtype::I64, 8),
            "IntStorage" => Dtype::new(StDtype::I32, 4),
            "ShortStorage" => Dtype::new(StDtype::I16, 2),
            "CharStorage" => Dtype::new(StDtype::I8, 1),
            "ByteStorage" => Dtype::new(StDtype::U8, 1),
            "BoolStorage" => Dtype::new(StDtype::BOOL, 1),
            "ComplexFloatStorage" => Dtype {
                safetensors: StDtype::C64,
                size: 8,
                unit: 4,
            },
            _ => return None,
        })
    }

    /// The dtype of a NumPy type string (`<f4`, `|b1`, `>i8`) and whether it is big-endian.
    pub(super) fn from_numpy(type_str: &str) -> Option<(Dtype, bool)> {
        let mut chars = type_str.chars();
        let order = chars.next()?;
        let code = chars.as_str();
        let big_endian = match order {
            '<' | '|' | '=' => false,
            '>' => true,
            _ => return None,
        };
        let dtype = match code {
            "f8" => Dtype::new(StDtype::F64, 8),
            "f4" => Dtype::new(StDtype::F32, 4),
            "f2" => Dtype::new(StDtype::F16, 2),
            "i8" => Dtype::new(StDtype::I64, 8),
            "i4" => Dtype::new(StDtype::I32, 4),
            "i2" => Dtype::new(StDtype::I16, 2),
            "i1" => Dtype::new(StDtype::I8, 1),
            "u8" => Dtype::new(StDtype::U64, 8),
            "u4" => Dtype::new(StDtype::U32, 4),
            "u2" => Dtype::new(StDtype::U16, 2),
            "u1" => Dtype::new(StDtype::U8, 1),
            "b1" => Dtype::new(StDtype::BOOL, 1),
            "c8" => Dtype {
                safetensors: StDtype::C64,
                size: 8,
                unit: 4,
            },
            _ => return None,
        };
        Some((dtype, big_endian))
    }

    /// The dtype `torch.<name>` (as `_rebuild_tensor_v3` names it).
    pub(super) fn from_torch(name: &str) -> Option<Dtype> {
        Some(match name {
            "float64" | "double" => Dtype::new(StDtype::F64, 8),
            "float32" | "float" => Dtype::new(StDtype::F32, 4),
            "float16" | "half" => Dtype::new(StDtype::F16, 2),
            "bfloat16" => Dtype::new(StDtype::BF16, 2),
            "float8_e4m3fn" => Dtype::new(StDtype::F8_E4M3, 1),
            "float8_e5m2" => Dtype::new(StDtype::F8_E5M2, 1),
            "float8_e4m3fnuz" => Dtype::new(StDtype::F8_E4M3FNUZ, 1),
            "float8_e5m2fnuz" => Dtype::new(StDtype::F8_E5M2FNUZ, 1),
            "float8_e8m0fnu" => Dtype::new(StDtype::F8_E8M0, 1),
            "int64" | "long" => Dtype::new(StDtype::I64, 8),
            "int32" | "int" => Dtype::new(StDtype::I32, 4),
            "int16" | "short" => Dtype::new(StDtype::I16, 2),
            "int8" => Dtype::new(StDtype::I8, 1),
            "uint8" => Dtype::new(StDtype::U8, 1),
            "uint16" => Dtype::new(StDtype::U16, 2),
            "uint32" => Dtype::new(StDtype::U32, 4),
            "uint64" => Dtype::new(StDtype::U64, 8),
            "bool" => Dtype::new(StDtype::BOOL, 1),
            "complex64" | "cfloat" => Dtype {
                safetensors: StDtype::C64,
                size: 8,
                unit: 4,
            },
            _ => return None,
        })
    }
}

/// A tensor as its rebuild call gives it.
#[derive(Debug, Clone)]
pub(super) struct TensorSpec {
    /// Its dotted path.
    pub name: String,
    /// Where its rebuild call is in the input.
    pub at: u64,
    dtype: Dtype,
    /// Index of its storage's record.
    storage: usize,
    /// Bytes the persistent id declares for the storage.
    storage_bytes: u64,
    /// In elements.
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
    big_endian: bool,
}

fn int(heap: &Heap, value: Val, what: &str) -> Result<u64, String> {
    heap.int(value)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| format!("{what} is not a non-negative int"))
}

fn ints(heap: &Heap, value: Val, what: &str) -> Result<Vec<u64>, String> {
    let items = heap
        .tuple(value)
        .ok_or_else(|| format!("{what} is not a tuple"))?;
    items.iter().map(|v| int(heap, *v, what)).collect()
}

impl TensorSpec {
    /// The tensor `_rebuild_tensor(_v2/_v3)(storage, offset, size, stride, ...)` makes;
    /// `dtype`: `_rebuild_tensor_v3`'s explicit dtype; `name` and `at`: its path and where
    /// its rebuild call is in the input.
    pub(super) fn from_args(
        heap: &Heap,
        found: &Found<'_>,
        args: &[Val],
        dtype: Option<Dtype>,
        name: &str,
        at: u64,
    ) -> Result<Self, String> {
        let [storage, offset, size, stride, ..] = args else {
            return Err(format!("a tensor rebuild with {} arguments", args.len()));
        };
        let id = heap
            .persistent_id(*storage)
            .ok_or("the storage is not a persistent id")?;
        let fields = heap.tuple(id).unwrap_or_default();
        let (Some(tag), Some(class), Some(key), Some(numel)) = (
            fields.first().and_then(|v| heap.str(*v)),
            fields.get(1).and_then(|v| heap.global(*v)),
            fields.get(2).and_then(|v| heap.str(*v)),
            fields.get(4),
        ) else {
            return Err("the storage id is not ('storage', <class>, key, location, numel, ...)".into());
        };
        if tag != "storage" || fields.len() != found.id_fields {
            return Err("the storage id is not ('storage', <class>, key, location, numel, ...)".into());
        }
        let numel = int(heap, *numel, "the storage's element count")?;
        let (dtype, storage_bytes) = match (dtype, class.1) {
            (Some(dtype), "UntypedStorage") => (dtype, numel),
            (None, class) => {
                let dtype = Dtype::from_storage(class)
                    .ok_or_else(|| format!("storage class {class} has no safetensors dtype"))?;
                (
                    dtype,
                    numel
                        .checked_mul(dtype.size)
                        .ok_or("the storage's size overflows")?,
                )
            }
            (Some(_), class) => return Err(format!("_rebuild_tensor_v3 with a typed storage ({class})")),
        };
        let mut offset = int(heap, *offset, "the storage offset")?;
        // The legacy format's view of a storage: (view key, offset, size) into the record.
        if let Some(view) = fields.get(5).and_then(|v| heap.tuple(*v)) {
            let view_offset = view.get(1).ok_or("a storage view without an offset")?;
            offset = offset
                .checked_add(int(heap, *view_offset, "the storage view's offset")?)
                .ok_or("the storage offset overflows")?;
        }
        let shape = ints(heap, *size, "the size")?;
        let stride = ints(heap, *stride, "the stride")?;
        if shape.len() != stride.len() {
            return Err(format!(
                "size has {} dimensions, stride {}",
                shape.len(),
                stride.len()
            ));
        }
        let storage = *found
            .keys
            .get(key)
            .ok_or_else(|| format!("storage {key:?} has no record in the file"))?;
        Ok(TensorSpec {
            name: name.to_owned(),
            at,
            dtype,
            storage,
            storage_bytes,
            offset,
            shape,
            stride,
            big_endian: found.big_endian,
        })
    }
}

impl TensorSpec {
    /// A NumPy array: `bytes` bytes of record `storage` from byte `offset_bytes` on (a whole
    /// number of elements is required), viewed with `shape` and element `stride`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn from_array(
        name: &str,
        at: u64,
        dtype: Dtype,
        storage: usize,
        offset_bytes: u64,
        bytes: u64,
        shape: Vec<u64>,
        stride: Vec<u64>,
        big_endian: bool,
    ) -> Result<Self, String> {
        if !offset_bytes.is_multiple_of(dtype.size) {
            return Err("the array data is not aligned to its element size".into());
        }
        Ok(TensorSpec {
            name: name.to_owned(),
            at,
            dtype,
            storage,
            storage_bytes: offset_bytes.saturating_add(bytes),
            offset: offset_bytes / dtype.size,
            shape,
            stride,
            big_endian,
        })
    }

    /// A tensor of the tar format.
    pub(super) fn from_tar(tensor: &TarTensor, name: &str, big_endian: bool) -> Result<Self, String> {
        let dtype = Dtype::from_storage(&tensor.class)
            .ok_or_else(|| format!("storage class {} has no safetensors dtype", tensor.class))?;
        if tensor.shape.len() != tensor.stride.len() {
            return Err("size and stride differ in length".into());
        }
        Ok(TensorSpec {
            name: name.to_owned(),
            at: tensor.at,
            dtype,
            storage: tensor.storage,
            storage_bytes: tensor.storage_bytes,
            offset: tensor.offset,
            shape: tensor.shape.clone(),
            stride: tensor.stride.clone(),
            big_endian,
        })
    }
}

/// A tensor checked against its storage, ready to be written.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    stride: Vec<usize>,
    /// In elements.
    offset: usize,
    storage: usize,
    bytes: usize,
    contiguous: bool,
    big_endian: bool,
}

/// Checks every tensor's view against its storage (the declared size and the record's bytes)
/// and records names, sizes and shared storages in `converted`.
pub(super) fn plan_all(
    specs: Vec<TensorSpec>,
    storages: &[Cow<'_, [u8]>],
    converted: &mut Converted,
) -> Result<Vec<Planned>, ConvertError> {
    let mut first_of_storage: HashMap<usize, String> = HashMap::new();
    let mut planned = Vec::with_capacity(specs.len());
    for spec in specs {
        let malformed = |what: String| ConvertError::Malformed {
            offset: spec.at,
            what: format!("{}: {what}", spec.name),
        };
        let record = storages
            .get(spec.storage)
            .ok_or_else(|| malformed("its storage has no record".into()))?;
        let available = spec.storage_bytes.min(record.len() as u64);
        if (record.len() as u64) < spec.storage_bytes {
            return Err(malformed(format!(
                "its storage declares {} bytes, its record holds {}",
                spec.storage_bytes,
                record.len()
            )));
        }
        let numel = spec
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .ok_or_else(|| malformed("its size overflows".into()))?;
        let bytes = numel
            .checked_mul(spec.dtype.size)
            .ok_or_else(|| malformed("its size overflows".into()))?;
        if numel > 0 {
            let last = spec
                .shape
                .iter()
                .zip(&spec.stride)
                .try_fold(spec.offset, |at, (&d, &s)| {
                    at.checked_add((d - 1).checked_mul(s)?)
                })
                .ok_or_else(|| malformed("its view overflows".into()))?;
            let end = last
                .checked_add(1)
                .and_then(|n| n.checked_mul(spec.dtype.size))
                .ok_or_else(|| malformed("its view overflows".into()))?;
            if end > available {
                return Err(malformed(format!(
                    "its view (offset {}, size {:?}, stride {:?}) ends at byte {end} of a {available}-byte storage",
                    spec.offset, spec.shape, spec.stride
                )));
            }
        }
        let to_usize =
            |v: u64| usize::try_from(v).map_err(|_| malformed("it is too large for this machine".into()));
        let shape = spec
            .shape
            .iter()
            .map(|&d| to_usize(d))
            .collect::<Result<Vec<_>, _>>()?;
        let stride = spec
            .stride
            .iter()
            .map(|&s| to_usize(s))
            .collect::<Result<Vec<_>, _>>()?;
        let contiguous = is_contiguous(&shape, &stride);
        match first_of_storage.get(&spec.storage) {
            Some(first) => converted.shared.push((spec.name.clone(), first.clone())),
            None => {
                first_of_storage.insert(spec.storage, spec.name.clone());
            }
        }
        converted.tensors.push(spec.name.clone());
        converted.tensor_bytes = converted.tensor_bytes.saturating_add(bytes);
        planned.push(Planned {
            offset: to_usize(spec.offset)?,
            bytes: to_usize(bytes)?,
            name: spec.name,
            dtype: spec.dtype,
            shape,
            stride,
            storage: spec.storage,
            contiguous,
            big_endian: spec.big_endian,
        });
    }
    Ok(planned)
}

/// Row-major without gaps (dimensions of size 1 may have any stride).
fn is_contiguous(shape: &[usize], stride: &[usize]) -> bool {
    let mut expected = 1usize;
    for (&d, &s) in shape.iter().zip(stride).rev() {
        if d != 1 && s != expected {
            return false;
        }
        expected = expected.saturating_mul(d);
    }
    true
}

/// A planned tensor over its storage's bytes (checked by [`plan_all`]).
struct TensorView<'p> {
    planned: &'p Planned,
    storage: &'p [u8],
    /// The input's bytes the previous view handed out (written by now: the writer asks for one
    /// view's data at a time), given back to `pages` when the next is asked for.
    handed_out: &'p Cell<&'p [u8]>,
    pages: &'p Pages<'p>,
}

impl<'p> TensorView<'p> {
    /// The bytes of the input this view reads (all of its span: the whole pages inside are
    /// given back once it is written).
    fn span(&self) -> &'p [u8] {
        let p = self.planned;
        let size = p.dtype.size as usize;
        let start = p.offset.saturating_mul(size);
        let span = p
            .shape
            .iter()
            .zip(&p.stride)
            .map(|(&d, &s)| d.saturating_sub(1).saturating_mul(s))
            .sum::<usize>()
            .saturating_add(1)
            .saturating_mul(size);
        let end = if p.bytes == 0 {
            start
        } else {
            start.saturating_add(span)
        };
        self.storage.get(start..end).unwrap_or_default()
    }
}

impl View for TensorView<'_> {
    fn dtype(&self) -> StDtype {
        self.planned.dtype.safetensors
    }

    fn shape(&self) -> &[usize] {
        &self.planned.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        self.pages.release(self.handed_out.replace(self.span()));
        let p = self.planned;
        let size = p.dtype.size as usize;
        let start = p.offset.saturating_mul(size);
        if p.contiguous && (!p.big_endian || p.dtype.unit == 1) {
            return Cow::Borrowed(
                self.storage
                    .get(start..start.saturating_add(p.bytes))
                    .unwrap_or_default(),
            );
        }
        let mut out = Vec::with_capacity(p.bytes);
        if p.bytes > 0 {
            gather(self.storage, p, &mut out);
        }
        if p.big_endian && p.dtype.unit > 1 {
            for unit in out.chunks_exact_mut(p.dtype.unit as usize) {
                unit.reverse();
            }
        }
        Cow::Owned(out)
    }

    fn data_len(&self) -> usize {
        self.planned.bytes
    }
}

/// Copies the elements of a (non-empty, checked) view in row-major order.
fn gather(storage: &[u8], p: &Planned, out: &mut Vec<u8>) {
    let size = p.dtype.size as usize;
    let (Some(&inner), Some(&inner_stride)) = (p.shape.last(), p.stride.last()) else {
        // A 0-d tensor: one element.
        let start = p.offset * size;
        out.extend_from_slice(storage.get(start..start + size).unwrap_or_default());
        return;
    };
    let outer = p.shape.len() - 1;
    let mut index = vec![0usize; outer];
    loop {
        let base = p.offset + index.iter().zip(&p.stride).map(|(i, s)| i * s).sum::<usize>();
        if inner_stride == 1 {
            let start = base * size;
            out.extend_from_slice(storage.get(start..start + inner * size).unwrap_or_default());
        } else {
            for i in 0..inner {
                let start = (base + i * inner_stride) * size;
                out.extend_from_slice(storage.get(start..start + size).unwrap_or_default());
            }
        }
        // The next index of the outer dimensions, last one fastest.
        let mut dim = outer;
        loop {
            if dim == 0 {
                return;
            }
            dim -= 1;
            if let (Some(i), Some(&d)) = (index.get_mut(dim), p.shape.get(dim)) {
                *i += 1;
                if *i < d {
                    break;
                }
                *i = 0;
            }
        }
    }
}

/// Where [`super::convert_path`] writes before the output is renamed into place.
pub(super) fn staging_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    output.with_file_name(format!(".{name}.picklefence-{}.tmp", std::process::id()))
}

/// The tensors of a plan as the safetensors crate takes them, and its metadata.
fn parts<'p>(
    plan: &'p Plan<'_>,
    handed_out: &'p Cell<&'p [u8]>,
    pages: &'p Pages<'p>,
) -> (
    impl Iterator<Item = (&'p str, TensorView<'p>)>,
    std::collections::HashMap<String, String>,
) {
    let views = plan.tensors.iter().map(move |planned| {
        let storage = plan
            .storages
            .get(planned.storage)
            .map(AsRef::as_ref)
            .unwrap_or_default();
        let view = TensorView {
            planned,
            storage,
            handed_out,
            pages,
        };
        (planned.name.as_str(), view)
    });
    let metadata = plan
        .converted
        .metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (views, metadata)
}

/// Writes a plan's tensors and metadata (the safetensors crate writes a temporary file in the
/// output's directory and renames it into place); `pages`: the input's, given back tensor by
/// tensor.
pub(super) fn write(plan: &Plan<'_>, output: &Path, pages: &Pages<'_>) -> Result<(), ConvertError> {
    let handed_out = Cell::new(&[][..]);
    let (views, metadata) = parts(plan, &handed_out, pages);
    let written = safetensors::serialize_to_file(views, Some(metadata), output);
    pages.release(handed_out.get());
    written.map_err(|e| ConvertError::Write {
        path: output.to_path_buf(),
        message: e.to_string(),
    })
}

/// A plan's safetensors file, in memory.
pub(super) fn serialize(plan: &Plan<'_>) -> Result<Vec<u8>, ConvertError> {
    let handed_out = Cell::new(&[][..]);
    let pages = Pages::none();
    let (views, metadata) = parts(plan, &handed_out, &pages);
    safetensors::serialize(views, Some(metadata)).map_err(|e| ConvertError::Write {
        path: PathBuf::new(),
        message: e.to_string(),
    })
}
