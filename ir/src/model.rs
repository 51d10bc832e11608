//! A model: the main graph, its metadata, model-local functions, and the channel-space table.

use crate::attr::Attribute;
use crate::graph::Graph;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsetImport {
    /// `""` is the default ONNX domain.
    pub domain: String,
    pub version: i64,
}

/// A model-local function (`FunctionProto`). Its body is a graph whose inputs and outputs are the
/// function's formal parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    pub name: String,
    pub domain: String,
    pub overload: String,
    /// Attribute parameters without defaults (`FunctionProto.attribute`).
    pub attributes: Vec<String>,
    /// Attribute parameters with defaults (`FunctionProto.attribute_proto`).
    pub attribute_defaults: Vec<Attribute>,
    pub opset_imports: Vec<OpsetImport>,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
    pub body: Graph,
}

/// One channel space (a group atom): its size, and whether it may be pruned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpace {
    pub size: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub ir_version: i64,
    pub opset_imports: Vec<OpsetImport>,
    pub producer_name: String,
    pub producer_version: String,
    pub domain: String,
    pub model_version: i64,
    pub doc_string: String,
    pub metadata_props: Vec<(String, String)>,
    pub graph: Graph,
    pub functions: Vec<Function>,
    /// Channel spaces referenced by `@` expressions in value types (`g<N>` is `spaces[N]`).
    pub spaces: Vec<ChannelSpace>,
}

impl Model {
    pub fn new(graph: Graph) -> Model {
        Model {
            ir_version: 8,
            opset_imports: vec![OpsetImport {
                domain: String::new(),
                version: 17,
            }],
            producer_name: String::new(),
            producer_version: String::new(),
            domain: String::new(),
            model_version: 0,
            doc_string: String::new(),
            metadata_props: Vec::new(),
            graph,
            functions: Vec::new(),
            spaces: Vec::new(),
        }
    }

    /// The opset version imported for a domain (`""` and `ai.onnx` are the same domain).
    pub fn opset(&self, domain: &str) -> Option<i64> {
        let canon = |d: &str| if d == "ai.onnx" { "" } else { d }.to_string();
        let want = canon(domain);
        self.opset_imports
            .iter()
            .find(|o| canon(&o.domain) == want)
            .map(|o| o.version)
    }

    pub fn find_function(&self, domain: &str, name: &str, overload: &str) -> Option<&Function> {
        self.functions
            .iter()
            .find(|f| f.domain == domain && f.name == name && f.overload == overload)
    }
}
