//! Converter tests on synthetic VGG16 files written here at run time (ONNX, both npz layouts,
//! safetensors, PyTorch zip). Every value encodes its (layer, o, i, h, w) position, so a wrong
//! transposition or channel order changes values and fails the comparison.

use std::path::{Path, PathBuf};
use std::process::Command;

use neural_style_convert::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use neural_style_convert::{self as convert, ConvertOptions};
use neural_style_weights::{InputConvention, OutDtype, Vgg16Weights, VGG16_CONV_LAYERS};
use prost::Message;

const TORCH_INDEX: [usize; 11] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24];

/// A distinct value for each position; coefficients differ per axis so swapped axes show.
fn val(layer: usize, o: usize, i: usize, h: usize, w: usize) -> f32 {
    ((o * 131 + i * 31 + h * 7 + w * 3 + layer * 17) % 1009) as f32 / 1009.0 - 0.5
}
fn bias_val(layer: usize, o: usize) -> f32 {
    (o as f32 + 1.0) * 0.001 + layer as f32
}

/// OIHW weights of layer `l` as the source stores them (source channel order).
fn oihw(l: usize) -> Vec<f32> {
    let (_, cin, cout) = VGG16_CONV_LAYERS[l];
    let mut v = Vec::with_capacity(cout * cin * 9);
    for o in 0..cout {
        for i in 0..cin {
            for h in 0..3 {
                for w in 0..3 {
                    v.push(val(l, o, i, h, w));
                }
            }
        }
    }
    v
}
fn hwio(l: usize) -> Vec<f32> {
    let (_, cin, cout) = VGG16_CONV_LAYERS[l];
    let mut v = Vec::with_capacity(cout * cin * 9);
    for h in 0..3 {
        for w in 0..3 {
            for i in 0..cin {
                for o in 0..cout {
                    v.push(val(l, o, i, h, w));
                }
            }
        }
    }
    v
}
fn bias(l: usize) -> Vec<f32> {
    (0..VGG16_CONV_LAYERS[l].2).map(|o| bias_val(l, o)).collect()
}

