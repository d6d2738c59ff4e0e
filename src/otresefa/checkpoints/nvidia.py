"""NVIDIA network pickles, read without executing their code.

An official PyTorch pickle (``ffhq.pkl``, ``network-snapshot-*.pkl``, from stylegan2-ada-pytorch or
the stylegan3 repository) is a dict with ``G``, ``D``, ``G_ema``, ``augment_pipe`` and
``training_set_kwargs``, whose networks were pickled by ``torch_utils.persistence``: each module is
rebuilt by a call ``_reconstruct_persistent_obj(meta)``, ``meta = {type, version, module_src,
class_name, state}``, where ``module_src`` is the Python source of the defining module (normally
imported and executed on load) and ``state`` the module's ``__dict__`` (``_init_kwargs``,
``_parameters``, ``_buffers``, ``_modules``, and plain attributes, among them numpy scalars such as
``act_gain`` and, in StyleGAN3, numpy arrays).  A TensorFlow pickle (NVlabs/stylegan2) is a tuple
``(G, D, Gs)`` of ``dnnlib.tflib.network.Network`` objects, each pickled as its ``__getstate__``
dict (see :mod:`otresefa.checkpoints.tensorflow`).

:class:`RestrictedUnpickler` resolves only an allow-list of inert globals: container types, torch's
own tensor-rebuilding functions (the storages inside are read with ``torch.load(weights_only=True)``),
numpy scalars and arrays of plain numeric dtypes (rebuilt from their raw bytes, under both the numpy
1 ``numpy.core`` and numpy 2 ``numpy._core`` module names), and stand-ins for the persistence hook
and the TensorFlow ``Network`` class, which only record their data.  ``module_src`` and
``build_module_src`` are never imported or executed.  Any other global (``os.system``,
``builtins.eval``, ``subprocess.Popen``, ...) stops the load with :class:`UnsafeCheckpointError`
before anything is called, and so does a numpy global asked for anything but plain numbers (an
object dtype or array, a dtype state that claims to hold objects).
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
import torch

from otresefa.checkpoints.errors import CheckpointError, UnsafeCheckpointError, UnsupportedCheckpointError
from otresefa.models import Generator, GeneratorBase, StyleGAN3Generator

FORMAT_ADA = "nvidia-pickle (stylegan2-ada-pytorch)"
FORMAT_STYLEGAN3_REPO = "nvidia-pickle (stylegan3 repository)"


@dataclass
class PersistedObject:
    """What ``torch_utils.persistence`` recorded about one network object (data only, no code)."""

    class_name: str
    module_src: str
    state: dict = field(repr=False)

    @property
    def submodules(self) -> dict:
        return dict(self.state.get("_modules") or {})


class TFNetworkRecord:
    """Stand-in for ``dnnlib.tflib.network.Network``: keeps the pickled ``__getstate__`` dict as data
    (``version``, ``name``, ``static_kwargs``, ``components``, ``build_module_src``,
    ``build_func_name``, ``variables``).  The build code it carries is never run."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise CheckpointError("malformed TensorFlow network in the pickle (its state is not a dict)")
        self._state = state

    @property
    def state(self) -> dict:
        return self.__dict__.get("_state") or {}

    @property
    def name(self) -> str:
        return str(self.state.get("name"))


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


# ----------------------------------------------------------------------------- numpy, as data only

# bool, signed and unsigned integers, floats, complex, fixed-size byte and unicode strings: the
# dtypes whose values are plain bytes.
_PLAIN_KINDS = "biufcSU"


def _refuse_numpy(what: str) -> UnsafeCheckpointError:
    return UnsafeCheckpointError(f"refusing numpy data in the pickle: {what} (only plain numeric scalars and arrays are read)")


class NumpyDType:
    """Stand-in for ``numpy.dtype(spec, align, copy)`` followed by ``dtype.__setstate__(state)``.

    numpy pickles a dtype as that call plus its state ``(3, byte_order, subarray, names, fields,
    elsize, alignment, flags)``.  The real ``__setstate__`` accepts any flags, so a pickle could turn
    ``float64`` into a dtype that "holds objects" and make numpy read raw bytes as object pointers;
    here only plain dtypes, with exactly their own state (up to the byte order), are accepted.
    """

    def __init__(self, spec: Any, align: bool = False, copy: bool = True):
        if not isinstance(spec, str):
            raise _refuse_numpy(f"a dtype built from {type(spec).__name__}")
        try:
            dtype = np.dtype(spec)
        except TypeError:
            raise _refuse_numpy(f"the unknown dtype {spec!r}") from None
        if dtype.kind not in _PLAIN_KINDS or dtype.hasobject or dtype.fields is not None:
            raise _refuse_numpy(f"the dtype {spec!r}")
        self.dtype = dtype

    def __setstate__(self, state: Any) -> None:
        own = self.dtype.__reduce__()[2]
        plain = (isinstance(state, tuple) and len(state) == len(own) and state[0] == own[0]
                 and state[1] in ("<", ">", "|", "=") and state[2:] == own[2:])
        if not plain:
            raise _refuse_numpy(f"a {self.dtype} dtype with the state {state!r}")
        if state[1] in ("<", ">"):
            self.dtype = self.dtype.newbyteorder(state[1])


