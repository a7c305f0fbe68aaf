//! Arrays and dtypes inside a pickle, as far as the scanner's checks need them: what a value
//! reconstructs to (`_reconstruct` + BUILD, protocol 5's `_frombuffer`, joblib's wrapper and the
//! bytes after it), its shape, dtype and bytes, when they are in the input.

use crate::analyzer::joblib::{DTYPE_CLASSES, WRAPPER_MODULE, WRAPPER_NAME};
use crate::evaluate::{Heap, Object, Val};

use super::IntField;

const RECONSTRUCT: [(&str, &str); 2] = [
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
];
const FROMBUFFER: [(&str, &str); 2] = [
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
];
/// joblib's array wrapper: its data follows its BUILD in the stream.
pub(super) const JOBLIB_WRAPPER: (&str, &str) = (WRAPPER_MODULE, WRAPPER_NAME);

/// A dtype as far as the checks need it.
pub(crate) struct Dtype {
    /// Bytes an item.
    pub(super) itemsize: u64,
    /// A plain type: its NumPy type string (`<i8`).
    pub(crate) code: Option<String>,
    /// A record type: each field's offset and type string.
    pub(super) fields: Vec<(String, u64, Option<String>)>,
}

/// An array inside the pickle: its bytes, shape and dtype, and whether its items are laid out
/// in Fortran (column-major) order.
pub(crate) struct Array<'d> {
    pub(crate) bytes: std::borrow::Cow<'d, [u8]>,
    pub(crate) shape: Vec<u64>,
    pub(crate) dtype: Dtype,
    pub(crate) fortran: bool,
}

impl Dtype {
    fn field(&self, name: &str) -> Option<IntField> {
        let (_, offset, code) = self.fields.iter().find(|(n, _, _)| n == name)?;
        IntField::from_numpy(usize::try_from(*offset).ok()?, code.as_deref()?)
    }
}

impl Array<'_> {
    /// Items in all dimensions (the guard counts a predictor's records so too).
    pub(super) fn size(&self) -> u64 {
        self.shape
            .iter()
            .try_fold(1u64, |acc, d| acc.checked_mul(*d))
            .unwrap_or(u64::MAX)
    }

    /// An integer field of the records.
    pub(super) fn field(&self, name: &str) -> Result<IntField, String> {
        self.dtype
            .field(name)
            .ok_or_else(|| format!("a record dtype without the integer field {name}"))
    }

    /// Bytes a record.
    pub(super) fn itemsize(&self) -> Result<usize, String> {
        usize::try_from(self.dtype.itemsize).map_err(|e| e.to_string())
    }
}

fn is(heap: &Heap, value: Val, names: &[(&str, &str)]) -> bool {
    heap.global(value).is_some_and(|g| names.contains(&g))
}

/// Record dtypes with more fields are not read (numpy's node records have about a dozen).
const MAX_FIELDS: usize = 256;

/// The dtype a value is; `records`: read its fields (a field's own dtype is read without
/// them, so a dtype that holds itself ends).
pub(super) fn dtype_of(heap: &Heap, value: Val, records: bool) -> Result<Dtype, String> {
    let object = heap
        .object(value)
        .filter(|o| is(heap, o.callee, &DTYPE_CLASSES))
        .ok_or("a dtype that is not a numpy.dtype call")?;
    let descr = heap
        .tuple(object.args)
        .and_then(|args| heap.str(*args.first()?))
        .ok_or("a dtype without its type string")?;
    let state = object.state.and_then(|s| heap.tuple(s)).unwrap_or(&[]);
    let order = state.get(1).and_then(|v| heap.str(*v)).unwrap_or("|");
    let declared = state.get(5).and_then(|v| heap.int(*v)).filter(|&n| n > 0);
    let from_descr = descr.get(1..).and_then(|n| n.parse::<i64>().ok());
    let itemsize = declared
        .or(from_descr)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| format!("a dtype {descr:?} of unknown size"))?;
    let mut fields = Vec::new();
    if let (true, Some(names), Some(table)) =
        (records, state.get(3).and_then(|v| heap.tuple(*v)), state.get(4))
    {
        if names.len() > MAX_FIELDS {
            return Err(format!("a record dtype of {} fields", names.len()));
        }
        for name in names {
            let name = heap
                .str(*name)
                .ok_or("a record dtype with a field name that is not a str")?;
            let entry = heap
                .get(*table, name)
                .and_then(|v| heap.tuple(v))
                .ok_or_else(|| format!("a record dtype without its field {name:?}"))?;
            let offset = entry
                .get(1)
                .and_then(|v| heap.int(*v))
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| format!("the field {name:?} without its offset"))?;
            let code = entry
                .first()
                .and_then(|v| dtype_of(heap, *v, false).ok())
                .and_then(|d| d.code);
            fields.push((name.to_owned(), offset, code));
        }
    }
    let is_record = state.get(3).is_some_and(|v| *v != Val::None);
    let code = (!is_record).then(|| format!("{order}{descr}"));
    Ok(Dtype {
        itemsize,
        code,
        fields,
    })
}

