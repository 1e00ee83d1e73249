//! The VGG16 weights format of neural-style and its loader: the only weights code the engine links. The
//! converters from public files (ONNX, NumPy `.npz`, PyTorch `.pth`) live in `tools/convert-weights`
//! (crate `neural-style-convert`), which builds on this crate.
//!
//! The engine's weights file is a safetensors container holding conv1_1 … conv5_1 of VGG16
//! (`<layer>.weight` as OIHW `[cout, cin, 3, 3]`, `<layer>.bias` as `[cout]`, F16 or F32),
//! with input channels in RGB order, plus a metadata header that records where the weights
//! came from and which input convention they expect ([`InputConvention`]).
//!
//! It depends on nothing GPU-related, so the fuzz targets (`fuzz/`) exercise it through its public API
//! without building the GPU stack.

pub mod format;

pub use format::{clip, decode_st_values, parse_safetensors, to_safetensors, write_atomic, OutDtype};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// conv1_1 … conv5_1 of VGG16: (name, input channels, output channels). All kernels are 3×3.
pub const VGG16_CONV_LAYERS: [(&str, usize, usize); 11] = [
    ("conv1_1", 3, 64),
    ("conv1_2", 64, 64),
    ("conv2_1", 64, 128),
    ("conv2_2", 128, 128),
    ("conv3_1", 128, 256),
    ("conv3_2", 256, 256),
    ("conv3_3", 256, 256),
    ("conv4_1", 256, 512),
    ("conv4_2", 512, 512),
    ("conv4_3", 512, 512),
    ("conv5_1", 512, 512),
];

/// The value of the `format` metadata key in our files; anything else is a foreign file.
pub const FORMAT_NAME: &str = "neural-style-vgg16-conv";
/// The value of `format_version`; bump it when the layout or required keys change.
pub const FORMAT_VERSION: &str = "1";
/// File name of the shipped weights, under `weights/`.
pub const DEFAULT_FILE_NAME: &str = "vgg16_conv.safetensors";

/// Caffe/Keras ImageNet mean in RGB order, in 0–255 pixel units. The engine always feeds
/// `pixels − CAFFE_MEAN_RGB`; a convention maps that to what the weights were trained on.
pub const CAFFE_MEAN_RGB: [f32; 3] = [123.68, 116.779, 103.939];
/// torchvision's normalisation (RGB, pixels in 0–1).
pub const TORCHVISION_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const TORCHVISION_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Largest weights file the loader reads. The f32 version of our file is ≈ 49 MB; the bound
/// keeps a wrong `--weights` (say, a video) from being read into memory whole.
pub const MAX_WEIGHTS_FILE_BYTES: u64 = 256 << 20;

/// How network inputs were normalised when the weights were trained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputConvention {
    /// Caffe / Keras "caffe": pixels in 0–255 minus the ImageNet mean.
    Caffe,
    /// torchvision: pixels in 0–1, minus mean, divided by std (per channel).
    Torchvision,
}

impl InputConvention {
    /// Per-channel (scale, offset) mapping our `x = pixels − CAFFE_MEAN_RGB` (RGB, 0–255 units)
    /// to the network input: `net_in[c] = x[c] * scale[c] + offset[c]`; identity for Caffe.
    pub fn input_affine(&self) -> ([f32; 3], [f32; 3]) {
        match self {
            InputConvention::Caffe => ([1.0; 3], [0.0; 3]),
            InputConvention::Torchvision => {
                // (p/255 − m)/s with p = x + caffe_mean  ⇒  x/(255 s) + (caffe_mean/255 − m)/s.
                let mut scale = [0.0; 3];
                let mut offset = [0.0; 3];
                for c in 0..3 {
                    let s = TORCHVISION_STD[c] as f64;
                    scale[c] = (1.0 / (255.0 * s)) as f32;
                    offset[c] = ((CAFFE_MEAN_RGB[c] as f64 / 255.0 - TORCHVISION_MEAN[c] as f64) / s) as f32;
                }
                (scale, offset)
            }
        }
    }