class _NumpyClass:
    """Marks ``numpy.ndarray`` where it is an argument of ``_reconstruct``; not callable."""


NDARRAY = _NumpyClass()


def _plain_dtype(value: Any) -> np.dtype:
    if not isinstance(value, NumpyDType):
        raise _refuse_numpy(f"an array or scalar whose dtype is a {type(value).__name__}")
    return value.dtype


def _raw_bytes(value: Any, what: str) -> bytes | bytearray:
    if not isinstance(value, (bytes, bytearray)):
        raise _refuse_numpy(f"{what} given as {type(value).__name__}, not raw bytes (an object array?)")
    return value


def _numpy_scalar(dtype: Any, data: Any) -> np.generic:
    """``numpy.core.multiarray.scalar(dtype, bytes)``: one value of a numeric dtype."""
    dtype = _plain_dtype(dtype)
    data = _raw_bytes(data, "a scalar")
    if len(data) != dtype.itemsize:
        raise CheckpointError(f"malformed numpy scalar in the pickle ({len(data)} bytes for a {dtype})")
    return np.frombuffer(data, dtype=dtype)[0]


class LoadedArray(np.ndarray):
    """An array rebuilt by ``_reconstruct`` + ``__setstate__``; the state is checked to be numeric
    data (shape, plain dtype, raw bytes) before numpy sees it."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError("malformed numpy array in the pickle")
        version, (shape, dtype, fortran, data) = (state[0], state[1:]) if len(state) == 5 else (1, state)
        if not (isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape)):
            raise CheckpointError(f"malformed numpy array shape {shape!r} in the pickle")
        super().__setstate__((version, shape, _plain_dtype(dtype), bool(fortran), _raw_bytes(data, "array data")))


def _numpy_reconstruct(cls: Any, shape: Any, typecode: Any) -> LoadedArray:
    """``numpy.core.multiarray._reconstruct(ndarray, (0,), b'b')``: an empty array its state fills."""
    if cls is not NDARRAY:
        raise _refuse_numpy(f"_reconstruct of {type(cls).__name__} (only numpy.ndarray)")
    return LoadedArray((0,), dtype=np.uint8)


def _numpy_frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer``: how numpy pickles arrays with protocol 5."""
    dtype = _plain_dtype(dtype)
    if order not in ("C", "F") or not (isinstance(shape, tuple) and all(isinstance(n, int) for n in shape)):
        raise CheckpointError(f"malformed numpy array (shape {shape!r}, order {order!r}) in the pickle")
    return np.frombuffer(_raw_bytes(buffer, "array data"), dtype=dtype).reshape(shape, order=order).copy(order="K")


_TORCH_DTYPES = {name: getattr(torch, name) for name in (
    "float16", "float32", "float64", "bfloat16", "int8", "int16", "int32", "int64", "uint8", "bool")}

ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): dict,
    # protocol-2 pickles written by Python 3 name the builtins module as Python 2 did
    **{(builtins, "set"): set for builtins in ("builtins", "__builtin__")},
    **{(builtins, "frozenset"): frozenset for builtins in ("builtins", "__builtin__")},
    ("_codecs", "encode"): _encode,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
    ("torch", "Size"): torch.Size,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.tflib.network", "Network"): TFNetworkRecord,
    ("numpy", "dtype"): NumpyDType,
    ("numpy", "ndarray"): NDARRAY,
    **{(f"numpy.{core}.multiarray", "scalar"): _numpy_scalar for core in ("core", "_core")},
    **{(f"numpy.{core}.multiarray", "_reconstruct"): _numpy_reconstruct for core in ("core", "_core")},
    **{(f"numpy.{core}.numeric", "_frombuffer"): _numpy_frombuffer for core in ("core", "_core")},
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
        raise UnsafeCheckpointError(
            f"refusing to load {self.source}: it references the global '{module}.{name}', which is not on the "
            "allow-list of inert types (loading it could run arbitrary code)"
        )

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError(f"refusing to load {self.source}: unexpected persistent id in the pickle")


