"""Shared helpers for the zoo scripts (run with the zoo venv: /opt/zoo-venv/bin/python).

Models come from ../shared/zoo/export_zoo.py in $ZOO_DIR (default /tmp/zoo):
$ZOO_DIR/models/<name>.onnx (classic), $ZOO_DIR/models_dynamo/<name>.onnx (dynamo), >2 GB models in
<dir>/<name>/<name>.onnx with external data, inputs in <name>.io.npz beside them.
"""
import glob, os, signal, subprocess, tempfile, time
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


TIME = "/usr/bin/time"


def _rss_wrapped(args, rss_file):
    """spa-opt's argv under GNU time, which writes the child's peak RSS (KiB) to `rss_file`.

    The RSS that os.wait4 reports for a child of this process is no good: exec keeps the
    high-water mark of the memory it replaces, which is this Python process's when it forked (a
    few hundred MB with numpy and onnxruntime loaded). GNU time forks from a small process."""
    if os.path.exists(TIME):
        return [TIME, "-f", "%M", "-o", rss_file, SPA] + args
    return [SPA] + args


def _read_time(rss_file, rc):
    """(return code, peak RSS bytes) from GNU time's file: its last line is the RSS in KiB, and a
    first line "Command terminated by signal N" means the child died of signal N (time exits
    128 + N), which is returned as -N as subprocess would."""
    try:
        with open(rss_file) as f:
            lines = f.read().split("\n")
    except OSError:
        return rc, 0
    lines = [l for l in lines if l.strip()]
    try:
        rss = int(lines[-1]) * 1024
    except (ValueError, IndexError):
        rss = 0
    if lines and lines[0].startswith("Command terminated by signal"):
        try:
            rc = -int(lines[0].split()[-1])
        except ValueError:
            pass
    return rc, rss


def spa(args, timeout=1800):
    """Run spa-opt; returns (returncode, stderr, wall seconds, peak RSS bytes; 0 without GNU time)."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = os.path.join(tmp, "rss")
        t0 = time.perf_counter()
        p = subprocess.Popen(_rss_wrapped(args, rss_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)
        try:
            _, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
            return -9, "timeout", time.perf_counter() - t0, 0
        wall = time.perf_counter() - t0
        rc, rss = _read_time(rss_file, p.returncode)
    return rc, err, wall, rss


def spa_rss(args, timeout=1800):
    """Run spa-opt with its output discarded; returns (returncode, wall seconds, peak RSS bytes)."""
    rc, _, wall, rss = spa(args, timeout)
    return rc, wall, rss


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