    /// The metadata spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            InputConvention::Caffe => "caffe",
            InputConvention::Torchvision => "torchvision",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "caffe" => Some(InputConvention::Caffe),
            "torchvision" => Some(InputConvention::Torchvision),
            _ => None,
        }
    }

    /// Human-readable description, stored in the metadata so the file explains itself.
    pub fn description(&self) -> &'static str {
        match self {
            InputConvention::Caffe => "Caffe: RGB pixels in 0-255 minus mean (R,G,B) = (123.68, 116.779, 103.939)",
            InputConvention::Torchvision => {
                "torchvision: RGB pixels in 0-1, (p - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)"
            }
        }
    }
}

/// One 3×3 convolution.
#[derive(Clone, Debug)]
pub struct ConvWeights {
    pub name: String,
    pub cin: usize,
    pub cout: usize,
    /// OIHW: `[cout][cin][3][3]`, input channels in RGB order (for conv1_1).
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

/// conv1_1 … conv5_1 of VGG16, ready for the engine.
#[derive(Clone, Debug)]
pub struct Vgg16Weights {
    /// The 11 layers of [`VGG16_CONV_LAYERS`], in order.
    pub layers: Vec<ConvWeights>,
    pub convention: InputConvention,
    pub metadata: BTreeMap<String, String>,
}

/// Every way loading or converting weights can fail; each message is one line and names the
/// file (or "weights data" when reading from memory).
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{path}: weights file not found (pass --weights PATH or set NEURAL_STYLE_WEIGHTS)")]
    NotFound { path: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: cannot write: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a weights file: {reason}")]
    NotWeights { path: String, reason: String },
    #[error("{path}: truncated or corrupt: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("{path}: not a VGG16 network: {reason}")]
    NotVgg16 { path: String, reason: String },
    #[error("{path}: tensor {tensor} has unsupported data type {dtype} (supported: F32, F16, BF16, F64)")]
    UnsupportedDtype { path: String, tensor: String, dtype: String },
    #[error("{path}: not a neural-style weights file: {reason} (convert it with `cargo run --release --bin convert-weights -- INPUT OUTPUT`)")]
    Foreign { path: String, reason: String },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The path placeholder used until the caller knows the file name.
pub const IN_MEMORY: &str = "weights data";

impl WeightsError {
    /// Replaces the path shown in the message (errors are built deep in parsers that only see
    /// bytes; the caller that opened the file knows its name).
    pub fn with_path(mut self, p: &Path) -> Self {
        let shown = p.display().to_string();
        match &mut self {
            WeightsError::NotFound { path }
            | WeightsError::Io { path, .. }
            | WeightsError::Write { path, .. }
            | WeightsError::NotWeights { path, .. }
            | WeightsError::Corrupt { path, .. }
            | WeightsError::NotVgg16 { path, .. }
            | WeightsError::UnsupportedDtype { path, .. }
            | WeightsError::Foreign { path, .. }
            | WeightsError::Invalid { path, .. } => *path = shown,
        }
        self
    }

    pub fn not_weights(reason: impl Into<String>) -> Self {
        WeightsError::NotWeights { path: IN_MEMORY.into(), reason: reason.into() }
    }
    pub fn corrupt(reason: impl Into<String>) -> Self {
        WeightsError::Corrupt { path: IN_MEMORY.into(), reason: reason.into() }
    }
    pub fn not_vgg16(reason: impl Into<String>) -> Self {
        WeightsError::NotVgg16 { path: IN_MEMORY.into(), reason: reason.into() }
    }
    pub fn foreign(reason: impl Into<String>) -> Self {
        WeightsError::Foreign { path: IN_MEMORY.into(), reason: reason.into() }
    }
    pub fn invalid(reason: impl Into<String>) -> Self {
        WeightsError::Invalid { path: IN_MEMORY.into(), reason: reason.into() }
    }
    pub fn dtype(tensor: impl Into<String>, dtype: impl Into<String>) -> Self {
        WeightsError::UnsupportedDtype { path: IN_MEMORY.into(), tensor: tensor.into(), dtype: dtype.into() }
    }
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            WeightsError::NotFound { path: path.display().to_string() }
        } else {
            WeightsError::Io { path: path.display().to_string(), source }
        }
    }
}

