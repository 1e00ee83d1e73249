//! The converter's format detection and readers (ONNX, npz, .pth pickle, safetensors) must
//! return Ok or Err on any input, never panic or abort.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = neural_style_convert::convert_bytes(data, "fuzz", &Default::default());
});
