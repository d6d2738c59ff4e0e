"""NVIDIA stylegan2-ada-pytorch / stylegan3 network pickles, read without executing their code.

An official pickle (``ffhq.pkl``, ``network-snapshot-*.pkl``) is a dict with ``G``, ``D``, ``G_ema``,
... whose networks were pickled by ``torch_utils.persistence``: each module is rebuilt by a call
``_reconstruct_persistent_obj(meta)``, ``meta = {type, version, module_src, class_name, state}``,
where ``module_src`` is the Python source of the defining module (normally imported and executed on
load) and ``state`` the module's ``__dict__`` (``_init_kwargs``, ``_parameters``, ``_buffers``,
``_modules``, ...).

:class:`RestrictedUnpickler` resolves only an allow-list of inert globals: container types, torch's
own tensor-rebuilding functions (the storages inside are read with ``torch.load(weights_only=True)``)
and the persistence hook, which here only records ``meta`` as data.  ``module_src`` is never imported
or executed.  The generator is then built from our own :class:`Generator` with the recorded
constructor kwargs, and the recorded tensors are copied in by name.  Any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) stops the load with
:class:`UnsafeCheckpointError` before anything is called.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import torch

from otresefa.checkpoints.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator


@dataclass
class PersistedObject:
    """What ``torch_utils.persistence`` recorded about one network object (data only, no code)."""

    class_name: str
    module_src: str
    state: dict = field(repr=False)

    @property
    def submodules(self) -> dict:
        return dict(self.state.get("_modules") or {})


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def _reconstruct_persistent_obj(meta: dict) -> PersistedObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise CheckpointError("malformed persistent object in the pickle (expected a 'class' record)")
    return PersistedObject(
        class_name=str(meta.get("class_name")), module_src=str(meta.get("module_src", "")), state=dict(meta.get("state") or {})
    )


def _load_storage_from_bytes(data: bytes):
    # Storages inside a plainly pickled tensor are themselves torch.save'd bytes.
    return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if backward_hooks:
        raise UnsafeCheckpointError("refusing a tensor that carries backward hooks")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, {})


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None):
    if backward_hooks or state:
        raise UnsafeCheckpointError("refusing a parameter that carries hooks or extra state")
    return torch.nn.Parameter(data, requires_grad=requires_grad)


def _encode(text: str, encoding: str = "latin1") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, 'latin1').
    if encoding not in ("latin1", "latin-1"):
        raise UnsafeCheckpointError(f"unexpected byte encoding {encoding!r} in the pickle")
    return text.encode("latin1")


_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")}

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): dict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    **{("torch", name): dtype for name, dtype in _TORCH_DTYPES.items()},
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` and refuses everything else."""

    def __init__(self, file: BinaryIO, source: str = "the pickle"):
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            pass
        if module.startswith("dnnlib.tflib"):
            raise UnsupportedCheckpointError(
                f"{self.source} is a TensorFlow StyleGAN pickle; convert it to PyTorch first "
                "(NVIDIA's stylegan2-ada-pytorch legacy.py) and load the result"
            )
        raise UnsafeCheckpointError(
            f"refusing to load {self.source}: it references the global '{module}.{name}', which is not on the "
            "allow-list of inert types (loading it could run arbitrary code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"refusing to load {self.source}: unexpected persistent id in the pickle")


def read_network_pickle(file: BinaryIO, source: str = "the pickle") -> Any:
    """Unpickle an NVIDIA network pickle with :class:`RestrictedUnpickler` (never runs its code)."""
    try:
        return RestrictedUnpickler(file, source).load()
    except CheckpointError:
        raise
    except Exception as error:  # any other unpickling failure: truncated/corrupt/not a pickle
        raise CheckpointError(f"{source} could not be read as a network pickle ({type(error).__name__}: {error})") from None


def _collect_tensors(obj: PersistedObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """Flatten recorded ``_parameters``/``_buffers`` of ``obj`` and its submodules into a state dict."""
    tensors: dict[str, torch.Tensor] = {}
    for group in ("_parameters", "_buffers"):
        for name, value in (obj.state.get(group) or {}).items():
            if value is not None:
                tensors[prefix + name] = torch.as_tensor(value).detach()
    for name, child in obj.submodules.items():
        if isinstance(child, PersistedObject):
            tensors.update(_collect_tensors(child, f"{prefix}{name}."))
        elif child is not None:
            raise CheckpointError(f"unexpected non-persistent submodule '{prefix}{name}' in the pickle")
    return tensors


def _is_stylegan3(obj: PersistedObject) -> bool:
    synthesis = obj.submodules.get("synthesis")
    return "SynthesisInput" in obj.module_src or (
        isinstance(synthesis, PersistedObject) and "input" in synthesis.submodules
    )


def generator_from_pickle(data: Any, source: str = "the pickle", key: str = "G_ema") -> Generator:
    """Build our :class:`Generator` from an unpickled network dict (``key`` = ``G_ema``/``G``)."""
    if not isinstance(data, dict) or not any(isinstance(v, PersistedObject) for v in data.values()):
        raise CheckpointError(f"{source} is a pickle but not an NVIDIA network pickle (no persisted networks in it)")
    if key not in data:
        raise CheckpointError(f"{source} has no '{key}' network (it has: {sorted(map(str, data))})")
    record = data[key]
    if not isinstance(record, PersistedObject) or record.class_name != "Generator":
        raise CheckpointError(f"'{key}' in {source} is not a Generator")
    if _is_stylegan3(record):
        raise UnsupportedCheckpointError(f"{source} is a StyleGAN3 (config T/R) generator; StyleGAN3 is not supported yet")
    init_args = tuple(record.state.get("_init_args") or ())
    init_kwargs = dict(record.state.get("_init_kwargs") or {})
    if init_args:
        raise CheckpointError(f"{source}: unexpected positional constructor arguments {init_args}")
    try:
        G = Generator(**_plain(init_kwargs))
    except TypeError as error:
        raise UnsupportedCheckpointError(f"{source}: unsupported generator configuration ({error})") from None
    tensors = _collect_tensors(record)
    missing, unexpected = G.load_state_dict(tensors, strict=False)
    if missing or unexpected:
        raise UnsupportedCheckpointError(
            f"{source}: the generator's tensors do not match a StyleGAN2 generator "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]})"
        )
    return G


def _plain(value: Any) -> Any:
    """EasyDicts and tuples -> JSON-friendly dicts and lists, so ``G.init_kwargs`` can be saved."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