fn shape_of(heap: &Heap, value: Val) -> Option<Vec<u64>> {
    if let Some(n) = heap.int(value) {
        return u64::try_from(n).ok().map(|n| vec![n]);
    }
    heap.tuple(value)?
        .iter()
        .map(|d| heap.int(*d).and_then(|n| u64::try_from(n).ok()))
        .collect()
}

fn slice(data: &[u8], start: u64, len: u64) -> Option<&[u8]> {
    let start = usize::try_from(start).ok()?;
    data.get(start..start.checked_add(usize::try_from(len).ok()?)?)
}

const SCALAR: [(&str, &str); 2] = [
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
];

/// The value of an int, or of a NumPy integer scalar (`scalar(dtype, bytes)`, how a `np.int64`
/// is pickled: scikit-learn keeps some counts and columns so).
pub(super) fn int_value(heap: &Heap, data: &[u8], value: Val) -> Option<i64> {
    if let Val::Int(i) = value {
        return Some(i);
    }
    let object = heap.object(value)?;
    if object.rebuilt || !is(heap, object.callee, &SCALAR) {
        return None;
    }
    let [dtype, payload] = heap.tuple(object.args)? else {
        return None;
    };
    let code = dtype_of(heap, *dtype, false).ok()?.code?;
    let field = IntField::from_numpy(0, &code)?;
    let bytes = bytes_of(heap, data, *payload)?;
    (bytes.len() == field.width).then(|| field.read(&bytes))
}

/// The bytes an array's data value stands for: a bytes constant; a str (a Python 2 pickle,
/// which numpy encodes as latin-1); `_codecs.encode(text, "latin1")` and `bytes()` (how
/// protocols 0-2 write bytes under Python 3).
pub(super) fn bytes_of<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Option<std::borrow::Cow<'d, [u8]>> {
    let latin1 =
        |text: &str| -> Option<Vec<u8>> { text.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect() };
    match value {
        Val::Bytes { start, len } => slice(data, start, len).map(std::borrow::Cow::Borrowed),
        Val::Str(_) => latin1(heap.str(value)?).map(std::borrow::Cow::Owned),
        Val::Obj(_) => {
            let object = heap.object(value)?;
            let args = heap.tuple(object.args)?;
            let callee = heap.global(object.callee)?;
            if matches!(callee, ("__builtin__" | "builtins", "bytes")) && args.is_empty() {
                return Some(std::borrow::Cow::Borrowed(&[])); // how protocol 2 writes b""
            }
            if callee != ("_codecs", "encode") {
                return None;
            }
            let encoding = args.get(1).and_then(|v| heap.str(*v))?;
            if !matches!(encoding, "latin1" | "latin-1" | "iso-8859-1") {
                return None;
            }
            latin1(heap.str(*args.first()?)?).map(std::borrow::Cow::Owned)
        }
        _ => None,
    }
}