def read_network_pickle(file: BinaryIO, source: str = "the pickle") -> Any:
    """Unpickle a network pickle with :class:`RestrictedUnpickler` (never runs its code)."""
    try:
        return RestrictedUnpickler(file, source).load()
    except CheckpointError as error:
        if source in str(error):
            raise
        raise type(error)(f"{source}: {error}") from None
    except Exception as error:  # any other unpickling failure: truncated/corrupt/not a pickle
        raise CheckpointError(f"{source} could not be read as a network pickle ({type(error).__name__}: {error})") from None


# ----------------------------------------------------------------------------- PyTorch pickles -> generator


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


# The keyword arguments of NVIDIA's StyleGAN2 ``Generator`` itself; the stylegan3 repository's
# version takes the synthesis network's options as further keywords instead of ``synthesis_kwargs``.
_GENERATOR_KWARGS = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs", "synthesis_kwargs")


def _stylegan2_kwargs(init_kwargs: dict) -> tuple[dict, str]:
    """Constructor kwargs for our Generator and the repository that wrote them.

    stylegan2-ada-pytorch's ``Generator(..., mapping_kwargs, synthesis_kwargs)`` always records
    ``synthesis_kwargs``; the stylegan3 repository's ``networks_stylegan2.Generator(...,
    mapping_kwargs, **synthesis_kwargs)`` never does, its synthesis options being top-level.
    """
    if "synthesis_kwargs" in init_kwargs:
        return init_kwargs, FORMAT_ADA
    kwargs = {k: v for k, v in init_kwargs.items() if k in _GENERATOR_KWARGS}
    kwargs["synthesis_kwargs"] = {k: v for k, v in init_kwargs.items() if k not in _GENERATOR_KWARGS}
    return kwargs, FORMAT_STYLEGAN3_REPO


def generator_from_pickle(data: Any, source: str = "the pickle", key: str = "G_ema") -> GeneratorBase:
    """Build our generator from an unpickled PyTorch network dict (``key`` = ``G_ema``/``G``).

    StyleGAN2 generators (stylegan2-ada-pytorch, and the stylegan3 repository's
    ``networks_stylegan2``) become :class:`~otresefa.models.Generator`, StyleGAN3 generators (its
    ``networks_stylegan3``: a ``synthesis.input`` record) a
    :class:`~otresefa.models.StyleGAN3Generator`; the recorded constructor kwargs rebuild the
    network and the recorded tensors fill it by name.
    """
    if not isinstance(data, dict) or not any(isinstance(v, PersistedObject) for v in data.values()):
        raise CheckpointError(f"{source} is a pickle but not an NVIDIA network pickle (no persisted networks in it)")
    if key not in data:
        raise CheckpointError(f"{source} has no '{key}' network (it has: {sorted(map(str, data))})")
    record = data[key]
    if not isinstance(record, PersistedObject):
        raise CheckpointError(f"'{key}' in {source} is not a network (it is a {type(record).__name__})")
    if record.class_name != "Generator":
        raise UnsupportedCheckpointError(
            f"'{key}' in {source} is a persisted {record.class_name!r}, not a Generator: this library reads "
            "StyleGAN2 and StyleGAN3 generators"
        )
    init_args = tuple(record.state.get("_init_args") or ())
    if init_args:
        raise CheckpointError(f"{source}: unexpected positional constructor arguments {init_args}")
    init_kwargs = plain_data(dict(record.state.get("_init_kwargs") or {}))
    if _is_stylegan3(record):
        G = _rebuild(StyleGAN3Generator, init_kwargs, record, f"{source}: '{key}'")
        G.checkpoint_format = FORMAT_STYLEGAN3_REPO
    else:
        init_kwargs, fmt = _stylegan2_kwargs(init_kwargs)
        G = _rebuild(Generator, init_kwargs, record, f"{source}: '{key}'")
        G.checkpoint_format = fmt
    return G


def _rebuild(cls: type[GeneratorBase], init_kwargs: dict, record: PersistedObject, what: str) -> GeneratorBase:
    """``cls`` built from the recorded kwargs and filled with the recorded tensors, all of them."""
    family = cls.family.replace("stylegan", "StyleGAN")
    others = "StyleGAN-XL, StyleGAN-T and other variants are not supported"
    try:
        G = cls.for_loading(**init_kwargs)
    except (TypeError, ValueError, KeyError) as error:
        raise UnsupportedCheckpointError(f"{what} is not a {family} generator this library implements ({error}); {others}") from None
    missing, unexpected = G.load_state_dict(_collect_tensors(record), strict=False)
    if missing or unexpected:
        raise UnsupportedCheckpointError(
            f"{what}: the generator's tensors do not match a {family} generator "
            f"(missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}); {others}"
        )
    return G


def plain_data(value: Any) -> Any:
    """EasyDicts, tuples and numpy values -> JSON-friendly dicts, lists and numbers, so that
    ``G.init_kwargs`` can be saved."""
    if isinstance(value, dict):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    return value
