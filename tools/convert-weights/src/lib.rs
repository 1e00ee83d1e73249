//! neural-style-convert: turns public VGG16 files (ONNX, NumPy `.npz`, PyTorch `.pth`, safetensors) into the
//! engine's weights file. Recognise a source file by its content, find conv1_1 … conv5_1 by name pattern and
//! shape, bring them to OIHW with RGB input channels, and write the file deterministically and atomically
//! (the format itself, and its reader, are `neural-style-weights`).
//!
//! Modules: [`source`] (what a reader finds, and the name → tensor dictionary walk), [`onnx`] (the protobuf
//! subset), [`pth`] (a small, bounded pickle reader), [`npz`]; this root detects the format and maps layers.

pub mod npz;
pub mod onnx;
pub mod pth;
pub mod source;

use std::collections::BTreeMap;
use std::path::Path;

use neural_style_weights::{
    clip, decode_st_values, parse_safetensors, read_bounded, to_safetensors, write_atomic, ConvWeights,
    InputConvention, OutDtype, Vgg16Weights, WeightsError, FORMAT_NAME, FORMAT_VERSION, VGG16_CONV_LAYERS,
};
use sha2::{Digest, Sha256};
use source::{check_bias, missing, weight_layout, Layout};
pub use source::{
    is_3x3_kernel, parse_layer_name, parse_role, permute, read_dict, LayerId, RawTensor, Role, Source, SourceLayer,
    Style, TensorDict, MAX_SOURCE_BYTES, TORCHVISION_FEATURE_INDEX, VGG16_ALL_CONVS,
};

/// The attribution every converted file carries unless the caller gives another.
pub const DEFAULT_LICENCE: &str = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); VGG16 ImageNet weights by K. Simonyan and A. Zisserman, Visual Geometry Group, University of Oxford (https://www.robots.ox.ac.uk/~vgg/research/very_deep/)";

/// Converter settings. `Default` gives what the shipped file uses.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    pub dtype: OutDtype,
    /// Overrides the detected input convention.
    pub convention: Option<InputConvention>,
    /// Overrides the detected source channel order (true = BGR).
    pub source_bgr: Option<bool>,
    /// Recorded as `source_file` (default: the input's file name, without its directory, so
    /// the output does not depend on where the input was).
    pub source_name: Option<String>,
    pub licence: String,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            dtype: OutDtype::F16,
            convention: None,
            source_bgr: None,
            source_name: None,
            licence: DEFAULT_LICENCE.to_string(),
        }
    }
}

struct StDict<'a>(safetensors::SafeTensors<'a>);