/// Checks every value of every layer; `bgr` says whether conv1_1's channels were reversed.
fn check(w: &Vgg16Weights, bgr: bool, f16: bool) {
    let round = |v: f32| {
        if f16 {
            half::f16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    assert_eq!(w.layers.len(), 11);
    for (l, layer) in w.layers.iter().enumerate() {
        let (name, cin, cout) = VGG16_CONV_LAYERS[l];
        assert_eq!(layer.name, name);
        assert_eq!((layer.cin, layer.cout), (cin, cout));
        let mut k = 0;
        for o in 0..cout {
            for i in 0..cin {
                let si = if bgr && l == 0 { 2 - i } else { i };
                for h in 0..3 {
                    for x in 0..3 {
                        assert_eq!(layer.weight[k], round(val(l, o, si, h, x)), "{name} [{o},{i},{h},{x}]");
                        k += 1;
                    }
                }
            }
            assert_eq!(layer.bias[o], round(bias_val(l, o)), "{name} bias {o}");
        }
    }
}

fn tmp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ns-weights-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn f32_tensor(name: &str, dims: &[usize], data: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: 1,
        name: name.into(),
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// A Keras-like (tf2onnx) or PyTorch-like ONNX graph with `n` convs. conv1_2's kernel is
/// stored HWIO behind a Transpose node, as some Keras exports do.
fn onnx_model(producer: &str, keras_names: bool, n: usize) -> Vec<u8> {
    let mut g = GraphProto { name: "g".into(), ..Default::default() };
    let mut prev = "input".to_string();
    for (l, &(name, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate().take(n) {
        let (b, c) = (name.as_bytes()[4] - b'0', name.as_bytes()[6] - b'0');
        let wname = if keras_names {
            format!("functional_1/block{b}_conv{c}_1/convolution/ReadVariableOp:0")
        } else {
            format!("onnx::Conv_{}", 100 + l)
        };
        let bname = format!("{wname}_bias");
        let w_input = if l == 1 {
            g.initializer.push(f32_tensor(&format!("{wname}_hwio"), &[3, 3, cin, cout], &hwio(l)));
            g.node.push(NodeProto {
                input: vec![format!("{wname}_hwio")],
                output: vec![wname.clone()],
                name: format!("transpose_{l}"),
                op_type: "Transpose".into(),
                attribute: vec![AttributeProto {
                    name: "perm".into(),
                    ints: vec![3, 2, 0, 1],
                    r#type: 7,
                    ..Default::default()
                }],
            });
            wname.clone()
        } else {
            g.initializer.push(f32_tensor(&wname, &[cout, cin, 3, 3], &oihw(l)));
            wname.clone()
        };
        g.initializer.push(f32_tensor(&bname, &[cout], &bias(l)));
        let out = format!("conv_out_{l}");
        g.node.push(NodeProto {
            input: vec![prev.clone(), w_input, bname],
            output: vec![out.clone()],
            name: format!("/features/Conv_{l}"),
            op_type: "Conv".into(),
            attribute: vec![],
        });
        g.node.push(NodeProto {
            input: vec![out],
            output: vec![format!("relu_{l}")],
            name: format!("relu_{l}"),
            op_type: "Relu".into(),
            attribute: vec![],
        });
        prev = format!("relu_{l}");
    }
    ModelProto {
        ir_version: 7,
        producer_name: producer.into(),
        producer_version: "1.0".into(),
        graph: Some(g),
        opset_import: vec![],
    }
    .encode_to_vec()
}

fn write_npz(path: &Path, arrays: &[(String, Vec<u64>, Vec<f32>)]) {
    use npyz::WriterBuilder;
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    for (name, shape, data) in arrays {
        let mut w =
            npz.array::<f32>(name, Default::default()).unwrap().default_dtype().shape(shape).begin_nd().unwrap();
        w.extend(data.iter().copied()).unwrap();
        w.finish().unwrap();
    }
}

fn classic_npz_arrays() -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let mut a = Vec::new();
    for (l, &(name, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate() {
        a.push((format!("{name}_W"), vec![3, 3, cin as u64, cout as u64], hwio(l)));
        a.push((format!("{name}_b"), vec![cout as u64], bias(l)));
    }
    // Classifier tensors are present in the public file and must be ignored.
    a.push(("fc8_W".into(), vec![4, 2], vec![0.5; 8]));
    a
}

fn torch_npz_arrays() -> Vec<(String, Vec<u64>, Vec<f32>)> {
    let mut a = Vec::new();
    for (l, &(_, cin, cout)) in VGG16_CONV_LAYERS.iter().enumerate() {
        a.push((format!("features.{}.weight", TORCH_INDEX[l]), vec![cout as u64, cin as u64, 3, 3], oihw(l)));
        a.push((format!("features.{}.bias", TORCH_INDEX[l]), vec![cout as u64], bias(l)));
    }
    a
}

fn convert(input: &Path, out: &Path, dtype: OutDtype) -> Vgg16Weights {
    let opts = ConvertOptions { dtype, ..Default::default() };
    convert::convert_file(input, out, &opts).unwrap();
    Vgg16Weights::load(out).unwrap()
}

#[test]
fn onnx_keras_is_bgr_caffe_and_reordered() {
    let d = tmp_dir("onnx-keras");
    let src = d.join("model.onnx");
    std::fs::write(&src, onnx_model("tf2onnx", true, 11)).unwrap();
    let w = convert(&src, &d.join("out.safetensors"), OutDtype::F32);
    assert_eq!(w.convention, InputConvention::Caffe);
    assert_eq!(w.metadata["source_channel_order"], "BGR");
    check(&w, true, false);
    let w16 = convert(&src, &d.join("out16.safetensors"), OutDtype::F16);
    check(&w16, true, true);
    assert_eq!(w16.metadata["dtype"], "F16");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn onnx_pytorch_maps_by_position_and_is_torchvision() {
    let d = tmp_dir("onnx-torch");
    let src = d.join("m.bin");
    std::fs::write(&src, onnx_model("pytorch", false, 11)).unwrap();
    let w = convert(&src, &d.join("o.safetensors"), OutDtype::F32);
    assert_eq!(w.convention, InputConvention::Torchvision);
    assert_eq!(w.metadata["source_channel_order"], "RGB");
    check(&w, false, false);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn npz_classic_hwio_is_transposed() {
    let d = tmp_dir("npz-classic");
    let src = d.join("vgg16_weights.npz");
    write_npz(&src, &classic_npz_arrays());
    let w = convert(&src, &d.join("o.safetensors"), OutDtype::F32);
    assert_eq!(w.convention, InputConvention::Caffe);
    assert_eq!(w.metadata["source_channel_order"], "RGB");
    check(&w, false, false);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn npz_torchvision_keys() {
    let d = tmp_dir("npz-torch");
    let src = d.join("state.data");
    write_npz(&src, &torch_npz_arrays());
    let w = convert(&src, &d.join("o.safetensors"), OutDtype::F32);
    assert_eq!(w.convention, InputConvention::Torchvision);
    check(&w, false, false);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn safetensors_torchvision_f16_input_and_overrides() {
    let d = tmp_dir("st");
    let src = d.join("vgg16.safetensors");
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = torch_npz_arrays()
        .into_iter()
        .map(|(n, s, v)| {
            (
                n,
                s.iter().map(|&x| x as usize).collect(),
                v.iter().flat_map(|x| half::f16::from_f32(*x).to_le_bytes()).collect(),
            )
        })
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> = bufs
        .iter()
        .map(|(n, s, b)| {
            (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F16, s.clone(), b).unwrap())
        })
        .collect();
    std::fs::write(&src, safetensors::serialize(views, None).unwrap()).unwrap();
    let w = convert(&src, &d.join("o.safetensors"), OutDtype::F16);
    assert_eq!(w.convention, InputConvention::Torchvision);
    check(&w, false, true);
    // Command-line overrides win over detection.
    let opts =
        ConvertOptions { convention: Some(InputConvention::Caffe), source_bgr: Some(true), ..Default::default() };
    convert::convert_file(&src, &d.join("o2.safetensors"), &opts).unwrap();
    let w2 = Vgg16Weights::load(&d.join("o2.safetensors")).unwrap();
    assert_eq!(w2.convention, InputConvention::Caffe);
    check(&w2, true, true);
    // Re-converting our own file to F32 keeps its provenance.
    let opts = ConvertOptions { dtype: OutDtype::F32, ..Default::default() };
    convert::convert_file(&d.join("o.safetensors"), &d.join("o32.safetensors"), &opts).unwrap();
    let w3 = Vgg16Weights::load(&d.join("o32.safetensors")).unwrap();
    assert_eq!(w3.metadata["source_file"], "vgg16.safetensors");
    assert_eq!(w3.metadata["dtype"], "F32");
    check(&w3, false, true);
    let _ = std::fs::remove_dir_all(d);
}

/// A minimal `torch.save(state_dict)` zip: protocol-2 pickle of an OrderedDict of
/// `_rebuild_tensor_v2(persistent storage, offset, size, stride, False, OrderedDict())`.
fn torch_zip(path: &Path) {
    let arrays = torch_npz_arrays();
    let mut p: Vec<u8> = vec![0x80, 2];
    let s = |p: &mut Vec<u8>, t: &str| {
        p.push(b'X');
        p.extend((t.len() as u32).to_le_bytes());
        p.extend(t.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: usize| {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    };
    p.extend(b"ccollections\nOrderedDict\n)R(");
    for (k, (name, shape, _)) in arrays.iter().enumerate() {
        s(&mut p, name);
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.push(b'(');
        s(&mut p, "storage");
        p.extend(b"ctorch\nFloatStorage\n");
        s(&mut p, &k.to_string());
        s(&mut p, "cpu");
        int(&mut p, shape.iter().product::<u64>() as usize);
        p.extend(b"tQ");
        int(&mut p, 0);
        p.push(b'(');
        for &d in shape {
            int(&mut p, d as usize);
        }
        p.extend(b"t(");
        let mut stride = vec![1usize; shape.len()];
        for i in (0..shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * shape[i + 1] as usize;
        }
        for st in stride {
            int(&mut p, st);
        }
        p.extend(b"t\x89ccollections\nOrderedDict\n)RtR");
    }
    p.extend(b"u.");
    let f = std::fs::File::create(path).unwrap();
    let mut z = npyz::npz::NpzWriter::new(f);
    let zw = z.zip_writer();
    use std::io::Write;
    zw.start_file("archive/data.pkl", Default::default()).unwrap();
    zw.write_all(&p).unwrap();
    for (k, (_, _, data)) in arrays.iter().enumerate() {
        zw.start_file(format!("archive/data/{k}"), Default::default()).unwrap();
        for v in data {
            zw.write_all(&v.to_le_bytes()).unwrap();
        }
    }
    zw.finish().unwrap();
}

#[test]
fn pth_zip_state_dict() {
    let d = tmp_dir("pth");
    let src = d.join("vgg16.pth");
    torch_zip(&src);
    let w = convert(&src, &d.join("o.safetensors"), OutDtype::F32);
    assert_eq!(w.convention, InputConvention::Torchvision);
    check(&w, false, false);
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn output_is_deterministic_and_independent_of_input_dir() {
    let d = tmp_dir("determinism");
    std::fs::create_dir_all(d.join("a")).unwrap();
    std::fs::create_dir_all(d.join("b")).unwrap();
    let bytes = onnx_model("tf2onnx", true, 11);
    std::fs::write(d.join("a/m.onnx"), &bytes).unwrap();
    std::fs::write(d.join("b/m.onnx"), &bytes).unwrap();
    let opts = ConvertOptions::default();
    convert::convert_file(&d.join("a/m.onnx"), &d.join("1.st"), &opts).unwrap();
    convert::convert_file(&d.join("b/m.onnx"), &d.join("2.st"), &opts).unwrap();
    convert::convert_file(&d.join("a/m.onnx"), &d.join("3.st"), &opts).unwrap();
    let one = std::fs::read(d.join("1.st")).unwrap();
    assert_eq!(one, std::fs::read(d.join("2.st")).unwrap());
    assert_eq!(one, std::fs::read(d.join("3.st")).unwrap());
    // Header is sorted metadata; the safetensors crate parses what we wrote.
    let st = safetensors::SafeTensors::deserialize(&one).unwrap();
    assert_eq!(st.names().len(), 22);
    let _ = std::fs::remove_dir_all(d);
}

/// Runs the binary; returns (success, stderr).
fn run_tool(input: &Path, output: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_convert-weights")).arg(input).arg(output).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn expect_failure(d: &Path, name: &str, bytes: &[u8], needle: &str) {
    let src = d.join(name);
    std::fs::write(&src, bytes).unwrap();
    let out = d.join(format!("{name}.out"));
    let (ok, err) = run_tool(&src, &out);
    assert!(!ok, "{name}: conversion should fail");
    assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line expected, got {err:?}");
    assert!(err.contains(needle), "{name}: {err:?} lacks {needle:?}");
    assert!(err.contains(&src.display().to_string()), "{name}: message names no file: {err}");
    assert!(!out.exists(), "{name}: a failed conversion left an output file");
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left behind");
}

#[test]
fn bad_inputs_fail_with_one_clear_line() {
    let d = tmp_dir("bad");
    expect_failure(&d, "text.onnx", b"hello, this is certainly not a network file\n", "not a weights file");
    expect_failure(&d, "png.npz", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10", "not a weights file");
    expect_failure(&d, "empty.pth", b"", "not a weights file");

    let onnx = onnx_model("tf2onnx", true, 11);
    expect_failure(&d, "trunc.onnx", &onnx[..onnx.len() / 2], "truncated or corrupt");
    let npz_path = d.join("full.npz");
    write_npz(&npz_path, &classic_npz_arrays());
    let npz = std::fs::read(&npz_path).unwrap();
    expect_failure(&d, "trunc.npz", &npz[..npz.len() - 100], "truncated or corrupt");
    let st_path = d.join("full.safetensors");
    convert::convert_file(&npz_path, &st_path, &ConvertOptions::default()).unwrap();
    let st = std::fs::read(&st_path).unwrap();
    expect_failure(&d, "trunc.safetensors", &st[..st.len() - 10], "truncated or corrupt");
    let pth_path = d.join("full.pth");
    torch_zip(&pth_path);
    let pth = std::fs::read(&pth_path).unwrap();
    expect_failure(&d, "trunc.pth", &pth[..pth.len() - 200], "truncated or corrupt");

    // Not VGG16: a missing layer, a mis-shaped layer, VGG19 names.
    expect_failure(&d, "short.onnx", &onnx_model("tf2onnx", true, 9), "layer conv4_3 is missing");
    let mut arrays = classic_npz_arrays();
    arrays[4] = ("conv2_1_W".into(), vec![3, 3, 64, 64], vec![0.0; 3 * 3 * 64 * 64]);
    write_npz(&d.join("shape.npz"), &arrays);
    expect_failure(
        &d,
        "shape2.npz",
        &std::fs::read(d.join("shape.npz")).unwrap(),
        "conv2_1 ('conv2_1_W') weight has shape [3, 3, 64, 64]",
    );
    let mut arrays = classic_npz_arrays();
    arrays.push(("conv3_4_W".into(), vec![3, 3, 256, 256], vec![0.0; 9 * 256 * 256]));
    write_npz(&d.join("vgg19.npz"), &arrays);
    expect_failure(&d, "vgg19b.npz", &std::fs::read(d.join("vgg19.npz")).unwrap(), "VGG19");

    // Unsupported dtype: int32 weights.
    let mut m = ModelProto::decode(onnx.as_slice()).unwrap();
    let g = m.graph.as_mut().unwrap();
    g.initializer[0].data_type = 6;
    expect_failure(&d, "int.onnx", &m.encode_to_vec(), "unsupported data type INT32");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn failed_write_leaves_existing_output_untouched() {
    let d = tmp_dir("atomic");
    let src = d.join("m.onnx");
    std::fs::write(&src, onnx_model("tf2onnx", true, 11)).unwrap();
    let out = d.join("keep.safetensors");
    std::fs::write(&out, b"previous").unwrap();
    std::fs::write(d.join("bad.onnx"), b"garbage garbage garbage garbage").unwrap();
    let (ok, _) = run_tool(&d.join("bad.onnx"), &out);
    assert!(!ok);
    assert_eq!(std::fs::read(&out).unwrap(), b"previous");
    // Unwritable destination: a directory that does not exist.
    let (ok, err) = run_tool(&src, &d.join("no/such/dir/o.safetensors"));
    assert!(!ok);
    assert!(err.contains("cannot write"), "{err}");
    let (ok, err) = run_tool(&src, &out);
    assert!(ok, "{err}");
    Vgg16Weights::load(&out).unwrap();
    let _ = std::fs::remove_dir_all(d);
}
