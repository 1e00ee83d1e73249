//! `Vgg16Weights::from_bytes` must return Ok or Err on any input, never panic or abort.
#![no_main]

#[allow(dead_code)]
#[path = "../../src/weights/mod.rs"]
mod weights;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = weights::Vgg16Weights::from_bytes(data);
});
