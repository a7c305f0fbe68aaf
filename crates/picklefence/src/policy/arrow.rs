//! How pyarrow lays out the flat types `type_for_alias` names: the buffers `_restore_array`
//! indexes by position (checked by the analyzer's `arrow-buffers` before anything is made) and
//! what each holds (checked by the scanner's `native_state::arrow` inside the file). One table
//! for both.

/// How a flat type lays out its items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Bits of each item in one data buffer (bool: 1).
    Fixed(u64),
    /// Offsets of this width (bytes) into a data buffer; `text`: UTF-8 strings.
    Offsets { width: u64, text: bool },
}

/// The layout of a type by its alias; None for those the scanner does not read (null, views).
pub(crate) fn layout(alias: &str) -> Option<Layout> {
    Some(match alias {
        "bool" | "boolean" => Layout::Fixed(1),
        "int8" | "uint8" | "i1" | "u1" => Layout::Fixed(8),
        "int16" | "uint16" | "halffloat" | "float16" | "i2" | "u2" | "f2" => Layout::Fixed(16),
        "int32" | "uint32" | "float" | "float32" | "date32" | "date32[day]" | "i4" | "u4" | "f4"
        | "time32[s]" | "time32[ms]" => Layout::Fixed(32),
        "int64" | "uint64" | "double" | "float64" | "date64" | "date64[ms]" | "i8" | "u8" | "f8"
        | "time64[us]" | "time64[ns]" => Layout::Fixed(64),
        _ if alias.starts_with("timestamp[") || alias.starts_with("duration[") => Layout::Fixed(64),
        "month_day_nano_interval" => Layout::Fixed(128),
        "string" | "str" | "utf8" => Layout::Offsets { width: 4, text: true },
        "binary" => Layout::Offsets {
            width: 4,
            text: false,
        },
        "large_string" | "large_str" | "large_utf8" => Layout::Offsets { width: 8, text: true },
        "large_binary" => Layout::Offsets {
            width: 8,
            text: false,
        },
        _ => return None,
    })
}

/// Whether an array of `alias` may be made from `count` buffers: exactly its layout's (validity
/// first; a view type has its variadic data buffers after two).
pub(crate) fn buffers_fit(alias: &str, count: u32) -> bool {
    match (alias, layout(alias)) {
        ("null", _) => count == 1,
        ("binary_view" | "string_view", _) => count >= 2,
        (_, Some(Layout::Offsets { .. })) => count == 3,
        _ => count == 2,
    }
}