/// An array's shape, dtype and data as its making gives them (the data may be elsewhere), and
/// its order (Fortran: true).
type Parts<'d> = (
    Option<Vec<u64>>,
    Option<Result<Dtype, String>>,
    Result<std::borrow::Cow<'d, [u8]>, String>,
    bool,
);

/// `order` as numpy's pickles and joblib's wrapper give it.
fn is_fortran(heap: &Heap, order: Option<&Val>) -> bool {
    order.is_some_and(|v| heap.str(*v) == Some("F") || heap.int(*v) == Some(1))
}

/// What a value reconstructs to as an array: `_reconstruct` + BUILD, protocol 5's
/// `_frombuffer`, or joblib's wrapper followed by its bytes. Built twice, it is not trusted.
fn parts<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Result<Parts<'d>, String> {
    let object = heap.object(value).ok_or("not an array made in the pickle")?;
    if object.rebuilt {
        return Err("an array built twice".into());
    }
    if is(heap, object.callee, &RECONSTRUCT) {
        let state = object
            .state
            .and_then(|s| heap.tuple(s))
            .ok_or("an array without its state")?;
        let raw = state.get(4).and_then(|v| bytes_of(heap, data, *v));
        Ok((
            state.get(1).and_then(|v| shape_of(heap, *v)),
            state.get(2).map(|v| dtype_of(heap, *v, true)),
            raw.ok_or_else(|| "array data that is not bytes (an object array)".into()),
            is_fortran(heap, state.get(3)),
        ))
    } else if is(heap, object.callee, &FROMBUFFER) {
        let args = heap.tuple(object.args).ok_or("_frombuffer without arguments")?;
        let raw = args.first().and_then(|v| bytes_of(heap, data, *v));
        Ok((
            args.get(2).and_then(|v| shape_of(heap, *v)),
            args.get(1).map(|v| dtype_of(heap, *v, true)),
            raw.ok_or_else(|| "array data out of band".into()),
            is_fortran(heap, args.get(3)),
        ))
    } else if heap.global(object.callee) == Some(JOBLIB_WRAPPER) {
        match object.nested {
            // An object array: joblib returns what the pickle after the wrapper made, whatever
            // shape the wrapper declares (that pickle is plain: no wrapper in it is followed).
            Some(nested)
                if heap.object(nested).map(|o| heap.global(o.callee)) == Some(Some(JOBLIB_WRAPPER)) =>
            {
                Err("a joblib array whose pickled items are another wrapper".into())
            }
            Some(nested) => parts(heap, data, nested),
            None => joblib_array(heap, data, object),
        }
    } else {
        Err("an array made some other way".into())
    }
}

/// Whether a value was made the way NumPy's and joblib's pickles make an array.
pub(crate) fn makes_array(heap: &Heap, value: Val) -> bool {
    heap.object(value).is_some_and(|object| {
        is(heap, object.callee, &RECONSTRUCT)
            || is(heap, object.callee, &FROMBUFFER)
            || heap.global(object.callee) == Some(JOBLIB_WRAPPER)
    })
}

/// The array a value is, when its data is inside the input.
pub(crate) fn array_of<'d>(heap: &Heap, data: &'d [u8], value: Val) -> Result<Array<'d>, String> {
    let (shape, dtype, bytes, fortran) = parts(heap, data, value)?;
    let bytes = bytes?;
    let shape = shape.ok_or("an array of unknown shape")?;
    let dtype = dtype.ok_or("an array without a dtype")??;
    let expected = shape
        .iter()
        .try_fold(dtype.itemsize, |acc, d| acc.checked_mul(*d))
        .and_then(|n| usize::try_from(n).ok());
    if expected != Some(bytes.len()) {
        return Err(format!("{} data bytes for shape {shape:?}", bytes.len()));
    }
    Ok(Array {
        bytes,
        shape,
        dtype,
        fortran,
    })
}

/// The shape of the array a value is, wherever its data is (an object array's items too: the
/// policy refuses a list of another length).
pub(super) fn array_shape(heap: &Heap, value: Val) -> Result<Vec<u64>, String> {
    parts(heap, &[], value)?
        .0
        .ok_or_else(|| "an array of unknown shape".into())
}

