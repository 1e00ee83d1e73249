//! The converter core: recognise a source file by its content, find conv1_1 … conv5_1 by name
//! pattern and shape, bring them to OIHW with RGB input channels, and write our safetensors
//! file deterministically and atomically.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{ConvWeights, InputConvention, Vgg16Weights, WeightsError, FORMAT_NAME, FORMAT_VERSION, VGG16_CONV_LAYERS};

/// All 13 convolutions of VGG16 in order; the engine keeps the first 11.
pub const VGG16_ALL_CONVS: [&str; 13] = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
];
/// Index of each conv inside torchvision's `vgg16().features` (the gaps are ReLU and pooling).
pub const TORCHVISION_FEATURE_INDEX: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// The attribution every converted file carries unless the caller gives another.
pub const DEFAULT_LICENCE: &str = "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); VGG16 ImageNet weights by K. Simonyan and A. Zisserman, Visual Geometry Group, University of Oxford (https://www.robots.ox.ac.uk/~vgg/research/very_deep/)";

/// Largest input the converter reads: torchvision's and the classic npz VGG16 files are
/// ≈ 530 MB with their classifiers; this leaves room without reading arbitrary giants.
pub const MAX_SOURCE_BYTES: u64 = 2 << 30;

/// A dense tensor, row-major, in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct RawTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One convolution found in a source file, before mapping to a VGG16 layer.
#[derive(Clone, Debug)]
pub struct SourceLayer {
    /// Shown in messages and recorded in the metadata.
    pub source_name: String,
    /// Names tried, in order, against the layer name patterns.
    pub names: Vec<String>,
    pub weight: RawTensor,
    pub bias: Option<RawTensor>,
}

/// What a reader found in a source file.
#[derive(Clone, Debug)]
pub struct Source {
    /// Human-readable description, recorded as `source_format`.
    pub format: String,
    pub layers: Vec<SourceLayer>,
    /// Whether `layers` is in network order, so layers may be mapped by position when their
    /// names follow no known pattern (true for ONNX graphs, false for dictionaries).
    pub positional: bool,
    /// Convention and "source is BGR", when the file itself tells.
    pub hint: Option<(InputConvention, bool)>,
}

/// Output precision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutDtype {
    F16,
    F32,
}

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

/// Shortens and sanitises text taken from a file before it goes into a one-line message.
pub fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

/// Reorders axes: output axis k is input axis `perm[k]`. None if `perm` is not a permutation
/// of the tensor's axes.
pub fn permute(t: &RawTensor, perm: &[usize]) -> Option<RawTensor> {
    let n = t.shape.len();
    if perm.len() != n {
        return None;
    }
    let mut seen = vec![false; n];
    for &p in perm {
        if p >= n || std::mem::replace(&mut seen[p], true) {
            return None;
        }
    }
    let count: usize = t.shape.iter().product();
    if count != t.data.len() {
        return None;
    }
    let mut in_strides = vec![1usize; n];
    for k in (0..n.saturating_sub(1)).rev() {
        in_strides[k] = in_strides[k + 1] * t.shape[k + 1];
    }
    let out_shape: Vec<usize> = perm.iter().map(|&p| t.shape[p]).collect();
    let strides: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut data = Vec::with_capacity(count);
    let mut idx = vec![0usize; n];
    for _ in 0..count {
        let off: usize = idx.iter().zip(&strides).map(|(i, s)| i * s).sum();
        data.push(t.data[off]);
        for k in (0..n).rev() {
            idx[k] += 1;
            if idx[k] < out_shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Some(RawTensor { name: t.name.clone(), shape: out_shape, data })
}

/// A 4-D kernel with a 3×3 window in either OIHW or HWIO layout.
pub fn is_3x3_kernel(shape: Option<&[usize]>) -> bool {
    matches!(shape, Some([_, _, 3, 3]) | Some([3, 3, _, _]))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Oihw,
    Hwio,
}

/// Checks a weight's shape against VGG16 layer `idx` and tells its layout. The two layouts
/// cannot be confused: a VGG16 conv never has 3 input and 3 output channels.
fn weight_layout(idx: usize, shape: &[usize], source_name: &str) -> Result<Layout, WeightsError> {
    let (name, cin, cout) = layer_dims(idx);
    if shape == [cout, cin, 3, 3] {
        Ok(Layout::Oihw)
    } else if shape == [3, 3, cin, cout] {
        Ok(Layout::Hwio)
    } else {
        Err(WeightsError::not_vgg16(format!(
            "{name} ('{}') weight has shape {shape:?}, expected [{cout}, {cin}, 3, 3] (OIHW) or [3, 3, {cin}, {cout}] (HWIO)",
            clip(source_name)
        )))
    }
}

fn check_bias(idx: usize, shape: &[usize], source_name: &str) -> Result<(), WeightsError> {
    let (name, _, cout) = layer_dims(idx);
    let n: usize = shape.iter().product();
    if n != cout || shape.iter().filter(|&&d| d != 1).count() > 1 {
        return Err(WeightsError::not_vgg16(format!(
            "{name} ('{}') bias has shape {shape:?}, expected [{cout}]",
            clip(source_name)
        )));
    }
    Ok(())
}

/// (name, cin, cout) of any of the 13 convs.
fn layer_dims(idx: usize) -> (&'static str, usize, usize) {
    match idx {
        0..=10 => VGG16_CONV_LAYERS[idx],
        _ => (VGG16_ALL_CONVS[idx.min(12)], 512, 512),
    }
}

/// Naming family of a source; it tells the convention when the file itself does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// Keras `blockB_convL`: BGR, Caffe convention.
    Keras,
    /// `convB_L` (Caffe prototxt names, the classic vgg16_weights.npz): Caffe convention, and
    /// RGB by default, as the widely used npz was converted to RGB input.
    Classic,
    /// torchvision `features.N`: RGB, torchvision convention.
    Torchvision,
}

/// A recognised layer name: one of the 13 VGG16 convs, or a conv VGG16 lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerId {
    Vgg16(usize),
    Other(String),
}

