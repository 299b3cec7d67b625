"""Frozen backbones through ONNX Runtime for CPU inference; training and CUDA keep PyTorch.

``inference_tower(owner, kind)`` is what ``FeatureInputs`` runs a text or image batch through: the
torch tower, or its ONNX Runtime twin (``OnnxTextTower`` / ``OnnxImageTower``, same call API).
Which one is the runtime's choice: ``owner.runtime`` (set by ``--runtime``), else
``$UNINOTE_RUNTIME``, else ``auto`` = ONNX Runtime on CPU and torch on CUDA. ``auto`` leaves the
tiny test towers on torch; ``onnx`` asks for them too. USE-m3 is numpy already and stays as it is;
backbones that train (``freeze_backbones=False``) stay on torch, whose weights move. With
``image_trained_blocks`` the image twin holds the frozen blocks only (``TowerPrefix``: its export
key hashes those weights alone, so every checkpoint with that cut shares it) and outputs the
feature map at the first trained block's input; the trained blocks run in torch after it
(``FeatureInputs.map_features``), as they do on the feature cache's maps.

The export is made from the torch tower at first use and cached as
``$UNINOTE_CACHE/onnx/<backbone>-<key>.onnx``, the key hashing backbone name, weights, input size
and opset. A JSON sidecar holds the file's SHA-256: a truncated or corrupt file fails it and is
exported again; the bytes that passed the checksum are the bytes the session is built from.
Before a twin is used it is checked against the torch tower on a fixed batch; above ``TOLERANCE``
(largest absolute difference of the outputs) it is refused with a warning naming both numbers, and
the torch tower is used. ORT runs with torch's thread count at the time the twin is built.

INT8 (opt-in: ``--runtime onnx-int8`` / ``UNINOTE_RUNTIME=onnx-int8``): the float export of a
tower named in ``QUANTIZE`` (the text tower; the image tower stays float) is quantised with
``onnxruntime.quantization.quantize_dynamic`` (MatMul weights to 8 bits per channel, activations
quantised per batch at run time) and cached beside it as
``<backbone>-int8-<key>.onnx``, the key adding the quantisation settings, with its own sidecar and
checksum (a corrupt file is quantised again). Its check against torch uses the smallest cosine
between matching output vectors (a token's state; a feature-map position's channels), at least
``INT8_MIN_COSINE``; below it the INT8 file is refused with a warning and the float twin runs.
The feature cache keys INT8 features apart (``features.fingerprint``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
import warnings
import weakref
from pathlib import Path

import numpy as np
import torch
from torch import nn

from uninote.config import RUNTIMES
from uninote.data.loaders import cache_root
from uninote.errors import ConfigError, UniNoteError
from uninote.fileio import atomic_write
from uninote.model.towers import LazyTower, TowerPrefix, masked_mean

log = logging.getLogger(__name__)
OPSET = 17
TOLERANCE = 1e-3
FORMAT = 1
INT8_RUNTIME = "onnx-int8"
INT8_MIN_COSINE = 0.95  # smallest cosine between an INT8 twin's output vectors and torch's, on the check batch
# quantize_dynamic settings per tower kind; a kind not named keeps its float twin. The image tower is not
# quantised: dynamic ConvInteger took EfficientNet-Lite0's pooled features to a cosine of 0.76 on
# corpus photos, static QDQ was slower than float (docs/results/model.md, INT8 towers).
QUANTIZE = {"text": {"format": 1, "op_types": ["MatMul"], "weight_type": "QInt8", "per_channel": True}}
CHECK_TEXTS = ("Turtle Check Men Navy Blue Shirt", "", "a longer title, with punctuation: Ünïcode ✓ 漢字 and "
               "more words so that the token lengths differ within the batch")
_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # torch tower -> {(threads, cut, int8): twin or None}


class OnnxMismatchError(UniNoteError):
    """An ONNX export's outputs differ from the torch tower's by more than the tolerance."""


def requested_runtime(owner=None) -> str:
    """``owner.runtime``, else ``$UNINOTE_RUNTIME``, else ``auto``; anything else fails loudly."""
    runtime = getattr(owner, "runtime", None) or os.environ.get("UNINOTE_RUNTIME") or "auto"
    if runtime not in RUNTIMES:
        raise ConfigError(f"unknown runtime {runtime!r} (from --runtime or UNINOTE_RUNTIME); "
                          f"use one of {', '.join(RUNTIMES)}")
    return runtime


def uses_onnx(owner, kind: str) -> bool:
    """Whether ``owner``'s ``kind`` ('text' | 'image') backbone runs through ONNX Runtime now."""
    runtime = requested_runtime(owner)
    if runtime == "torch":
        return False
    name = getattr(owner.config, f"{kind}_tower")
    if name == "use-m3" or not owner.config.freeze_backbones:
        return False  # numpy already / weights that training changes (an export would go stale)
    if torch.device(owner.device).type != "cpu":
        if runtime != "auto":
            raise ConfigError(f"--runtime {runtime} runs on CPU only, this model is on {owner.device}; "
                              "use --runtime auto or torch")
        return False
    return runtime != "auto" or name != "tiny"


