"""The discovery methods' registry: each method's facts, and one way to run it.

Every method is one module of this package with a function
``discover(problem, num_directions, seed, *, <options>) -> MethodResult`` (see
:mod:`otresefa.methods.base`), and one :class:`MethodInfo` here that says what the command line,
the browser app and the benchmark need to know about it without importing it: its display title,
what it reads (``needs``), whether its result depends on the seed, and its options with their
types, defaults, choices and bounds.  This module imports no PyTorch, so ``otresefa --help`` and
argument errors answer at once; :func:`run_method` imports the method's module when it runs.

=================  ==========================  ===================================================
name               needs                       what it maximises
=================  ==========================  ===================================================
``ot-resefa``      jacobians                   OT (WDA) ratio between region and background (eq. 13)
``resefa``         jacobians                   generalised Rayleigh quotient n^T A_F n / n^T A_B n
``lowrankgan``     jacobians                   RPCA subspaces: principal in A_F, null in A_B
``sefa``           generator                   spread of the style-affine weights (ignores the region)
``ganspace``       generator                   variance of sampled w (ignores the region)
=================  ==========================  ===================================================

Option values come from Python (``lam=4``), from text (``"lam=4"`` on the command line,
``"ot-resefa:lam=4"`` in a benchmark spec) or from widgets (the browser app); :meth:`Option.parse`
turns each into the option's type and :meth:`MethodInfo.parse_options` refuses unknown names, so
all three read options the same way.
"""

from __future__ import annotations

import importlib
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from otresefa.methods.base import MethodResult, RegionProblem

__all__ = [
    "DEFAULT_METHOD", "NEEDS", "MethodInfo", "Option", "available_methods", "method_info", "method_needs", "method_options",
    "parse_option_pairs", "run_method",
]

NEEDS = {
    "jacobians": "the region's Gram matrices A_F, A_B, from Jacobians",
    "generator": "the generator itself",
    "attributes": "attribute scores of generated images (an estimator or a labels file)",
    "flow": "a trained conditional flow",
}
"""What a method can need, with the words the command line uses to explain it."""

OPTION_KINDS = (bool, int, float, str, list)

DEFAULT_METHOD = "ot-resefa"
"""The method the demo, the command line and the browser app use when none is chosen."""


@dataclass(frozen=True)
class Option:
    """One option of a method: its type, default, and what values it takes.

    Parameters
    ----------
    name : str
        The keyword of the method's ``discover`` function.
    kind : type
        ``bool``, ``int``, ``float``, ``str`` or ``list`` (a list of whole numbers, e.g. layers).
    default : Any
        The value used when the option is not given; ``None`` only when ``optional``.
    help : str
        One line for ``otresefa methods`` and the browser app.
    choices : tuple of str
        The allowed values of a ``str`` option (empty: any text).
    optional : bool
        ``None`` is allowed and means "chosen automatically" (``help`` says how).
    low, high : float or None
        Inclusive bounds of a number.
    """

    name: str
    kind: type
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    optional: bool = False
    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in OPTION_KINDS:
            raise TypeError(f"option {self.name!r}: kind must be one of {OPTION_KINDS}, got {self.kind!r}")
        if self.default is None and not self.optional:
            raise TypeError(f"option {self.name!r} defaults to None but is not optional")

    def describe(self) -> str:
        """``name=default`` with the type and what values it takes, for help texts."""
        kind = "a list of whole numbers" if self.kind is list else self.kind.__name__
        if self.choices:
            kind = " | ".join(self.choices)
        bounds = []
        if self.low is not None:
            bounds.append(f">= {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        extra = ", ".join(bounds + (["or None"] if self.optional else []))
        return f"{self.name}={self.default!r} ({kind}{', ' + extra if extra else ''}): {self.help}"

    def parse(self, value: Any, method: str) -> Any:
        """``value`` (Python, text or a widget's value) as this option's type, checked.

        Raises
        ------
        ValueError
            Naming the method, the option and what it takes.
        """
        where = f"option {self.name!r} of method {method!r}"
        if isinstance(value, str):
            value = value.strip()
            if self.optional and value.lower() in ("", "none", "null", "auto"):
                return None
            if self.kind is not str:
                value = _from_text(value, self.kind, where)
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{where} needs a value (default {self.default!r})")
        parsed = _as_kind(value, self.kind, where)
        if self.choices and parsed not in self.choices:
            raise ValueError(f"{where} must be one of {', '.join(self.choices)}; got {parsed!r}")
        if self.kind in (int, float):
            if not math.isfinite(parsed):
                raise ValueError(f"{where} must be a finite number, got {value!r}")
            if (self.low is not None and parsed < self.low) or (self.high is not None and parsed > self.high):
                span = " and ".join(f"{word} {bound:g}" for word, bound in (("at least", self.low), ("at most", self.high))
                                    if bound is not None)
                raise ValueError(f"{where} must be {span}, got {parsed!r}")
        return parsed


def _from_text(text: str, kind: type, where: str) -> Any:
    """Text typed by a user as a Python value of ``kind`` (JSON numbers/booleans, ``0-3`` ranges)."""
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{where} is true or false, got {text!r}")
    if kind is list:
        if re.fullmatch(r"[\d,\- ]+", text):  # "0-3,6" or "1,2"
            values: list[int] = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                first, _, last = part.partition("-")
                values.extend(range(int(first), int(last or first) + 1))
            return values
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"{where} takes {'a list like 0-3 or [0, 1]' if kind is list else kind.__name__}, "
                         f"got {text!r}") from None


