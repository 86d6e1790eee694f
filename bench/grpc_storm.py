"""10,000 malformed KServe v2 gRPC requests against `mfh serve` (bench/serve_load.sh runs
it): each must be answered with a gRPC error code, and the server must stay up and keep
scoring. Uses Triton's own client (tritonclient.grpc).

    python bench/grpc_storm.py MFH_BIN MODEL_DIR [N]
"""

import collections
import re
import subprocess
import sys
import time

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException


def main():
    mfh, model_dir = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000
    p = subprocess.Popen([mfh, "serve", "--model-dir", model_dir, "--addr", "127.0.0.1:0",
                          "--grpc-addr", "127.0.0.1:0"], stderr=subprocess.PIPE, text=True)
    line = ""
    while "serving" not in line:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            sys.exit(f"mfh serve exited ({p.returncode})")
    addr = re.search(r"grpc://(\S+)", line).group(1)
    c = grpcclient.InferenceServerClient(addr)
    meta = c.get_model_metadata("mfh")
    name = meta.name
    rng = np.random.default_rng(1)

    def tensor(nm, shape, dt, data):
        t = grpcclient.InferInput(nm, shape, dt)
        t.set_data_from_numpy(data)
        return t

    def bad(k):
        kind = k % 8
        if kind == 0:  # random bytes as a BYTES tensor
            t = tensor("user_id", [2], "BYTES", np.array([b"1", b"2"], dtype=object))
            t._raw_content = rng.bytes(int(rng.integers(1, 256)))
            return [t]
        if kind == 1:
            return [tensor(f"nope{k}", [1], "FP32", np.array([1.0], dtype=np.float32))]
        if kind == 2:
            return [tensor("hourmin", [1], "FP64", np.array([np.inf]))]
        if kind == 3:
            return [tensor("user_id", [2], "BYTES", np.array([b"1", b"2"], dtype=object)),
                    tensor("video_id", [1], "BYTES", np.array([b"1"], dtype=object))]
        if kind == 4:
            return [tensor("user_id", [10_001], "BYTES", np.array([b"1"] * 10_001, dtype=object))]
        if kind == 5:
            t = tensor("user_id", [3], "BYTES", np.array([b"1"] * 3, dtype=object))
            t._input.shape[:] = [4]
            return [t]
        if kind == 6:
            t = tensor("tab", [3], "FP32", np.array([1, 2, 3], dtype=np.float32))
            t._raw_content = rng.bytes(7)
            return [t]
        return [tensor("user_id", [1], "BYTES", np.array([b"no-such-user"], dtype=object))]

    codes = collections.Counter()
    t0 = time.time()
    for k in range(n):
        try:
            c.infer(name, bad(k))
            codes["OK"] += 1
        except InferenceServerException as e:
            codes[str(e.status())] += 1
    secs = time.time() - t0
    alive = p.poll() is None and c.is_server_live()
    print(f"gRPC storm: {n} malformed requests in {secs:.1f} s, answered {dict(codes)}; "
          f"server alive and live afterwards: {alive}")
    p.terminate()
    p.wait(timeout=60)
    ok = alive and "OK" not in codes and sum(codes.values()) == n
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
