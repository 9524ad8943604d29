"""Test helpers: small saved models, hostile model files and hostile images, written to a test folder."""

from __future__ import annotations

import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np

from mnistlab.datasets import N_CLASSES

DIGITS = [str(i) for i in range(N_CLASSES)]


def write_network(path: Path, model: str = "cnn", seed: int = 0, classes=None) -> Path:
    """An untrained (seeded) network checkpoint in the format dl_main.py writes: enough to load and predict."""
    import torch

    from Network import build_model

    torch.manual_seed(seed)
    config = {
        "model": model,
        "hidden_size": 16,
        "dropout": 0.5,
        "classes": classes or DIGITS,
        "width": 32,
        "stem": "pool",
    }
    net = build_model(model, config["hidden_size"], config["dropout"], len(config["classes"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": net.state_dict(), "config": config, "final": True}, path)
    return path


def fit_pipeline(algo: str, x: np.ndarray, y: np.ndarray, recipe: str = "paper"):
    """Classifier.py's pipeline for ``algo``, fitted on a few raw images (forests kept to a few trees)."""
    import Classifier

    settings = Classifier.settings(algo, recipe)
    if "n_estimators" in settings:
        settings["n_estimators"] = 5
    return Classifier.build(algo, settings, seed=0, threads=1).fit(x, y)


def png_header(width: int, height: int) -> bytes:
    """A tiny PNG that declares ``width`` x ``height`` bilevel pixels (its data is one short row)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1 bit, grey, deflate, no filter, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def replace_schema(data: bytes, edit) -> bytes:
    """A skops file with its schema.json changed by ``edit(schema)``; the arrays beside it are kept."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            content = source.read(info.filename)
            if info.filename == "schema.json":
                schema = json.loads(content)
                edit(schema)
                content = json.dumps(schema).encode()
            target.writestr(info.filename, content)
    return out.getvalue()


def eval_node(code: str) -> dict:
    """A skops node that calls builtins.eval(code) when it is constructed: what a hostile file would hold."""
    text = {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(code),
        "is_json": True,
    }
    args = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": [text]}
    return {"__class__": "eval", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode", "content": args}


def with_eval_payload(data: bytes, code: str) -> bytes:
    """A save_classical file whose pipeline is replaced by a call to builtins.eval(code)."""

    def edit(schema):
        schema["content"]["pipeline"] = eval_node(code)

    return replace_schema(data, edit)


def with_function(data: bytes, module: str, name: str) -> bytes:
    """A save_classical file whose deskew/scale step calls ``module.name`` (e.g. os.system) instead."""

    def edit(schema):
        stack = [schema]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if node.get("__loader__") == "FunctionNode":
                    node["__module__"], node["__class__"] = module, name
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)

    return replace_schema(data, edit)


class Touch:
    """Unpickling this runs code: it creates ``path``. The classic pickle attack, made harmless."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return exec, (f"open({str(self.path)!r}, 'w').close()",)