def quantized(owner) -> bool:
    """Whether ``owner`` asks for the INT8 twins (``--runtime onnx-int8``)."""
    return requested_runtime(owner) == INT8_RUNTIME


def inference_tower(owner, kind: str):
    """The tower that runs ``owner``'s ``kind`` inputs now: the ONNX twin where it applies, else torch.

    For an image tower with trained last blocks it is the frozen part only (see the module docstring)."""
    tower = getattr(owner, f"{kind}_tower")
    cut = getattr(owner.config, "image_cut", None) if kind == "image" else None
    torch_tower = tower if cut is None else TowerPrefix(tower, cut)
    if not uses_onnx(owner, kind):
        return torch_tower
    real = tower.tower if isinstance(tower, LazyTower) else tower
    threads, int8 = torch.get_num_threads(), quantized(owner) and kind in QUANTIZE
    twins = _twins.setdefault(real, {})
    if (threads, cut, int8) not in twins:
        cfg = owner.config
        name = getattr(cfg, f"{kind}_tower")
        size = cfg.image_size if kind == "image" else cfg.max_text_tokens
        graph, graph_name = (real, name) if cut is None else (TowerPrefix(real, cut), f"{name}-blocks0-{cut}")
        cls = OnnxImageTower if kind == "image" else OnnxTextTower
        twin = None
        if int8:
            twin = _build(cls, graph, graph_name, size, threads, int8=True, fallback="the float ONNX twin")
        if twin is None:
            if (threads, cut, False) not in twins:
                twins[(threads, cut, False)] = _build(cls, graph, graph_name, size, threads, int8=False,
                                                      fallback="the torch tower")
            twin = twins[(threads, cut, False)]
        twins[(threads, cut, int8)] = twin
    return twins[(threads, cut, int8)] or torch_tower


def _build(cls, graph, name: str, size: int, threads: int, int8: bool, fallback: str):
    """The twin, or None (with a warning naming what runs instead) when it is refused or cannot be built."""
    try:
        return cls(graph, name, size, threads, int8=int8)
    except OnnxMismatchError as exc:
        warnings.warn(f"{exc}; using {fallback}", RuntimeWarning, stacklevel=3)
        log.warning("%s; using %s", exc, fallback)
    except Exception as exc:  # an exporter, quantiser or ORT that cannot handle this backbone
        what = "quantise" if int8 else "run"
        warnings.warn(f"cannot {what} {name} through ONNX Runtime ({type(exc).__name__}: {exc}); "
                      f"using {fallback}", RuntimeWarning, stacklevel=3)
    return None


# --- export cache ------------------------------------------------------------------------------
def weights_hash(module: nn.Module) -> str:
    """SHA-256 over the names, shapes and values of every tensor in the state dict."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        v = v.detach().cpu().contiguous()
        h.update(f"{k}\x00{v.dtype}\x00{tuple(v.shape)}\x00".encode())
        h.update(v.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def export_path(name: str, weights: str, size: int, root: Path | None = None,
                quantize: dict | None = None) -> Path:
    """Where the export of backbone ``name`` with these weights and input size is cached (with
    ``quantize``, its INT8 version made with those settings)."""
    if root is None:
        root = cache_root()
    parts = [FORMAT, name, weights, size, OPSET] + ([quantize] if quantize else [])
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rstrip("/").split("/")[-1])[:40]
    return root / "onnx" / f"{slug}{'-int8' if quantize else ''}-{key}.onnx"


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def read_export(path: Path) -> bytes | None:
    """The cached export's bytes when they match their sidecar's checksum, else None."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        data = path.read_bytes()
    except (OSError, ValueError):
        return None
    if len(data) != meta.get("bytes") or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        log.warning("%s does not match its checksum (truncated or corrupt): exporting again", path)
        return None
    return data