/// Reads a whole file, refusing ones larger than `limit` before allocating.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, WeightsError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let len = file.metadata().map_err(|e| WeightsError::io(path, e))?.len();
    if len > limit {
        return Err(WeightsError::Invalid {
            path: path.display().to_string(),
            reason: format!("file is {len} bytes, larger than the {limit}-byte limit for a weights file"),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` guards against a file that grows between the size check and the read.
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| WeightsError::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(WeightsError::Invalid {
            path: path.display().to_string(),
            reason: format!("file is larger than the {limit}-byte limit for a weights file"),
        });
    }
    Ok(bytes)
}

/// Metadata keys every file of ours must carry.
const REQUIRED_METADATA: [&str; 5] = ["format", "format_version", "layout", "channel_order", "input_convention"];

impl Vgg16Weights {
    /// Reads and validates our safetensors file (F16, BF16 or F32 tensors).
    pub fn load(path: &Path) -> Result<Self, WeightsError> {
        let bytes = read_bounded(path, MAX_WEIGHTS_FILE_BYTES)?;
        Self::from_bytes(&bytes).map_err(|e| e.with_path(path))
    }

    /// Same as [`Vgg16Weights::load`], from memory. Never panics on any input (fuzzed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        let (st, meta) = format::parse_safetensors(bytes)?;
        for key in REQUIRED_METADATA {
            if !meta.contains_key(key) {
                return Err(WeightsError::foreign(format!("metadata key '{key}' is missing")));
            }
        }
        let expect = |key: &str, want: &str| -> Result<(), WeightsError> {
            let got = &meta[key];
            if got != want {
                return Err(WeightsError::foreign(format!(
                    "metadata '{key}' is '{}', expected '{want}'",
                    format::clip(got)
                )));
            }
            Ok(())
        };
        expect("format", FORMAT_NAME)?;
        expect("format_version", FORMAT_VERSION)?;
        expect("layout", "OIHW")?;
        expect("channel_order", "RGB")?;
        let convention = InputConvention::parse(&meta["input_convention"]).ok_or_else(|| {
            WeightsError::invalid(format!(
                "metadata 'input_convention' is '{}', expected 'caffe' or 'torchvision'",
                format::clip(&meta["input_convention"])
            ))
        })?;

        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        let expected: std::collections::BTreeSet<String> =
            VGG16_CONV_LAYERS.iter().flat_map(|(n, _, _)| [format!("{n}.weight"), format!("{n}.bias")]).collect();
        if let Some(extra) = names.iter().find(|n| !expected.contains(*n)) {
            return Err(WeightsError::foreign(format!("unexpected tensor '{}'", format::clip(extra))));
        }
        let mut layers = Vec::with_capacity(VGG16_CONV_LAYERS.len());
        for (name, cin, cout) in VGG16_CONV_LAYERS {
            let w = read_tensor(&st, &format!("{name}.weight"), &[cout, cin, 3, 3])?;
            let b = read_tensor(&st, &format!("{name}.bias"), &[cout])?;
            layers.push(ConvWeights { name: name.to_string(), cin, cout, weight: w, bias: b });
        }
        Ok(Vgg16Weights { layers, convention, metadata: meta })
    }

    /// The shipped file: `$NEURAL_STYLE_WEIGHTS` if set, else `weights/vgg16_conv.safetensors`
    /// in the source tree if it exists, else beside the executable.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os("NEURAL_STYLE_WEIGHTS") {
            if !p.is_empty() {
                return PathBuf::from(p);
            }
        }
        // This crate lives in the `weights/` folder beside the shipped file.
        let in_tree = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_FILE_NAME);
        if in_tree.is_file() {
            return in_tree;
        }
        let exe_dir = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        // An installed copy may keep the `weights/` folder next to the binary.
        let nested = exe_dir.join("weights").join(DEFAULT_FILE_NAME);
        if nested.is_file() {
            return nested;
        }
        exe_dir.join(DEFAULT_FILE_NAME)
    }

    pub fn layer(&self, name: &str) -> Option<&ConvWeights> {
        self.layers.iter().find(|l| l.name == name)
    }
}

/// Reads one tensor of our file, checking shape, dtype and that every value is finite.
fn read_tensor(st: &safetensors::SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
    let view = st.tensor(name).map_err(|_| WeightsError::foreign(format!("tensor '{name}' is missing")))?;
    if view.shape() != shape {
        return Err(WeightsError::foreign(format!(
            "tensor '{name}' has shape {:?}, expected {:?}",
            view.shape(),
            shape
        )));
    }
    let values = format::decode_st_values(view.dtype(), view.data(), name)?;
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(WeightsError::corrupt(format!("tensor '{name}' holds a non-finite value at index {i}")));
    }
    Ok(values)
}