fn digits_at(s: &[u8], i: usize) -> Option<(usize, usize)> {
    let end = s[i.min(s.len())..].iter().take_while(|c| c.is_ascii_digit()).count() + i;
    if end == i || end - i > 4 {
        return None;
    }
    std::str::from_utf8(&s[i..end]).ok()?.parse().ok().map(|v| (v, end))
}

/// Finds a layer name pattern anywhere in `name`.
pub fn parse_layer_name(name: &str) -> Option<(LayerId, Style)> {
    let lower = name.to_ascii_lowercase();
    let s = lower.as_bytes();
    let conv = |b: usize, l: usize, style| {
        let canon = format!("conv{b}_{l}");
        let id = match VGG16_ALL_CONVS.iter().position(|&c| c == canon) {
            Some(i) => LayerId::Vgg16(i),
            None => LayerId::Other(canon),
        };
        Some((id, style))
    };
    // `blockB_convL` first: Keras names also contain `convL_1`-like suffixes.
    for (i, _) in lower.match_indices("block") {
        if let Some((b, e)) = digits_at(s, i + 5) {
            if lower[e..].starts_with("_conv") {
                if let Some((l, _)) = digits_at(s, e + 5) {
                    return conv(b, l, Style::Keras);
                }
            }
        }
    }
    for (i, _) in lower.match_indices("conv") {
        if let Some((b, e)) = digits_at(s, i + 4) {
            if s.get(e) == Some(&b'_') {
                if let Some((l, _)) = digits_at(s, e + 1) {
                    return conv(b, l, Style::Classic);
                }
            }
        }
    }
    for (i, _) in lower.match_indices("features") {
        let j = i + 8;
        if matches!(s.get(j), Some(b'.') | Some(b'/') | Some(b'_')) {
            if let Some((n, e)) = digits_at(s, j + 1) {
                if e == s.len() || matches!(s[e], b'.' | b'/' | b'_' | b':') {
                    let id = match TORCHVISION_FEATURE_INDEX.iter().position(|&k| k == n) {
                        Some(i) => LayerId::Vgg16(i),
                        None => LayerId::Other(format!("features.{n}")),
                    };
                    return Some((id, Style::Torchvision));
                }
            }
        }
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Weight,
    Bias,
}

/// Tells a weight from a bias by the last name component (`conv1_1_W`, `features.0.bias`,
/// `block1_conv1/kernel:0`, `conv1_1/weights`).
pub fn parse_role(name: &str) -> Option<Role> {
    let base = match name.rsplit_once(':') {
        Some((b, suffix)) if suffix.bytes().all(|c| c.is_ascii_digit()) => b,
        _ => name,
    };
    let last = base.rsplit(['.', '/', '_']).next()?.to_ascii_lowercase();
    match last.as_str() {
        "w" | "weight" | "weights" | "kernel" | "filter" => Some(Role::Weight),
        "b" | "bias" | "biases" => Some(Role::Bias),
        _ => None,
    }
}

/// A named collection of tensors (npz, safetensors, PyTorch state dict) the dictionary mapper
/// reads from. Shapes come first so nothing is read (or allocated) for a tensor of the wrong
/// shape.
pub trait TensorDict {
    fn names(&self) -> Vec<String>;
    fn shape(&mut self, name: &str) -> Result<Vec<usize>, WeightsError>;
    fn read(&mut self, name: &str) -> Result<RawTensor, WeightsError>;
}

/// Maps a dictionary's names to VGG16 layers and reads the 11 the engine needs.
pub fn read_dict(dict: &mut dyn TensorDict, format: &str) -> Result<Source, WeightsError> {
    let names = dict.names();
    if let Some(n) = names.iter().find(|n| n.contains("running_mean") || n.contains("running_var")) {
        return Err(WeightsError::not_vgg16(format!(
            "'{}' is a batch-norm statistic; batch-norm VGG (vgg16_bn) is not supported",
            clip(n)
        )));
    }
    let mut found: BTreeMap<usize, (Option<String>, Option<String>)> = BTreeMap::new();
    let mut style = None;
    for n in &names {
        let (Some(role), Some((id, st))) = (parse_role(n), parse_layer_name(n)) else {
            continue;
        };
        let idx = match id {
            LayerId::Vgg16(i) => i,
            LayerId::Other(other) => {
                if role == Role::Weight {
                    return Err(WeightsError::not_vgg16(format!(
                        "'{}' is layer {other}, which VGG16 does not have (VGG19?)",
                        clip(n)
                    )));
                }
                continue;
            }
        };
        style.get_or_insert(st);
        let slot = found.entry(idx).or_default();
        let target = match role {
            Role::Weight => &mut slot.0,
            Role::Bias => &mut slot.1,
        };
        if let Some(prev) = target {
            return Err(WeightsError::not_vgg16(format!(
                "both '{}' and '{}' look like the {} of {}",
                clip(prev),
                clip(n),
                if role == Role::Weight { "weight" } else { "bias" },
                VGG16_ALL_CONVS[idx]
            )));
        }
        *target = Some(n.clone());
    }
    if found.is_empty() {
        return Err(WeightsError::not_vgg16(format!(
            "no tensor is named like a VGG16 conv layer (conv1_1_W, features.0.weight, block1_conv1/kernel, …); {} tensors found",
            names.len()
        )));
    }
    let mut layers = Vec::new();
    for idx in 0..VGG16_CONV_LAYERS.len() {
        let (lname, _, _) = VGG16_CONV_LAYERS[idx];
        let Some((w, b)) = found.get(&idx) else {
            return Err(missing(idx, found.keys().map(|&i| VGG16_ALL_CONVS[i])));
        };
        let Some(w) = w else {
            return Err(WeightsError::not_vgg16(format!("{lname} has a bias but no weight")));
        };
        let Some(b) = b else {
            return Err(WeightsError::not_vgg16(format!("{lname} ('{}') has no bias", clip(w))));
        };
        weight_layout(idx, &dict.shape(w)?, w)?;
        check_bias(idx, &dict.shape(b)?, b)?;
        let weight = dict.read(w)?;
        let bias = dict.read(b)?;
        layers.push(SourceLayer {
            source_name: w.clone(),
            names: vec![VGG16_ALL_CONVS[idx].to_string()],
            weight,
            bias: Some(bias),
        });
    }
    let hint = style.map(|s| match s {
        Style::Keras => (InputConvention::Caffe, true),
        Style::Classic => (InputConvention::Caffe, false),
        Style::Torchvision => (InputConvention::Torchvision, false),
    });
    let style_name = match style {
        Some(Style::Keras) => "Keras blockB_convL names",
        Some(Style::Classic) => "convB_L names",
        Some(Style::Torchvision) => "torchvision features.N names",
        None => "unknown names",
    };
    Ok(Source { format: format!("{format} ({style_name})"), layers, positional: false, hint })
}

fn missing<'a>(idx: usize, have: impl Iterator<Item = &'a str>) -> WeightsError {
    let have: Vec<&str> = have.collect();
    WeightsError::not_vgg16(format!(
        "layer {} is missing (found: {})",
        VGG16_ALL_CONVS[idx],
        if have.is_empty() { "none".to_string() } else { have.join(", ") }
    ))
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

struct NpzDict<'a> {
    archive: npyz::npz::NpzArchive<std::io::Cursor<&'a [u8]>>,
}

