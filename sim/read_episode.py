#!/usr/bin/python3
"""read_episode.py - read a vlad-sim episode file (safetensors) with numpy + json only.

    from read_episode import read_episode
    tensors, meta = read_episode("data/episode_000000.safetensors")
    tensors["images"]  # uint8 [T, n_cam, H, W, 3]
    meta["labels"]     # list of {"commentary": str, "qa": [[q, a], ...]}, one per frame

As a script: print a summary, or with --check print a JSON digest (used by the tests).
"""
import json
import struct
import sys

import numpy as np

_DTYPES = {"U8": np.uint8, "F32": np.float32, "I64": np.int64, "F64": np.float64,
           "I32": np.int32, "F16": np.float16, "BF16": None}
_JSON_META = ("joint_names", "camera_names", "events", "labels")


def read_safetensors(path):
    """Return ({name: ndarray}, {key: str}) of a safetensors file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header length {n} exceeds the file")
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    body = memoryview(data)[8 + n:]
    tensors = {}
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        arr = np.frombuffer(body[b:e], dtype=np.dtype(dt).newbyteorder("<"))
        tensors[name] = arr.reshape(shape)
    return tensors, meta


def read_episode(path):
    """Tensors and metadata of one episode; JSON-valued metadata decoded."""
    tensors, meta = read_safetensors(path)
    meta = dict(meta)
    for k in _JSON_META:
        if k in meta:
            meta[k] = json.loads(meta[k])
    for k in ("seed", "episode"):
        if k in meta:
            meta[k] = int(meta[k])
    if "control_hz" in meta:
        meta["control_hz"] = float(meta["control_hz"])
    if "success" in meta:
        meta["success"] = meta["success"] == "true"
    return tensors, meta


def main(argv):
    check = "--check" in argv
    paths = [a for a in argv[1:] if a != "--check"]
    if not paths:
        print(__doc__)
        return 2
    for p in paths:
        t, m = read_episode(p)
        if check:
            digest = {
                "shapes": {k: list(v.shape) for k, v in t.items()},
                "dtypes": {k: str(v.dtype) for k, v in t.items()},
                "state_sum": float(t["state"].astype(np.float64).sum()),
                "action_sum": float(t["action"].astype(np.float64).sum()),
                "images_sum": int(t["images"].astype(np.int64).sum()),
                "tick_first": int(t["tick"][0]), "tick_last": int(t["tick"][-1]),
                "task": m["task"], "instruction": m["instruction"], "n_labels": len(m["labels"]),
                "first_event": m["events"][0]["kind"] if m["events"] else "",
                "first_answer": m["labels"][0]["qa"][0][1] if m["labels"] and m["labels"][0]["qa"] else "",
            }
            print(json.dumps(digest, sort_keys=True))
        else:
            T = t["state"].shape[0]
            print(f"{p}: task {m['task']!r}, instruction {m['instruction']!r}, {T} frames, "
                  f"success {m['success']}")
            for k, v in t.items():
                print(f"  {k:9s} {str(v.dtype):8s} {list(v.shape)}")
            print(f"  events: {[(e['frame'], e['kind'], e['detail']) for e in m['events']]}")
            print(f"  frame 0 labels: {m['labels'][0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
