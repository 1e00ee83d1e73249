//! What a reader finds in a source file: raw tensors, the conv layers with the names they had, and the
//! dictionary walk shared by the readers of name → tensor files (safetensors, npz, .pth state dicts). The
//! format readers (`onnx`, `pth`, `npz`) build on this; the crate root maps what they find to VGG16.

use std::collections::BTreeMap;

use neural_style_weights::{clip, InputConvention, WeightsError, VGG16_CONV_LAYERS};

/// All 13 convolutions of VGG16 in order; the engine keeps the first 11.
pub const VGG16_ALL_CONVS: [&str; 13] = [
    "conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2", "conv4_3",
    "conv5_1", "conv5_2", "conv5_3",
];
/// Index of each conv inside torchvision's `vgg16().features` (the gaps are ReLU and pooling).
pub const TORCHVISION_FEATURE_INDEX: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

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

pub(crate) fn missing<'a>(idx: usize, have: impl Iterator<Item = &'a str>) -> WeightsError {
    let have: Vec<&str> = have.collect();
    WeightsError::not_vgg16(format!(
        "layer {} is missing (found: {})",
        VGG16_ALL_CONVS[idx],
        if have.is_empty() { "none".to_string() } else { have.join(", ") }
    ))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    Oihw,
    Hwio,
}

/// Checks a weight's shape against VGG16 layer `idx` and tells its layout. The two layouts
/// cannot be confused: a VGG16 conv never has 3 input and 3 output channels.
pub(crate) fn weight_layout(idx: usize, shape: &[usize], source_name: &str) -> Result<Layout, WeightsError> {
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

pub(crate) fn check_bias(idx: usize, shape: &[usize], source_name: &str) -> Result<(), WeightsError> {
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
pub(crate) fn layer_dims(idx: usize) -> (&'static str, usize, usize) {
    match idx {
        0..=10 => VGG16_CONV_LAYERS[idx],
        _ => (VGG16_ALL_CONVS[idx.min(12)], 512, 512),
    }
}