def _as_kind(value: Any, kind: type, where: str) -> Any:
    """A Python value as ``kind``: whole floats become ints, ints floats; nothing else converts."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is str:
        if isinstance(value, str):
            return value
    elif kind is list:
        if isinstance(value, (list, tuple)) and all(_is_whole(v) for v in value):
            return [int(v) for v in value]
    elif _is_number(value):
        if kind is float:
            return float(value)
        if _is_whole(value):
            return int(value)
    raise ValueError(f"{where} takes {_kind_name(kind)}, got {value!r}")


def _is_number(value: Any) -> bool:
    """A real number, numpy's included; not a bool (True is not 1 for an option)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and type(value).__name__ != "bool_"


def _is_whole(value: Any) -> bool:
    return _is_number(value) and math.isfinite(float(value)) and float(value).is_integer()


def _kind_name(kind: type) -> str:
    return {bool: "true or false", int: "a whole number", float: "a number", str: "text",
            list: "a list of whole numbers"}[kind]


@dataclass(frozen=True)
class MethodInfo:
    """What the rest of the library knows about one method without importing it.

    Parameters
    ----------
    name : str
        Registry name (``"ot-resefa"``).
    title : str
        Display name in tables and pictures (``"OT-ReSeFa"``).
    module : str
        The module of this package that holds its ``discover`` function.
    needs : frozenset of str
        Keys of :data:`NEEDS`.
    seeded : bool
        Whether the result depends on the seed (random starts or samples); seed-free methods are
        discovered once per region and reused by every replicate of a benchmark.
    options : tuple of Option
        Its options, in the order they are shown.
    summary : str
        One line on what it does.
    shown : tuple of str
        The options a table label always shows (e.g. OT-ReSeFa's variant), default or not.
    """

    name: str
    title: str
    module: str
    needs: frozenset[str]
    seeded: bool
    options: tuple[Option, ...]
    summary: str
    shown: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        object.__setattr__(self, "needs", frozenset(self.needs))
        unknown = sorted(set(self.needs) - set(NEEDS))
        if unknown:
            raise TypeError(f"method {self.name!r}: unknown needs {unknown}; known: {sorted(NEEDS)}")

    @property
    def defaults(self) -> dict[str, Any]:
        """Option names mapped to their defaults."""
        return {option.name: option.default for option in self.options}

    def option(self, name: str) -> Option:
        for option in self.options:
            if option.name == name:
                return option
        raise ValueError(f"unknown option {name!r} for method {self.name!r}; valid options: "
                         f"{', '.join(self.defaults) or '(none)'}")

    def parse_options(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """``values`` (any mix of Python values, text and widget values) as typed, checked options.

        Raises
        ------
        ValueError
            For an unknown option name (all of them listed) or a value the option does not take.
        """
        unknown = sorted(set(values) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {self.name!r}; valid options: "
                             f"{', '.join(self.defaults) or '(none)'}")
        return {name: self.option(name).parse(value, self.name) for name, value in values.items()}

    def function(self):
        """The method's ``discover`` function (imports its module)."""
        return importlib.import_module(f"otresefa.methods.{self.module}").discover


_REGISTRY: dict[str, MethodInfo] = {info.name: info for info in (
    MethodInfo(
        "ot-resefa", "OT-ReSeFa", "ot_resefa", frozenset({"jacobians"}), True,
        [
            Option("lam", float, 2.0, "entropic OT strength lambda of the Sinkhorn plans (eq. 12)", low=1e-12),
            Option("within", str, "both", "within-class term: both classes (eq. 13) or the foreground only (eq. 16)",
                   choices=("both", "foreground")),
            Option("normalize", str, "unit_rows", "cost normalisation that makes lambda scale-free",
                   choices=("none", "mean_cost", "unit_rows")),
            Option("init", str, "random", "first start: a seeded random direction (the paper) or ReSeFa's",
                   choices=("random", "resefa")),
            Option("restarts", int, 1, "starts per direction; the best objective is kept", low=1),
            Option("sinkhorn_iter", int, 10, "k, Sinkhorn iterations per plan (eqs. 21-23)", low=1),
            Option("max_iter", int, 100, "L, iterations of Algorithm 1 per start", low=0),
            Option("tol", float, 1e-9, "stop when 5 iterations together raise O by at most tol * |O|", low=0),
        ],
        "maximises the Wasserstein discriminant ratio of the region's and the background's Gram rows "
        "(the paper, eq. 13, Algorithm 1)",
        shown=("within", "normalize"),
    ),
    MethodInfo(
        "resefa", "ReSeFa", "resefa", frozenset({"jacobians"}), False,
        [Option("tau", float, None, "A_B regularisation A_B + tau trace(A_B) I; None: 0, or 1e-3 when "
                        "A_B is singular", optional=True, low=0)],
        "generalised eigenvectors of (A_F, A_B): most change inside per change outside, to first order",
    ),
    MethodInfo(
        "lowrankgan", "LowRankGAN", "lowrankgan", frozenset({"jacobians"}), False,
        [
            Option("sparsity", float, None, "robust-PCA weight; None: 1/60 scaled to the dimension", optional=True,
                   low=1e-12),
            Option("max_iter", int, 10000, "robust-PCA iterations at most", low=1),
            Option("tol", float, 1e-7, "robust-PCA relative residual at which to stop", low=0),
            Option("relax", int, 0, "weakest directions of L_B released into the null space", low=0),
            Option("rank_tol", float, 1e-6, "ranks count eigenvalues above rank_tol times the largest", low=0),
        ],
        "principal directions of the low-rank part of A_F, projected onto the null space of A_B's",
    ),
    MethodInfo(
        "sefa", "SeFa", "sefa", frozenset({"generator"}), False,
        [Option("layers", list, None, "ws indices whose style affines count; None: all", optional=True)],
        "eigenvectors of the style-affine weights A^T A (global: ignores the region)",
    ),
    MethodInfo(
        "ganspace", "GANSpace", "ganspace", frozenset({"generator"}), True,
        [
            Option("num_samples", int, 10_000, "sampled w whose principal axes are taken", low=2),
            Option("chunk_size", int, 1000, "w mapped per batch", low=1),
        ],
        "principal axes of sampled w (global: ignores the region)",
    ),
)}


def available_methods() -> list[str]:
    """The registered method names, sorted."""
    return sorted(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The facts of method ``name``.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(available_methods())}")
    return _REGISTRY[name]


def method_options(name: str) -> dict[str, Any]:
    """Option names of method ``name`` mapped to their defaults."""
    return method_info(name).defaults


def method_needs(name: str) -> frozenset[str]:
    """What method ``name`` reads (keys of :data:`NEEDS`)."""
    return method_info(name).needs


def parse_option_pairs(method: str, pairs: Sequence[str] | str) -> dict[str, Any]:
    """``NAME=VALUE`` texts (a list, or one comma-separated string) as typed options of ``method``.

    Raises
    ------
    ValueError
        For a pair without ``=``, an unknown option or a value it does not take.
    """
    if isinstance(pairs, str):
        pairs = _split_pairs(pairs)
    values: dict[str, Any] = {}
    for pair in pairs:
        name, equals, text = pair.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"method options are NAME=VALUE, got {pair!r}")
        values[name.strip()] = text
    return method_info(method).parse_options(values)