def write_export(graph: nn.Module, example: dict[str, torch.Tensor], dynamic: dict, path: Path,
                 info: dict) -> bytes:
    """Export ``graph`` on ``example`` inputs, then write file and sidecar atomically; returns the bytes."""
    buffer = io.BytesIO()
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused attention op has no ONNX form
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and folding notes
            torch.onnx.export(graph, tuple(example.values()), buffer, input_names=list(example),
                              output_names=["output"], dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return _write_checked(path, buffer.getvalue(), {**info, "torch": torch.__version__})


def write_quantized(data: bytes, settings: dict, path: Path, info: dict) -> bytes:
    """Quantise the float export ``data`` to INT8 (``quantize_dynamic`` with ``settings``), then write
    file and sidecar atomically; returns the bytes."""
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
        src.write_bytes(data)
        logging.disable(logging.WARNING)  # its root-logger advice to pre-process (shape inference) first
        try:
            quantize_dynamic(src, dst, op_types_to_quantize=settings["op_types"], per_channel=settings["per_channel"],
                             weight_type=getattr(QuantType, settings["weight_type"]))
        finally:
            logging.disable(logging.NOTSET)
        quant = dst.read_bytes()
    return _write_checked(path, quant, {**info, "quantize": settings, "onnxruntime": ort.__version__})


def _write_checked(path: Path, data: bytes, info: dict) -> bytes:
    atomic_write(path, data)
    sidecar = {**info, "opset": OPSET, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write(_sidecar(path), json.dumps(sidecar, indent=1).encode())
    return data


def open_session(data: bytes, threads: int):
    import onnxruntime as ort  # deferred: only a process that runs a twin loads it

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # a shared CPU: no busy-waiting
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


class _Twin:
    """Shared part of the twins: export (or reuse) the graph, open it, check it against torch."""

    def _open(self, graph: nn.Module, example: dict[str, torch.Tensor], dynamic: dict, name: str,
              size: int, threads: int, int8: bool, kind: str) -> None:
        weights = weights_hash(graph)
        path = export_path(name, weights, size)
        info = {"backbone": name, "input_size": size}
        data = read_export(path)
        if data is None:
            log.info("exporting %s to ONNX (%s)", name, path)
            data = write_export(graph, example, dynamic, path, info)
        self.int8 = int8
        if int8:
            settings = QUANTIZE[kind]
            path = export_path(name, weights, size, quantize=settings)
            quant = read_export(path)
            if quant is None:
                log.info("quantising %s to INT8 (%s)", name, path)
                quant = write_quantized(data, settings, path, info)
            data = quant
        self.path, self.session = path, open_session(data, threads)

    def _check(self, expected: np.ndarray, got: np.ndarray, name: str) -> None:
        """``expected`` and ``got``: (vectors, dim), one output vector a row."""
        diff = float(np.abs(expected - got).max()) if expected.size else 0.0
        self.check_difference = diff
        if self.int8:
            cosine = smallest_cosine(expected, got)
            if not cosine >= INT8_MIN_COSINE:  # NaN fails too
                raise OnnxMismatchError(f"INT8 ONNX export of {name} ({self.path}) reaches a smallest cosine of "
                                        f"{cosine:.4f} against torch on the check batch, below the tolerance "
                                        f"{INT8_MIN_COSINE}")
            self.check_cosine = cosine
        elif not diff <= TOLERANCE:  # NaN fails too
            raise OnnxMismatchError(f"ONNX export of {name} ({self.path}) differs from torch by {diff:.3g} "
                                    f"on the check batch, above the tolerance {TOLERANCE:.3g}")

    def _run(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        feed = {k: v.cpu().numpy() for k, v in inputs.items()}
        return torch.from_numpy(self.session.run(None, feed)[0])


def smallest_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Smallest cosine between matching rows of ``a`` and ``b``; two zero rows count as 1, one as 0."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    cos = np.where((na == 0) & (nb == 0), 1.0, cos)
    return float(cos.min()) if cos.size else 1.0


class _TextGraph(nn.Module):
    def __init__(self, tower: nn.Module, names: list[str]):
        super().__init__()
        self.tower, self.names = tower, names

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.tower.states(**dict(zip(self.names, tensors)))


class OnnxTextTower(_Twin):
    """A text tower's token states from ONNX Runtime; tokenizing and pooling stay in Python."""

    def __init__(self, tower: nn.Module, name: str, max_tokens: int, threads: int, int8: bool = False):
        self.tower, self.feature_dim = tower, tower.feature_dim
        example = tower.inputs(list(CHECK_TEXTS))
        dynamic = {k: {0: "batch", 1: "tokens"} for k in example} | {"output": {0: "batch", 1: "tokens"}}
        if list(example) == ["ids"]:  # the tiny tower pads to a fixed length
            dynamic = {"ids": {0: "batch"}, "output": {0: "batch"}}
        graph = _TextGraph(tower, list(example)).eval()
        self._open(graph, example, dynamic, name, max_tokens, threads, int8, "text")
        mask = tower.mask(example).numpy()
        with torch.inference_mode():
            expected = graph(*example.values()).numpy()
        self._check(expected[mask], self._run(example).numpy()[mask], name)

    def token_states(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        inputs = self.tower.inputs(list(texts))
        return self._run(inputs), self.tower.mask(inputs)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        return masked_mean(*self.token_states(texts))


class OnnxImageTower(_Twin):
    """An image tower's feature map (B, F, h, w) from ONNX Runtime, on normalised pixels (or a
    ``TowerPrefix``'s map at its cut)."""

    def __init__(self, tower: nn.Module, name: str, image_size: int, threads: int, int8: bool = False):
        self.tower, self.feature_dim = tower, getattr(tower, "feature_dim", None)
        self.mean, self.std = tower.mean, tower.std
        generator = torch.Generator().manual_seed(0)
        example = {"pixels": torch.rand(2, 3, image_size, image_size, generator=generator) * 4 - 2}
        dynamic = {"pixels": {0: "batch"}, "output": {0: "batch"}}
        self._open(tower, example, dynamic, name, image_size, threads, int8, "image")
        with torch.inference_mode():
            expected = tower(example["pixels"]).numpy()
        rows = lambda x: np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])  # noqa: E731  (a position's channels)
        self._check(rows(expected), rows(self._run(example).numpy()), name)

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._run({"pixels": pixels.float()})