impl NpzDict<'_> {
    fn open(&mut self, name: &str) -> Result<npyz::NpyFile<impl Read + '_>, WeightsError> {
        self.archive
            .by_name(name)
            .map_err(|e| WeightsError::corrupt(format!("array '{}': {e}", clip(name))))?
            .ok_or_else(|| WeightsError::corrupt(format!("array '{}' vanished", clip(name))))
    }
}

impl TensorDict for NpzDict<'_> {
    fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.archive.array_names().map(str::to_string).collect();
        v.sort();
        v
    }
    fn shape(&mut self, name: &str) -> Result<Vec<usize>, WeightsError> {
        let f = self.open(name)?;
        f.shape()
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| WeightsError::corrupt("dimension too large")))
            .collect()
    }
    fn read(&mut self, name: &str) -> Result<RawTensor, WeightsError> {
        use npyz::{DType, TypeChar};
        let f = self.open(name)?;
        let shape: Vec<usize> = f.shape().iter().map(|&d| d as usize).collect();
        let fortran = f.order() == npyz::Order::Fortran;
        let dtype = f.dtype();
        let bad = |e: std::io::Error| WeightsError::corrupt(format!("array '{}': {e}", clip(name)));
        let data: Vec<f32> = match &dtype {
            DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 4 => {
                f.into_vec::<f32>().map_err(bad)?
            }
            DType::Plain(ts) if ts.type_char() == TypeChar::Float && ts.size_field() == 8 => {
                f.into_vec::<f64>().map_err(bad)?.into_iter().map(|v| v as f32).collect()
            }
            other => return Err(WeightsError::dtype(clip(name), other.descr())),
        };
        let t = if fortran {
            // Fortran order is C order of the reversed shape; permute it back.
            let rev: Vec<usize> = shape.iter().rev().copied().collect();
            let perm: Vec<usize> = (0..shape.len()).rev().collect();
            let c = RawTensor { name: name.to_string(), shape: rev, data };
            permute(&c, &perm).ok_or_else(|| WeightsError::corrupt(format!("array '{}' has a bad size", clip(name))))?
        } else {
            RawTensor { name: name.to_string(), shape, data }
        };
        if t.data.len() != t.shape.iter().product::<usize>() {
            return Err(WeightsError::corrupt(format!("array '{}' is truncated", clip(name))));
        }
        Ok(t)
    }
}

