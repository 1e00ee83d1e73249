//! The safetensors side of the format: parsing a buffer (telling "not safetensors" from "corrupt"), decoding
//! tensor values, and writing our file deterministically and atomically.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::{Vgg16Weights, WeightsError};

/// Shortens and sanitises text taken from a file before it goes into a one-line message.
pub fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Output precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDtype {
    F16,
    F32,
}

impl OutDtype {
    /// The safetensors spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            OutDtype::F16 => "F16",
            OutDtype::F32 => "F32",
        }
    }
}

/// Decodes safetensors tensor bytes to f32.
pub fn decode_st_values(dtype: safetensors::Dtype, data: &[u8], name: &str) -> Result<Vec<f32>, WeightsError> {
    use safetensors::Dtype;
    Ok(match dtype {
        Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F16 => data.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::BF16 => data.chunks_exact(2).map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
        Dtype::F64 => {
            data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("chunk of 8")) as f32).collect()
        }
        other => return Err(WeightsError::dtype(clip(name), format!("{other:?}"))),
    })
}

/// Parses a safetensors buffer, telling "not safetensors at all" from "truncated/corrupt".
/// The header length is checked against the buffer before anything is allocated.
pub fn parse_safetensors(
    bytes: &[u8],
) -> Result<(safetensors::SafeTensors<'_>, BTreeMap<String, String>), WeightsError> {
    if bytes.len() < 10 {
        return Err(WeightsError::not_weights(format!("only {} bytes, too short for a safetensors file", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    if bytes[8] != b'{' {
        return Err(WeightsError::not_weights("no safetensors header"));
    }
    if n > bytes.len() as u64 - 8 {
        return Err(WeightsError::corrupt(format!(
            "the safetensors header claims {n} bytes but the file holds only {}",
            bytes.len() - 8
        )));
    }
    let bad = |e: safetensors::SafeTensorError| WeightsError::corrupt(format!("invalid safetensors file: {e}"));
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).map_err(bad)?;
    let meta: BTreeMap<String, String> =
        meta.metadata().as_ref().map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default();
    Ok((safetensors::SafeTensors::deserialize(bytes).map_err(bad)?, meta))
}

/// Serialises to safetensors. Written by hand rather than with `safetensors::serialize`,
/// whose metadata is a `HashMap` and would come out in a different order on every run;
/// here the metadata is sorted and tensors follow the layer order, so the same weights always
/// give the same bytes. The result is checked by parsing it back in the tests.
pub fn to_safetensors(w: &Vgg16Weights, dtype: OutDtype) -> Vec<u8> {
    let (tag, size) = match dtype {
        OutDtype::F16 => ("F16", 2),
        OutDtype::F32 => ("F32", 4),
    };
    let mut header = String::from("{\"__metadata__\":{");
    let mut meta = w.metadata.clone();
    meta.insert("dtype".into(), tag.into());
    meta.insert("input_convention".into(), w.convention.as_str().into());
    for (i, (k, v)) in meta.iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&serde_json::to_string(k).expect("string"));
        header.push(':');
        header.push_str(&serde_json::to_string(v).expect("string"));
    }
    header.push('}');
    let mut data = Vec::new();
    for l in &w.layers {
        for (suffix, vals, shape) in
            [("weight", &l.weight, format!("[{},{},3,3]", l.cout, l.cin)), ("bias", &l.bias, format!("[{}]", l.cout))]
        {
            let start = data.len();
            for &v in vals.iter() {
                match dtype {
                    OutDtype::F16 => data.extend_from_slice(&half::f16::from_f32(v).to_le_bytes()),
                    OutDtype::F32 => data.extend_from_slice(&v.to_le_bytes()),
                }
            }
            debug_assert_eq!(data.len() - start, vals.len() * size);
            header.push_str(&format!(
                ",\"{}.{suffix}\":{{\"dtype\":\"{tag}\",\"shape\":{shape},\"data_offsets\":[{start},{}]}}",
                l.name,
                data.len()
            ));
        }
    }
    header.push('}');
    // The format asks for the data to start 8-byte aligned; pad the JSON with spaces.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut out = Vec::with_capacity(8 + header.len() + data.len());
    out.extend_from_slice(&(header.len() as u64).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&data);
    out
}

/// A temporary file in `dir` created with the permissions an ordinary new file gets (0666 less the umask; a
/// temporary file's default, 0600, would make the output private).
fn temp_file_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory (tempfile), fsync, rename. On
/// any failure the temporary file is removed and `path` is untouched. (The engine writes its images with it
/// too.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = temp_file_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // Make the rename itself durable; not every platform can open a directory.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
