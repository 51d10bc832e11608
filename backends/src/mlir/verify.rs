//! In-process verification through melior (feature `mlir`): parse the emitted text with the
//! dialects it uses registered, and run the MLIR verifier. spa-opt refuses to write a module
//! that fails here.

use super::MlirError;
use melior::dialect::DialectRegistry;
use melior::ir::operation::OperationLike;
use melior::ir::Module;
use melior::utility::register_all_dialects;
use melior::Context;

/// Parse and verify a module; the error carries MLIR's diagnostics.
pub fn verify_module(text: &str) -> Result<(), MlirError> {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new();
    context.append_dialect_registry(&registry);
    context.load_all_available_dialects();
    let diagnostics = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = diagnostics.clone();
    let id = context.attach_diagnostic_handler(move |d| {
        if let Ok(mut v) = sink.lock() {
            v.push(d.to_string());
        }
        true
    });
    let module = Module::parse(&context, text);
    let ok = module.as_ref().is_some_and(|m| m.as_operation().verify());
    context.detach_diagnostic_handler(id);
    if ok {
        return Ok(());
    }
    let msgs = diagnostics.lock().map(|v| v.join("; ")).unwrap_or_default();
    Err(MlirError::Invalid(if msgs.is_empty() {
        "the module does not parse".to_string()
    } else {
        msgs
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"module {
  func.func @main(%arg0: tensor<1x4xf32>) -> tensor<1x4xf32> {
    %0 = "tosa.clamp"(%arg0) <{max_val = 6.0 : f32, min_val = 0.0 : f32}> : (tensor<1x4xf32>) -> tensor<1x4xf32>
    return %0 : tensor<1x4xf32>
  }
}
"#;

    #[test]
    fn accepts_a_valid_module() {
        verify_module(GOOD).unwrap();
    }

    #[test]
    fn rejects_a_type_error_with_the_diagnostic() {
        let bad = GOOD.replace(
            "-> tensor<1x4xf32>\n    return",
            "-> tensor<1x5xf32>\n    return",
        );
        assert_ne!(bad, GOOD);
        let err = verify_module(&bad).unwrap_err().to_string();
        assert!(err.contains("does not verify"), "{err}");
    }

    #[test]
    fn rejects_text_that_does_not_parse() {
        assert!(verify_module("module { func.func @main( }").is_err());
    }
}
