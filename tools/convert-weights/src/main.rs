//! `convert-weights INPUT OUTPUT`: turns a public VGG16 file (ONNX, NumPy .npz, PyTorch .pth,
//! safetensors; recognised by content) into the engine's safetensors weights file.
//! All the work is in the library of this crate; this only parses arguments and reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use neural_style_convert::{self as convert, ConvertOptions};
use neural_style_weights::{InputConvention, OutDtype};

#[derive(Parser)]
#[command(
    name = "convert-weights",
    about = "Convert VGG16 weights (ONNX, .npz, .pth, safetensors) to neural-style's safetensors format"
)]
struct Args {
    /// Source file; its format is recognised by content, not by extension.
    input: PathBuf,
    /// Output safetensors file (written atomically).
    output: PathBuf,
    /// Precision of the stored tensors.
    #[arg(long, value_enum, default_value = "f16")]
    dtype: Dtype,
    /// Input convention the source weights expect (default: detected from the file).
    #[arg(long, value_enum)]
    convention: Option<Convention>,
    /// Channel order of the source's first layer (default: detected from the file).
    #[arg(long, value_enum)]
    channel_order: Option<ChannelOrder>,
    /// Name recorded as `source_file` (default: the input's file name).
    #[arg(long)]
    source_name: Option<String>,
    /// Licence text recorded in the metadata (default: CC BY 4.0, Simonyan & Zisserman).
    #[arg(long)]
    licence: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Dtype {
    F16,
    F32,
}

#[derive(Clone, Copy, ValueEnum)]
enum Convention {
    Caffe,
    Torchvision,
}

#[derive(Clone, Copy, ValueEnum)]
enum ChannelOrder {
    Rgb,
    Bgr,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = ConvertOptions {
        dtype: match args.dtype {
            Dtype::F16 => OutDtype::F16,
            Dtype::F32 => OutDtype::F32,
        },
        convention: args.convention.map(|c| match c {
            Convention::Caffe => InputConvention::Caffe,
            Convention::Torchvision => InputConvention::Torchvision,
        }),
        source_bgr: args.channel_order.map(|c| matches!(c, ChannelOrder::Bgr)),
        source_name: args.source_name,
        ..ConvertOptions::default()
    };
    if let Some(l) = args.licence {
        opts.licence = l;
    }
    match convert::convert_file(&args.input, &args.output, &opts) {
        Ok(r) => {
            println!(
                "wrote {} ({} bytes, sha256 {}) from {}; source channels {}, input convention {}",
                args.output.display(),
                r.output_bytes,
                r.output_sha256,
                r.source_format,
                if r.source_bgr { "BGR (reordered to RGB)" } else { "RGB" },
                r.convention.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("convert-weights: {e}");
            ExitCode::FAILURE
        }
    }
}