/// Source formats, recognised by content.
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
        let archive = zip_names(bytes)?;
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

fn zip_names(bytes: &[u8]) -> Result<Vec<String>, WeightsError> {
    let archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| WeightsError::corrupt(format!("zip archive cannot be read, probably truncated ({e})")))?;
    let mut archive = archive;
    Ok(archive.zip_archive().file_names().map(str::to_string).collect())
}

/// Reads any supported source into its conv layers.
pub fn read_source(bytes: &[u8]) -> Result<Source, WeightsError> {
    match detect(bytes)? {
        SourceKind::Onnx => super::onnx::read_onnx(bytes),
        SourceKind::Safetensors => {
            let (st, _) = parse_safetensors(bytes)?;
            read_dict(&mut StDict(st), "safetensors")
        }
        SourceKind::Npz => {
            let archive = npyz::npz::NpzArchive::new(std::io::Cursor::new(bytes))
                .map_err(|e| WeightsError::corrupt(format!("zip archive cannot be read ({e})")))?;
            read_dict(&mut NpzDict { archive }, "NumPy .npz")
        }
        SourceKind::Pth => super::pth::read_pth(bytes),
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
            w.metadata.insert("dtype".into(), dtype_str(opts.dtype).into());
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
    put("dtype", dtype_str(opts.dtype).into());
    put("source_file", opts.source_name.clone().unwrap_or_else(|| file_name.to_string()));
    put("source_sha256", hex(&Sha256::digest(bytes)));
    put("source_format", src.format.clone());
    put("source_layers", provenance.join(","));
    put("licence", opts.licence.clone());
    put("converter", "neural-style convert-weights".into());
    Ok(Vgg16Weights { layers, convention: hint_conv, metadata: m })
}

fn dtype_str(d: OutDtype) -> &'static str {
    match d {
        OutDtype::F16 => "F16",
        OutDtype::F32 => "F32",
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

/// Writes `bytes` to `path` atomically: `PATH.tmp-<pid>` in the same directory, fsync, rename.
/// On any failure the temporary file is removed and `path` is untouched.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WeightsError> {
    let werr = |e: std::io::Error| WeightsError::Write { path: path.display().to_string(), source: e };
    let file_name = path
        .file_name()
        .ok_or_else(|| werr(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp: PathBuf = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable; not every platform can open a directory.
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(werr)
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
    let bytes = super::read_bounded(input, MAX_SOURCE_BYTES)?;
    let name = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let w = convert_bytes(&bytes, &name, opts).map_err(|e| e.with_path(input))?;
    let out = to_safetensors(&w, opts.dtype);
    // Read back what we are about to write: a converter bug must not ship a file the engine
    // refuses.
    Vgg16Weights::from_bytes(&out)
        .map_err(|e| WeightsError::invalid(format!("internal error, the converted file does not load: {e}")))?;
    write_atomic(output, &out)?;
    Ok(ConvertReport {
        source_format: w.metadata.get("source_format").cloned().unwrap_or_default(),
        convention: w.convention,
        source_bgr: w.metadata.get("source_channel_order").map(String::as_str) == Some("BGR"),
        output_bytes: out.len(),
        output_sha256: hex(&Sha256::digest(&out)),
    })
}
