//! Helpers for the inference and verifier tests: tiny graphs written in the `.spa` text format.
#![allow(dead_code)]

use spa_ir::infer::{infer_model, infer_types, InferOptions};
use spa_ir::text::parse_model;
use spa_ir::Model;

/// Parse a model; a syntax error fails the test with the source in the message.
pub fn parse(src: &str) -> Model {
    match parse_model(src) {
        Ok(m) => m,
        Err(e) => panic!("bad test source: {e}\n{src}"),
    }
}

/// A model with opset `opset`, graph inputs `sig`, statements `body`, returning `outs`.
pub fn model(opset: i64, sig: &str, body: &str, outs: &[&str]) -> Model {
    let results: Vec<String> = outs.iter().map(|o| format!("%{o}")).collect();
    let src = format!(
        "model {{opset = [\"\" : {opset}]}}\ngraph @main({sig}) -> ({}) {{\n{body}\n}}\n",
        results.join(", ")
    );
    parse(&src)
}

/// The type of the value named `name` in the main graph, printed.
pub fn type_of(m: &Model, name: &str) -> String {
    let names = m.graph.names();
    match names.get(name) {
        Some(&v) => m.graph.value(v).ty.to_string(),
        None => panic!("no value named {name}"),
    }
}

/// Strict inference of a small graph: the printed types of `outs`, or the error text.
pub fn infer(opset: i64, sig: &str, body: &str, outs: &[&str]) -> Result<Vec<String>, String> {
    let mut m = model(opset, sig, body, outs);
    infer_model(&mut m, &InferOptions { strict: true }).map_err(|e| e.to_string())?;
    Ok(outs.iter().map(|o| type_of(&m, o)).collect())
}

/// Like [`infer`] for a single output `y`.
pub fn infer1(opset: i64, sig: &str, body: &str) -> Result<String, String> {
    infer(opset, sig, body, &["y"]).map(|mut v| v.remove(0))
}

/// The contents inference knows for value `name`, as i64s.
pub fn known_ints(m: &Model, name: &str) -> Option<Vec<i64>> {
    let r = infer_types(m).ok()?;
    let v = *m.graph.names().get(name)?;
    r.known_value(v)?.to_i64().ok()
}