/// A list the object holding it reads as it ends up (a reference, read at each use): None when
/// the pickle changed it by SETITEM, which is not followed.
pub(super) const AS_HELD: u64 = u64::MAX - 1;

/// The shape of a value the guard requires to be an array: None when it is plainly none (a
/// number, str, bytes or container the pickle made), an error when it is some other object.
pub(super) fn shape_if_array(heap: &Heap, value: Val) -> Result<Option<Vec<u64>>, String> {
    match value {
        Val::Obj(_) => array_shape(heap, value).map(Some),
        Val::Global(_) | Val::PersId(_) | Val::Other => {
            Err("a value not read here where an array belongs".into())
        }
        _ => Ok(None),
    }
}

/// The kind character of an array's plain dtype (`i`, `u`, `f`, `c`, `O`...).
pub(super) fn kind(array: &Array<'_>) -> Option<char> {
    array.dtype.code.as_deref().and_then(|c| c.chars().nth(1))
}

/// The shape and items of an object array (dtype `O`) as numpy pickles it: the list its state
/// holds, which numpy's `__setstate__` reads at the array's BUILD (it refuses a list of another
/// length). joblib pickles it whole right after its wrapper, and returns that array.
pub(super) fn object_items(heap: &Heap, value: Val) -> Result<(Vec<u64>, &[Val]), String> {
    let mut object = heap.object(value).ok_or("not an array made in the pickle")?;
    if object.rebuilt {
        return Err("an array built twice".into());
    }
    if heap.global(object.callee) == Some(JOBLIB_WRAPPER) {
        let nested = object
            .nested
            .ok_or("an object array joblib pickles apart from its wrapper, not read")?;
        object = heap
            .object(nested)
            .ok_or("a joblib array whose items are no array")?;
        if object.rebuilt {
            return Err("an array built twice".into());
        }
    }
    if !is(heap, object.callee, &RECONSTRUCT) {
        return Err("an object array made some other way".into());
    }
    let state = object
        .state
        .and_then(|s| heap.tuple(s))
        .ok_or("an array without its state")?;
    let shape = state
        .get(1)
        .and_then(|v| shape_of(heap, *v))
        .ok_or("an array of unknown shape")?;
    let dtype = dtype_of(heap, *state.get(2).ok_or("an array without a dtype")?, false)?;
    if dtype.code.as_deref().and_then(|c| c.get(1..2)) != Some("O") {
        return Err(format!("an array of type {:?} where objects belong", dtype.code));
    }
    let items = state
        .get(4)
        .and_then(|v| heap.list(*v, object.built_at.unwrap_or(u64::MAX)))
        .ok_or("object array items that are not a list the pickle made")?;
    let size = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
    if size != Some(items.len() as u64) {
        return Err(format!(
            "{} items for shape {shape:?} (numpy refuses them)",
            items.len()
        ));
    }
    Ok((shape, items))
}

/// An error (the state is broken) unless the object `value` is was built (BUILD) before
/// `offset`, where something took it: what the taker holds then depends on whether it copied
/// the object unbuilt, which the pickle does not show. Real files never do this.
pub(super) fn built_before(heap: &Heap, value: Val, offset: u64, what: &str) -> Result<(), String> {
    match heap.object(value).and_then(|o| o.built_at) {
        Some(at) if at < offset => Ok(()),
        Some(at) => Err(format!(
            "{what} is given its state at offset {at}, after it is taken at offset {offset} (what was taken is \
             not what the pickle shows)"
        )),
        None => Ok(()),
    }
}

