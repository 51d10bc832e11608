//! Shape inference of normalizations, control-free misc ops (Einsum, detection, quantization).

mod infer_common;
use infer_common::{infer, infer1};

#[test]
fn batch_and_instance_norm() {
    let y = infer1(
        15,
        "%x: f32[N,16,8,8], %s: f32[16], %b: f32[16], %m: f32[16], %v: f32[16]",
        "%y = onnx.BatchNormalization(%x, %s, %b, %m, %v)",
    );
    assert_eq!(y.unwrap(), "f32[N,16,8,8]");
    let r = infer(
        15,
        "%x: f32[N,16,8,8], %s: f32[16], %b: f32[16], %m: f32[16], %v: f32[16]",
        "%y, %rm, %rv = onnx.BatchNormalization(%x, %s, %b, %m, %v) {training_mode = 1}",
        &["y", "rm", "rv"],
    );
    assert_eq!(r.unwrap(), vec!["f32[N,16,8,8]", "f32[16]", "f32[16]"]);
    let y = infer1(
        15,
        "%x: f32[1,16,8,8], %s: f32[16], %b: f32[8], %m: f32[16], %v: f32[16]",
        "%y = onnx.BatchNormalization(%x, %s, %b, %m, %v) loc(\"bn\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'bn' (BatchNormalization): BatchNormalization bias f32[8] does not match the input's 16 channels"
    );
    let y = infer1(
        17,
        "%x: f32[1,4,10], %s: f32[5], %b: f32[4]",
        "%y = onnx.InstanceNormalization(%x, %s, %b) loc(\"in\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'in' (InstanceNormalization): InstanceNormalization scale f32[5] does not match the input's 4 channels"
    );
}

#[test]
fn layer_and_group_norm() {
    let r = infer(
        17,
        "%x: f32[B,S,768], %s: f32[768], %b: f32[768]",
        "%y, %mean, %inv = onnx.LayerNormalization(%x, %s, %b) {axis = -1}",
        &["y", "mean", "inv"],
    );
    assert_eq!(r.unwrap(), vec!["f32[B,S,768]", "f32[B,S,1]", "f32[B,S,1]"]);
    let r = infer(
        17,
        "%x: f16[2,3,4], %s: f16[3,4]",
        "%y, %mean = onnx.LayerNormalization(%x, %s) {axis = 1}",
        &["y", "mean"],
    );
    assert_eq!(r.unwrap(), vec!["f16[2,3,4]", "f32[2,1,1]"]);
    let y = infer1(
        17,
        "%x: f32[2,3,4], %s: f32[5]",
        "%y = onnx.LayerNormalization(%x, %s) loc(\"ln\")",
    );
    assert_eq!(
        y.unwrap_err(),
        "node 'ln' (LayerNormalization): LayerNormalization scale f32[5] does not match the normalized shape f32[4]"
    );
    let y = infer1(
        18,
        "%x: f32[N,32,8,8], %s: f32[4], %b: f32[4]",
        "%y = onnx.GroupNormalization(%x, %s, %b) {num_groups = 4}",
    );
    assert_eq!(y.unwrap(), "f32[N,32,8,8]");
}

#[test]
fn einsum() {
    let e = |eq: &str, sig: &str, args: &str| {
        infer1(
            17,
            sig,
            &format!("%y = onnx.Einsum({args}) {{equation = \"{eq}\"}} loc(\"e\")"),
        )
    };
    assert_eq!(
        e("bij,bjk->bik", "%a: f32[B,2,3], %b: f32[B,3,4]", "%a, %b").unwrap(),
        "f32[B,2,4]"
    );
    assert_eq!(
        e("ij,jk", "%a: f32[2,3], %b: f32[3,4]", "%a, %b").unwrap(),
        "f32[2,4]"
    );
    assert_eq!(e("ii->i", "%a: f32[5,5]", "%a").unwrap(), "f32[5]");
    assert_eq!(
        e("...ij->...ji", "%a: f32[7,8,2,3]", "%a").unwrap(),
        "f32[7,8,3,2]"
    );
    assert_eq!(
        e(
            "bhqd,bhkd->bhqk",
            "%a: f32[1,12,S,64], %b: f32[1,12,T,64]",
            "%a, %b"
        )
        .unwrap(),
        "f32[1,12,S,T]"
    );
    assert_eq!(
        e("ij,jk->ik", "%a: f32[2,3], %b: f32[4,5]", "%a, %b").unwrap_err(),
        "node 'e' (Einsum): Einsum label 'j' has sizes 3 and 4"
    );
    assert_eq!(
        e("ij->k", "%a: f32[2,3]", "%a").unwrap_err(),
        "node 'e' (Einsum): invalid Einsum equation 'ij->k'"
    );
}

#[test]
fn detection_and_quantization() {
    let y = infer1(
        17,
        "%b: f32[1,N,4], %s: f32[1,1,N]",
        "%y = onnx.NonMaxSuppression(%b, %s)",
    );
    assert_eq!(y.unwrap(), "i64[?,3]");
    let y = infer1(
        17,
        "%x: f32[1,256,50,50], %r: f32[R,4], %i: i64[R]",
        "%y = onnx.RoiAlign(%x, %r, %i) {output_height = 7, output_width = 7}",
    );
    assert_eq!(y.unwrap(), "f32[R,256,7,7]");
    let y = infer1(
        17,
        "%x: f32[2,3], %s: f32[], %z: i8[]",
        "%y = onnx.QuantizeLinear(%x, %s, %z)",
    );
    assert_eq!(y.unwrap(), "i8[2,3]");
    let y = infer1(
        17,
        "%x: f32[2,3], %s: f32[]",
        "%y = onnx.QuantizeLinear(%x, %s)",
    );
    assert_eq!(y.unwrap(), "u8[2,3]");
    let y = infer1(
        19,
        "%x: i8[2,3], %s: f16[]",
        "%y = onnx.DequantizeLinear(%x, %s)",
    );
    assert_eq!(y.unwrap(), "f16[2,3]");
    let y = infer1(
        17,
        "%x: f32[N,C,H,W], %g: f32[N,7,9,2]",
        "%y = onnx.GridSample(%x, %g)",
    );
    assert_eq!(y.unwrap(), "f32[N,C,7,9]");
}
