#!/usr/bin/env python3
"""Calibration data files for the obspa/activation tests, written by NumPy itself (so the Rust
reader is checked against the real format: savez_compressed is deflate with zip64 headers).

Valid files go to tests/fixtures/calib/, bad ones to tests/invalid/calib/. They are for
tests/fixtures/dynamic_batch.onnx (input 'input', f32[batch, 64]).
Run from the repository root: python3 scripts/gen_calib_fixtures.py
"""
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")
GOOD = os.path.join(ROOT, "fixtures", "calib")
BAD = os.path.join(ROOT, "invalid", "calib")
os.makedirs(GOOD, exist_ok=True)
os.makedirs(BAD, exist_ok=True)

rng = np.random.default_rng(42)
x = rng.standard_normal((32, 64)).astype(np.float32)

np.savez_compressed(os.path.join(GOOD, "mlp_input.npz"), input=x)
np.savez(os.path.join(GOOD, "mlp_input_stored.npz"), input=x)
np.save(os.path.join(GOOD, "mlp_input.npy"), x)

np.savez(os.path.join(BAD, "wrong_name.npz"), x=x)
np.savez(os.path.join(BAD, "extra_array.npz"), input=x, mask=np.ones((32, 4), dtype=np.int64))
np.save(os.path.join(BAD, "wrong_shape.npy"), x[:, :63])
np.save(os.path.join(BAD, "wrong_dtype.npy"), (x * 10).astype(np.int64))
nan = x.copy()
nan[3, 5] = np.nan
np.save(os.path.join(BAD, "nan.npy"), nan)
inf = x.copy()
inf[0, 0] = np.inf
np.savez_compressed(os.path.join(BAD, "inf.npz"), input=inf)
np.save(os.path.join(BAD, "complex.npy"), x.astype(np.complex64))
with open(os.path.join(BAD, "truncated.npy"), "wb") as f:
    np.save(f, x)
data = open(os.path.join(BAD, "truncated.npy"), "rb").read()
with open(os.path.join(BAD, "truncated.npy"), "wb") as f:
    f.write(data[: len(data) // 2])
print("calibration fixtures written")
