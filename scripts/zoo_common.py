"""Shared helpers for the zoo scripts (run with the zoo venv: /opt/zoo-venv/bin/python).

Models come from ../shared/zoo/export_zoo.py in $ZOO_DIR (default /tmp/zoo):
$ZOO_DIR/models/<name>.onnx (classic), $ZOO_DIR/models_dynamo/<name>.onnx (dynamo), >2 GB models in
<dir>/<name>/<name>.onnx with external data, inputs in <name>.io.npz beside them.
"""
import glob, os, subprocess, threading, time
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.environ.get("ZOO_DIR", "/tmp/zoo")
SPA = os.environ.get("SPA_OPT", os.path.join(ROOT, "target", "release", "spa-opt"))


def models(kind="classic", only=None):
    d = os.path.join(ZOO, "models" if kind == "classic" else "models_dynamo")
    paths = sorted(glob.glob(os.path.join(d, "*.onnx")) + glob.glob(os.path.join(d, "*", "*.onnx")))
    out = []
    for p in paths:
        name = os.path.basename(p)[:-5]
        if only and name not in only:
            continue
        out.append((name, p))
    return out


def family(name):
    return name.split("_", 1)[0]


def inputs_for(name, path):
    for d in (os.path.dirname(path), os.path.dirname(os.path.dirname(path))):
        io = os.path.join(d, name + ".io.npz")
        if os.path.exists(io):
            z = np.load(io)
            return {k[3:]: z[k] for k in z.files if k.startswith("in_")}
    return None


def run_ort(path, feeds=None, threads=1):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    if feeds is None:
        rng = np.random.default_rng(0)
        feeds = {}
        for i in sess.get_inputs():
            shape = [d if isinstance(d, int) and d > 0 else 1 for d in i.shape]
            if "int" in i.type:
                feeds[i.name] = rng.integers(0, 100, size=shape).astype(np.int64)
            else:
                feeds[i.name] = rng.standard_normal(shape).astype(np.float32)
    names = [o.name for o in sess.get_outputs()]
    return feeds, dict(zip(names, sess.run(names, feeds)))


def rel_diff(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    if a.size == 0:
        return 0.0
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(b))), 1e-30)
    return float(np.max(np.abs(a - b))) / scale


def spa(args, timeout=1800):
    """Run spa-opt; returns (returncode, stderr, wall seconds, peak RSS bytes of the child).

    The child is reaped with os.wait4, which gives its own peak RSS (ru_maxrss of the children
    would be the largest over every child so far); its output is read by two threads meanwhile."""
    t0 = time.perf_counter()
    p = subprocess.Popen([SPA] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    chunks = {"out": [], "err": []}
    readers = [threading.Thread(target=lambda f=f, k=k: chunks[k].append(f.read()), daemon=True)
               for f, k in ((p.stdout, "out"), (p.stderr, "err"))]
    for r in readers:
        r.start()
    killer = threading.Timer(timeout, p.kill)
    killer.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        killer.cancel()
    p.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    wall = time.perf_counter() - t0
    if wall >= timeout and p.returncode < 0:
        return -9, "timeout", wall, ru.ru_maxrss * 1024
    return p.returncode, "".join(chunks["err"]), wall, ru.ru_maxrss * 1024


def spa_rss(args, timeout=1800):
    """Run spa-opt under os.wait4 to get its own peak RSS."""
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        os.execv(SPA, [SPA] + args)
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return os.waitstatus_to_exitcode(status), wall, ru.ru_maxrss * 1024


def file_bytes(path):
    n = os.path.getsize(path)
    d = os.path.dirname(path)
    try:
        import onnx
        m = onnx.load(path, load_external_data=False)
        locs = {e.value for t in m.graph.initializer for e in t.external_data if e.key == "location"}
        n += sum(os.path.getsize(os.path.join(d, l)) for l in locs if os.path.exists(os.path.join(d, l)))
    except Exception:
        pass
    return n


def check(path):
    import onnx
    onnx.checker.check_model(path)