fn joblib_array<'d>(heap: &Heap, data: &'d [u8], wrapper: &Object) -> Result<Parts<'d>, String> {
    let state = wrapper.state.ok_or("a joblib array without its state")?;
    let bytes = || -> Result<std::borrow::Cow<'d, [u8]>, String> {
        let (start, len) = wrapper.trailing.ok_or("a joblib array whose data was not read")?;
        let padded = heap
            .get(state, "numpy_array_alignment_bytes")
            .is_some_and(|v| v != Val::None);
        let (start, len) = if padded {
            let pad = u64::from(
                *slice(data, start, 1)
                    .and_then(|b| b.first())
                    .ok_or("no padding byte")?,
            );
            (
                start + 1 + pad,
                len.checked_sub(1 + pad).ok_or("padding beyond the data")?,
            )
        } else {
            (start, len)
        };
        Ok(std::borrow::Cow::Borrowed(
            slice(data, start, len).ok_or("joblib array data beyond the input")?,
        ))
    };
    let order = heap.get(state, "order");
    Ok((
        heap.get(state, "shape").and_then(|v| shape_of(heap, v)),
        heap.get(state, "dtype").map(|v| dtype_of(heap, v, true)),
        bytes(),
        is_fortran(heap, order.as_ref()),
    ))
}

/// The array under `key` in a state dict.
pub(super) fn state_array<'d>(
    heap: &Heap,
    data: &'d [u8],
    state: Val,
    key: &str,
) -> Result<Array<'d>, String> {
    array_of(
        heap,
        data,
        heap.get(state, key)
            .ok_or_else(|| format!("a state without {key}"))?,
    )
}

/// How a one-dimensional integer array's items are stored (little-endian or one byte, as
/// numpy writes them on this platform).
fn int_field(array: &Array<'_>) -> Result<IntField, String> {
    if array.shape.len() != 1 {
        return Err(format!("an index array of shape {:?}", array.shape));
    }
    array
        .dtype
        .code
        .as_deref()
        .and_then(|code| IntField::from_numpy(0, code))
        .ok_or_else(|| format!("an index array of type {:?}", array.dtype.code))
}

/// The items of a one-dimensional integer array, read as they are needed.
pub(super) fn int_items<'a>(array: &'a Array<'_>) -> Result<impl ExactSizeIterator<Item = i64> + 'a, String> {
    let field = int_field(array)?;
    Ok(array.bytes.chunks_exact(field.width).map(move |b| field.read(b)))
}

/// The first of the first `count` items of a one-dimensional integer array outside
/// [low, high), with its index. The bounds of all of them are taken first in one pass the
/// compiler vectorises (a million codes: well under a millisecond); only a broken array is
/// walked item by item.
pub(super) fn first_outside(
    array: &Array<'_>,
    count: usize,
    low: i64,
    high: i64,
) -> Result<Option<(usize, i64)>, String> {
    // Folded in the items' own type: eight times the lanes of i64 for int8 codes.
    fn bounds<T: Copy + Ord + Into<i64>, const N: usize>(bytes: &[u8], read: fn([u8; N]) -> T) -> (i64, i64) {
        let mut items = bytes
            .chunks_exact(N)
            .filter_map(|c| <[u8; N]>::try_from(c).ok().map(read));
        let Some(first) = items.next() else {
            return (0, 0);
        };
        let (lo, hi) = items.fold((first, first), |(lo, hi), v| (lo.min(v), hi.max(v)));
        (lo.into(), hi.into())
    }
    let field = int_field(array)?;
    let used = array
        .bytes
        .get(..count.saturating_mul(field.width))
        .unwrap_or(&array.bytes);
    let (lo, hi) = match (field.width, field.signed) {
        (1, true) => bounds(used, i8::from_le_bytes),
        (1, false) => bounds(used, u8::from_le_bytes),
        (2, true) => bounds(used, i16::from_le_bytes),
        (2, false) => bounds(used, u16::from_le_bytes),
        (4, true) => bounds(used, i32::from_le_bytes),
        (4, false) => bounds(used, u32::from_le_bytes),
        (8, true) => bounds(used, i64::from_le_bytes),
        _ => (i64::MIN, i64::MAX), // u64: read item by item (above i64::MAX reads as it)
    };
    if lo >= low && hi < high || used.is_empty() {
        return Ok(None);
    }
    Ok(used
        .chunks_exact(field.width)
        .map(|b| field.read(b))
        .enumerate()
        .find(|(_, v)| !(low..high).contains(v)))
}