def _split_pairs(text: str) -> list[str]:
    """``"a=1,layers=[0,1],b=x"`` -> ``["a=1", "layers=[0,1]", "b=x"]``: commas inside brackets and
    commas not followed by ``NAME=`` belong to the value."""
    pairs: list[str] = []
    depth = start = 0
    for index, char in enumerate(text):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "," and depth == 0 and re.match(r"\s*[A-Za-z_]\w*\s*=", text[index + 1:]):
            pairs.append(text[start:index])
            start = index + 1
    pairs.append(text[start:])
    return [pair.strip() for pair in pairs if pair.strip()]


def run_method(name: str, problem: "RegionProblem", num_directions: int = 1, seed: int = 0,
               **options: Any) -> "MethodResult":
    """Run method ``name`` on ``problem``; returns ``num_directions`` ranked unit directions.

    Parameters
    ----------
    name : str
        A registered method.
    problem : RegionProblem
        The region's Grams (and the generator, for methods that need it).
    num_directions : int
        How many directions, in ``[1, d]``.
    seed : int
        Seeds every random choice of the method.
    **options
        The method's options (:func:`method_options`), as values or text.

    Raises
    ------
    ValueError
        For an unknown method or option, a bad option value, a wrong ``num_directions``, or a
        problem that lacks what the method needs.
    """
    from otresefa.methods.base import MethodResult, RegionProblem, check_result

    info = method_info(name)
    parsed = info.parse_options(options)
    if not isinstance(problem, RegionProblem):
        raise ValueError(f"problem must be a RegionProblem, got {type(problem).__name__}")
    dim = problem.dim
    if not _is_whole(num_directions) or not 1 <= num_directions <= dim:
        raise ValueError(f"num_directions must be an integer in [1, {dim}], got {num_directions!r}")
    if "generator" in info.needs and problem.generator is None:
        raise ValueError(f"method {name!r} needs a generator: RegionProblem(generator=G)")
    result = info.function()(problem, int(num_directions), int(seed), **{**info.defaults, **parsed})
    if not isinstance(result, MethodResult):
        raise RuntimeError(f"method {name!r} returned {type(result).__name__}, not a MethodResult")
    check_result(name, result, int(num_directions), dim)
    return result
