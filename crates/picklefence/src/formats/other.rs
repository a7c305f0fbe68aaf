//! Model formats that are not pickle-based: recognised so that a scan reports them (never
//! skips them silently), and safetensors headers validated.

use serde_json::Value as Json;

/// Largest safetensors header the reference implementation accepts.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// Whether the bytes start like a safetensors file (8-byte header length, then `{`).
pub fn looks_like_safetensors(data: &[u8]) -> bool {
    let Some(len) = data
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
    else {
        return false;
    };
    (2..=SAFETENSORS_MAX_HEADER).contains(&len) && data.get(8) == Some(&b'{')
}

fn dtype_size(dtype: &str) -> Option<(u64, u64)> {
    // (bits per element, 1); sub-byte types are counted in bits.
    Some(match dtype {
        "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" | "F8_E8M0" => (8, 1),
        "I16" | "U16" | "F16" | "BF16" => (16, 1),
        "I32" | "U32" | "F32" => (32, 1),
        "I64" | "U64" | "F64" | "C64" => (64, 1),
        "F4" | "F6_E2M3" | "F6_E3M2" => (if dtype == "F4" { 4 } else { 6 }, 1),
        _ => return None,
    })
}

/// Validates a safetensors file the way the reference loader does; returns the tensor count.
pub fn check_safetensors(data: &[u8]) -> Result<usize, String> {
    let len = data
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or("the file is shorter than the 8-byte header length")?;
    if len > SAFETENSORS_MAX_HEADER {
        return Err(format!(
            "the header length {len} is over the 100 MB the loader accepts"
        ));
    }
    let end = 8u64.checked_add(len).ok_or("the header length overflows")?;
    let header = usize::try_from(end)
        .ok()
        .and_then(|e| data.get(8..e))
        .ok_or_else(|| format!("the header length {len} runs past the end of the file"))?;
    let text = std::str::from_utf8(header).map_err(|e| format!("the header is not UTF-8: {e}"))?;
    let json: Json = serde_json::from_str(text.trim_end_matches(' '))
        .map_err(|e| format!("the header is not JSON: {e}"))?;
    let Json::Object(map) = json else {
        return Err("the header is not a JSON object".into());
    };
    let body = data.len() as u64 - end;
    let mut spans = Vec::new();
    for (name, info) in &map {
        if name == "__metadata__" {
            match info {
                Json::Object(meta) if meta.values().all(Json::is_string) => continue,
                _ => return Err("__metadata__ is not a map of strings".into()),
            }
        }
        let (Some(dtype), Some(shape), Some(offsets)) = (
            info.get("dtype").and_then(Json::as_str),
            info.get("shape").and_then(Json::as_array),
            info.get("data_offsets").and_then(Json::as_array),
        ) else {
            return Err(format!("tensor {name:?} lacks dtype, shape or data_offsets"));
        };
        let (bits, _) =
            dtype_size(dtype).ok_or_else(|| format!("tensor {name:?} has unknown dtype {dtype:?}"))?;
        let count = shape
            .iter()
            .try_fold(1u64, |acc, d| d.as_u64().and_then(|d| acc.checked_mul(d)))
            .ok_or_else(|| format!("tensor {name:?} has a bad shape"))?;
        let (Some(begin), Some(finish), 2) = (
            offsets.first().and_then(Json::as_u64),
            offsets.get(1).and_then(Json::as_u64),
            offsets.len(),
        ) else {
            return Err(format!("tensor {name:?} has bad data_offsets"));
        };
        let nbytes = count
            .checked_mul(bits)
            .map(|b| b.div_ceil(8))
            .ok_or_else(|| format!("tensor {name:?} is too large"))?;
        if finish < begin || finish - begin != nbytes {
            return Err(format!(
                "tensor {name:?} spans bytes {begin}..{finish} but its dtype and shape need {nbytes} bytes"
            ));
        }
        spans.push((begin, finish, name.clone()));
    }
    spans.sort();
    let mut cursor = 0;
    for (begin, finish, name) in &spans {
        if *begin != cursor {
            return Err(format!(
                "tensor {name:?} starts at {begin}, not where the previous one ends ({cursor})"
            ));
        }
        cursor = *finish;
    }
    if cursor != body {
        return Err(format!(
            "the tensors cover {cursor} bytes but the file holds {body} after the header"
        ));
    }
    Ok(spans.len())
}

/// GGUF version from the header, when present.
pub fn gguf_version(data: &[u8]) -> Option<u32> {
    data.get(4..8)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
}

/// An ONNX `ModelProto` starts with `ir_version` (field 1, varint) and then another known field.
pub fn looks_like_onnx(data: &[u8]) -> bool {
    match data {
        [0x08, version, next, ..] => {
            (1..=16).contains(version) && matches!(next, 0x12 | 0x1a | 0x22 | 0x28 | 0x32 | 0x3a | 0x42)
        }
        _ => false,
    }
}

/// The HDF5 format signature (superblock magic).
pub const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";

/// HDF5 signature at offset 0 or at a user-block boundary (512, 1024, ...).
pub fn looks_like_hdf5(data: &[u8]) -> bool {
    let mut at = 0usize;
    while at < data.len().min(1 << 20) {
        if data.get(at..at + 8) == Some(HDF5_MAGIC.as_slice()) {
            return true;
        }
        at = if at == 0 { 512 } else { at * 2 };
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(header: &str, body: usize) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend(header.as_bytes());
        out.extend(vec![0u8; body]);
        out
    }

    #[test]
    fn validates_safetensors_headers() {
        let good = safetensors(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"__metadata__":{"format":"pt"}}"#,
            8,
        );
        assert!(looks_like_safetensors(&good));
        assert_eq!(check_safetensors(&good), Ok(1));
        let short = safetensors(r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#, 4);
        assert!(check_safetensors(&short).is_err());
        let overlap = safetensors(
            r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
            8,
        );
        assert!(check_safetensors(&overlap).is_err());
        let mut past = safetensors("{}", 0);
        past[0] = 200;
        assert!(check_safetensors(&past).is_err());
        assert!(check_safetensors(&safetensors(
            r#"{"a":{"dtype":"X9","shape":[],"data_offsets":[0,1]}}"#,
            1
        ))
        .is_err());
    }
}
