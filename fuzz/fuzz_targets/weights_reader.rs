//! `Vgg16Weights::from_bytes` must return Ok or Err on any input, never panic or abort.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = neural_style_weights::Vgg16Weights::from_bytes(data);
});