impl TensorDict for StDict<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.0.names().into_iter().map(str::to_string).collect();
        v.sort();
        v
    }
    fn shape(&mut self, name: &str) -> Result<Vec<usize>, WeightsError> {
        Ok(self.0.tensor(name).map_err(|e| WeightsError::corrupt(e.to_string()))?.shape().to_vec())
    }
    fn read(&mut self, name: &str) -> Result<RawTensor, WeightsError> {
        let v = self.0.tensor(name).map_err(|e| WeightsError::corrupt(e.to_string()))?;
        Ok(RawTensor {
            name: name.to_string(),
            shape: v.shape().to_vec(),
            data: decode_st_values(v.dtype(), v.data(), name)?,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    Onnx,
    Npz,
    Pth,
    Safetensors,
}

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// Pickle protocol 2 + LONG1 of torch's legacy-format magic number 0x1950a86a20f9469cfc6c.
const TORCH_LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

pub fn detect(bytes: &[u8]) -> Result<SourceKind, WeightsError> {
    if bytes.len() < 16 {
        return Err(WeightsError::not_weights(format!("only {} bytes", bytes.len())));
    }
    if bytes.starts_with(ZIP_MAGIC) {
        let archive = npz::zip_names(bytes)?;
        if archive.iter().any(|n| n.ends_with(".npy")) {
            return Ok(SourceKind::Npz);
        }
        if archive.iter().any(|n| n.ends_with("data.pkl")) {
            return Ok(SourceKind::Pth);
        }
        return Err(WeightsError::not_weights("a zip archive that is neither NumPy .npz nor a PyTorch checkpoint"));
    }
    if bytes.starts_with(TORCH_LEGACY_MAGIC) {
        return Ok(SourceKind::Pth);
    }
    if bytes[8] == b'{' {
        return Ok(SourceKind::Safetensors);
    }
    // Every ONNX writer starts with ModelProto field 1 (ir_version, a small varint).
    if bytes[0] == 0x08 && (1..=64).contains(&bytes[1]) {
        return Ok(SourceKind::Onnx);
    }
    Err(WeightsError::not_weights("unrecognised content (expected ONNX, NumPy .npz, PyTorch .pth or safetensors)"))
}

/// Reads any supported source into its conv layers.
pub fn read_source(bytes: &[u8]) -> Result<Source, WeightsError> {
    match detect(bytes)? {
        SourceKind::Onnx => onnx::read_onnx(bytes),
        SourceKind::Safetensors => {
            let (st, _) = parse_safetensors(bytes)?;
            read_dict(&mut StDict(st), "safetensors")
        }
        SourceKind::Npz => {
            let archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| WeightsError::corrupt(format!("zip archive cannot be read ({e})")))?;
            read_dict(&mut npz::NpzDict { archive }, "NumPy .npz")
        }
        SourceKind::Pth => pth::read_pth(bytes),
    }
}

/// Maps source layers to conv1_1 … conv5_1, transposes to OIHW and reorders BGR → RGB.
pub fn assemble(src: &Source, source_bgr: bool) -> Result<(Vec<ConvWeights>, Vec<String>), WeightsError> {
    // Map by name when every layer's name says which conv it is; otherwise, for graphs, by
    // position (ONNX lists nodes in topological order).
    let by_name: Option<Vec<usize>> = src
        .layers
        .iter()
        .map(|l| {
            l.names.iter().find_map(|n| match parse_layer_name(n) {
                Some((LayerId::Vgg16(i), _)) => Some(i),
                _ => None,
            })
        })
        .collect();
    let by_name = by_name.filter(|ids| {
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.dedup();
        sorted.len() == ids.len()
    });
    let mapping: Vec<usize> = match by_name {
        Some(ids) => ids,
        None if src.positional => {
            if src.layers.len() > VGG16_ALL_CONVS.len() {
                return Err(WeightsError::not_vgg16(format!(
                    "{} 3x3 convolutions, VGG16 has 13 (VGG19 has 16)",
                    src.layers.len()
                )));
            }
            (0..src.layers.len()).collect()
        }
        None => return Err(WeightsError::not_vgg16("layer names do not identify the VGG16 convolutions")),
    };
    let mut out = Vec::with_capacity(VGG16_CONV_LAYERS.len());
    let mut provenance = Vec::new();
    for (idx, &(name, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate() {
        let Some(pos) = mapping.iter().position(|&m| m == idx) else {
            return Err(missing(idx, mapping.iter().map(|&i| VGG16_ALL_CONVS[i])));
        };
        let l = &src.layers[pos];
        let layout = weight_layout(idx, &l.weight.shape, &l.source_name)?;
        let bias = l
            .bias
            .as_ref()
            .ok_or_else(|| WeightsError::not_vgg16(format!("{name} ('{}') has no bias", clip(&l.source_name))))?;
        check_bias(idx, &bias.shape, &bias.name)?;
        let mut w = match layout {
            Layout::Oihw => l.weight.clone(),
            // HWIO → OIHW: output axes (O, I, H, W) are input axes (3, 2, 0, 1).
            Layout::Hwio => permute(&l.weight, &[3, 2, 0, 1]).expect("shape checked"),
        };
        if source_bgr && idx == 0 {
            // Only conv1_1 sees image channels; reverse its input-channel axis.
            let mut rgb = w.data.clone();
            for o in 0..cout {
                for i in 0..cin {
                    let src_off = (o * cin + (cin - 1 - i)) * 9;
                    let dst_off = (o * cin + i) * 9;
                    rgb[dst_off..dst_off + 9].copy_from_slice(&w.data[src_off..src_off + 9]);
                }
            }
            w.data = rgb;
        }
        for (t, what) in [(&w.data, "weight"), (&bias.data, "bias")] {
            if let Some(i) = t.iter().position(|v| !v.is_finite()) {
                return Err(WeightsError::corrupt(format!("{name} {what} holds a non-finite value at index {i}")));
            }
        }
        provenance.push(format!("{name}={}", l.source_name));
        out.push(ConvWeights { name: name.to_string(), cin, cout, weight: w.data, bias: bias.data.clone() });
    }
    Ok((out, provenance))
}

/// Converts a source file held in memory. `file_name` is recorded unless the options
/// override it.
pub fn convert_bytes(bytes: &[u8], file_name: &str, opts: &ConvertOptions) -> Result<Vgg16Weights, WeightsError> {
    if detect(bytes)? == SourceKind::Safetensors {
        let (_, meta) = parse_safetensors(bytes)?;
        let ours = meta.get("format").map(String::as_str) == Some(FORMAT_NAME);
        if ours {
            // Re-encoding one of our files (say F16 → F32) keeps its provenance.
            let mut w = Vgg16Weights::from_bytes(bytes)?;
            w.metadata.insert("dtype".into(), opts.dtype.as_str().into());
            return Ok(w);
        }
    }
    let src = read_source(bytes)?;
    let (hint_conv, hint_bgr) = match (src.hint, opts.convention, opts.source_bgr) {
        (_, Some(c), Some(b)) => (c, b),
        (Some((c, b)), oc, ob) => (oc.unwrap_or(c), ob.unwrap_or(b)),
        (None, _, _) => {
            return Err(WeightsError::invalid(
                "cannot tell the input convention of this file; pass --convention caffe|torchvision and --channel-order rgb|bgr",
            ))
        }
    };
    let (layers, provenance) = assemble(&src, hint_bgr)?;
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    put("format", FORMAT_NAME.into());
    put("format_version", FORMAT_VERSION.into());
    put("architecture", "VGG16 (ImageNet), convolutions conv1_1 to conv5_1".into());
    put("layers", VGG16_CONV_LAYERS.map(|l| l.0).join(","));
    put("tensors", "<layer>.weight [cout, cin, 3, 3], <layer>.bias [cout]".into());
    put("layout", "OIHW".into());
    put("channel_order", "RGB".into());
    put("source_channel_order", if hint_bgr { "BGR" } else { "RGB" }.into());
    put("input_convention", hint_conv.as_str().into());
    put("input_convention_detail", hint_conv.description().into());
    put("dtype", opts.dtype.as_str().into());
    put("source_file", opts.source_name.clone().unwrap_or_else(|| file_name.to_string()));
    put("source_sha256", hex(&Sha256::digest(bytes)));
    put("source_format", src.format.clone());
    put("source_layers", provenance.join(","));
    put("licence", opts.licence.clone());
    put("converter", "neural-style convert-weights".into());
    Ok(Vgg16Weights { layers, convention: hint_conv, metadata: m })
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`convert_file`] did, for the tool's summary line.
#[derive(Clone, Debug)]
pub struct ConvertReport {
    pub source_format: String,
    pub convention: InputConvention,
    pub source_bgr: bool,
    pub output_bytes: usize,
    pub output_sha256: String,
}

/// Reads `input`, converts it and writes `output` atomically.
pub fn convert_file(input: &Path, output: &Path, opts: &ConvertOptions) -> Result<ConvertReport, WeightsError> {
    let bytes = read_bounded(input, MAX_SOURCE_BYTES)?;
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let w = convert_bytes(&bytes, &name, opts).map_err(|e| e.with_path(input))?;
    let out = to_safetensors(&w, opts.dtype);
    // Read back what we are about to write: a converter bug must not ship a file the engine
    // refuses.
    Vgg16Weights::from_bytes(&out)
        .map_err(|e| WeightsError::invalid(format!("internal error, the converted file does not load: {e}")))?;
    write_atomic(output, &out).map_err(|e| WeightsError::Write { path: output.display().to_string(), source: e })?;
    Ok(ConvertReport {
        source_format: w.metadata.get("source_format").cloned().unwrap_or_default(),
        convention: w.convention,
        source_bgr: w.metadata.get("source_channel_order").map(String::as_str) == Some("BGR"),
        output_bytes: out.len(),
        output_sha256: hex(&Sha256::digest(&out)),
    })
}
