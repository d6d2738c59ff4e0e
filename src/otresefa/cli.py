"""The ``otresefa`` command line: a thin layer over the library's public functions.

Every command first reads and checks its arguments (:mod:`otresefa.parsing`, the method registry,
the output folder), which imports no PyTorch, so a typo is reported at once; then it loads the
model and calls the library.  The library's input errors are printed as one clear line (exit
code 2) instead of a traceback, its warnings as ``warning:`` lines; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import inspect
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Local image editing with StyleGAN: region semantic discovery by optimal transport (OT-ReSeFa).",
)

CHECKPOINT_HELP = ("checkpoint file (NVIDIA or TensorFlow .pkl, rosinality .pt, genforce/Hammer .pth, otresefa .safetensors) "
                   "or a built-in model name")
REGION_HELP = ("region: a name (segmented parts on the built-in model; ReSeFa's FFHQ boxes otherwise), "
               "'box:center_row,center_col,height,width' in 256-px coordinates, or a mask image (square)")
DEVICE_HELP = "cpu, cuda, cuda:N or mps (default: cpu)"


USER_ERRORS = (ValueError, KeyError, OSError)
"""What bad input raises (the library's errors are ValueError subclasses; files give OSError)."""


def _one_line(message: Any) -> str:
    return "; ".join(line.strip() for line in str(message).splitlines() if line.strip())


def friendly_errors(command: Callable) -> Callable:
    """Turn the library's input errors into one readable line and exit code 2, warnings into lines."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.pop("debug", False)

        def show_warning(message, category, filename, lineno, file=None, line=None):
            typer.secho(f"warning: {message}", err=True, fg=typer.colors.YELLOW)

        with warnings.catch_warnings():
            warnings.showwarning = show_warning
            try:
                return command(*args, **kwargs)
            except USER_ERRORS as error:
                if debug:
                    raise
                message = error.args[0] if isinstance(error, KeyError) and error.args else error
                if isinstance(error, OSError) and error.strerror:
                    message = f"{error.strerror}: {error.filename}" if error.filename else error.strerror
                typer.secho(f"error: {_one_line(message)}", err=True, fg=typer.colors.RED)
                raise typer.Exit(code=2) from None

    # expose --debug on every command
    signature = inspect.signature(command)
    debug_param = inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=bool)
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), debug_param])
    wrapper.__annotations__ = {**command.__annotations__, "debug": bool}
    return wrapper


def _load(checkpoint: str, device: Optional[str]):
    from otresefa.checkpoints import load_generator
    from otresefa.parsing import torch_device

    return load_generator(checkpoint, device=torch_device(device))


def _check_out(out: Path, overwrite: bool) -> None:
    from otresefa.outputs import check_output_folder

    check_output_folder(out, overwrite)


def _check_out_file(out: Path, overwrite: bool) -> None:
    """An output file that may be written: not an existing one unless ``overwrite``, in a writable folder."""
    from otresefa.outputs import check_output_folder

    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give the file to write")
    check_output_folder(out.parent, overwrite=True)


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise ValueError(f"{option} must be positive, got {value:g}")
    return value


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("otresefa-demo"), "--out", "-o", help="output folder"),
    checkpoint: str = typer.Option("synthfaces", "--checkpoint", help=CHECKPOINT_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", "-s", min=0, help="the sample to edit (default: the first "
                                       "from 4 on where mouth and eyes are found)"),
    quick: bool = typer.Option(False, "--quick", help="fewer OT-ReSeFa iterations and GIF frames"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Discover mouth and eyes edits on the built-in model with OT-ReSeFa and ReSeFa; write pictures and index.html."""
    from otresefa.parsing import parse_device

    parse_device(device)
    from otresefa.demo import run_demo

    run_demo(out, checkpoint=checkpoint, seed=seed, quick=quick, overwrite=overwrite, device=device)


@app.command()
@friendly_errors
def discover(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    seed: str = typer.Option("4", "--seed", "-s", help="seed(s) of the sample(s); several ('0-9') average their "
                             "Gram matrices"),
    region: str = typer.Option("mouth", "--region", "-r", help=REGION_HELP),
    method: Optional[str] = typer.Option(None, "--method", "-m", help="discovery method (see `otresefa methods`; "
                                         "default: the registry's default)"),
    num_directions: int = typer.Option(5, "--num-directions", "-k", min=1, help="how many directions"),
    out: Path = typer.Option(Path("otresefa-discover"), "--out", "-o", help="output folder"),
    option: list[str] = typer.Option([], "--option", help="method option NAME=VALUE (repeatable), e.g. lam=4"),
    method_seed: int = typer.Option(0, "--method-seed", min=0, help="seed of the method's own random choices"),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi", min=0.0, max=1.0, help="truncation of the "
                                         "sample's w"),
    size: int = typer.Option(256, "--size", min=4, help="Jacobian size (images larger than this are down-sampled)"),
    layers: Optional[str] = typer.Option(None, "--layers", help="ws indices to perturb, e.g. '0-7' (default all)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute the Jacobian even when cached"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Discover directions that edit a region of a sample; writes the directions and a preview strip."""
    from otresefa.methods import DEFAULT_METHOD, parse_option_pairs
    from otresefa.parsing import parse_device, parse_layers, parse_seeds

    method = method or DEFAULT_METHOD
    seeds, options = parse_seeds(seed, "--seed"), parse_option_pairs(method, option)
    layer_list = parse_layers(layers)
    parse_device(device)
    _check_out(out, overwrite)
    from otresefa.pipelines import discover_report

    G = _load(checkpoint, device)
    discover_report(
        G, seeds, region, method, out, num_directions=num_directions, options=options, method_seed=method_seed,
        truncation_psi=truncation_psi, size=size, layers=parse_layers(layer_list, G.num_ws), cache=not no_cache,
        overwrite=overwrite,
    )


@app.command()
@friendly_errors
def edit(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    directions: Path = typer.Option(..., "--directions", "-d", help="directions file (.npy, with its .json sidecar "
                                    "if any) or the output folder of `otresefa discover`"),
    index: str = typer.Option("0", "--index", "-i", help="direction index or indices ('0,2')"),
    seeds: str = typer.Option("0-3", "--seeds", "-s", help="seeds to edit, e.g. '0-3,7'"),
    alphas: str = typer.Option("-3:3:7", "--alphas", "-a", help="strengths 'start:stop:count' or '-3,0,3'"),
    layers: Optional[str] = typer.Option(None, "--layers", help="ws indices that receive the edit, e.g. '0-7'"),
    region: Optional[str] = typer.Option(None, "--region", "-r", help="region for the locality views (default: "
                                         "the directions' own); " + REGION_HELP),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi", min=0.0, max=1.0),
    fps: float = typer.Option(12, "--fps", help="animation frames per second (positive)"),
    no_video: bool = typer.Option(False, "--no-video", help="skip the MP4 files"),
    out: Path = typer.Option(Path("otresefa-edit"), "--out", "-o", help="output folder"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Render strips, sweeps (PNG, GIF, MP4) and locality views of edits along saved directions."""
    from otresefa.parsing import parse_alphas, parse_device, parse_indices, parse_layers, parse_seeds

    indices, seed_list, alpha_list = parse_indices(index, "--index"), parse_seeds(seeds), parse_alphas(alphas)
    layer_list = parse_layers(layers)
    _positive(fps, "--fps")
    parse_device(device)
    _check_out(out, overwrite)
    from otresefa.directions import Directions
    from otresefa.pipelines import edit_report

    found = Directions.load(directions)
    G = _load(checkpoint, device)
    if found.w_dim != G.w_dim:
        raise ValueError(f"the directions in {directions} have dimension {found.w_dim}, but this generator's w_dim "
                         f"is {G.w_dim}; were they discovered with another model?")
    edit_report(G, found, out, seed_list, alpha_list, index=indices, layers=layer_list, truncation_psi=truncation_psi,
                fps=fps, region=region, video=not no_video, overwrite=overwrite)


@app.command()
@friendly_errors
def compare(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    seed: int = typer.Option(4, "--seed", "-s", min=0),
    region: str = typer.Option("mouth", "--region", "-r", help=REGION_HELP),
    methods: str = typer.Option("ot-resefa,resefa,lowrankgan", "--methods", "-m", help="comma-separated methods"),
    num_directions: int = typer.Option(1, "--num-directions", "-k", min=1, help="directions shown per method"),
    alphas: str = typer.Option("-3:3:5", "--alphas", "-a"),
    layers: Optional[str] = typer.Option(None, "--layers"),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi", min=0.0, max=1.0),
    size: int = typer.Option(256, "--size", min=4, help="Jacobian size"),
    out: Path = typer.Option(Path("otresefa-compare"), "--out", "-o"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Discover with several methods on one sample and region; render the comparison grid and locality views."""
    from otresefa.methods import method_info
    from otresefa.parsing import parse_alphas, parse_device, parse_layers

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if not method_list:
        raise ValueError("no methods to compare (--methods)")
    for name in method_list:
        method_info(name)
    alpha_list, layer_list = parse_alphas(alphas), parse_layers(layers)
    parse_device(device)
    _check_out(out, overwrite)
    from otresefa.pipelines import compare_methods

    G = _load(checkpoint, device)
    compare_methods(G, seed, region, method_list, out, num_directions=num_directions, alphas=alpha_list,
                    layers=parse_layers(layer_list, G.num_ws), truncation_psi=truncation_psi, size=size,
                    overwrite=overwrite)


@app.command()
@friendly_errors
def train(
    out: Path = typer.Option(Path("runs/synthfaces"), "--out", "-o", help="run folder (resumed when it has a checkpoint)"),
    kimg: float = typer.Option(100.0, "--kimg", min=0.0, help="train until this many thousand images have been seen"),
    resolution: int = typer.Option(64, "--resolution"),
    w_dim: int = typer.Option(512, "--w-dim", min=1, help="z and w dimension"),
    mapping_layers: int = typer.Option(2, "--mapping-layers", min=1),
    channel_base: int = typer.Option(2048, "--channel-base", min=1),
    channel_max: int = typer.Option(128, "--channel-max", min=1),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="per-pixel noise inputs in the generator"),
    batch: int = typer.Option(16, "--batch", min=1),
    lr: float = typer.Option(0.0025, "--lr", min=0.0, help="Adam learning rate of G and D"),
    gamma: Optional[float] = typer.Option(None, "--gamma", min=0.0, help="R1 weight (default 0.0002 * resolution^2 "
                                          "/ batch)"),
    ema_kimg: float = typer.Option(5.0, "--ema-kimg", help="half-life of the generator's moving average"),
    snapshot_kimg: float = typer.Option(4.0, "--snapshot-kimg", help="checkpoint and sample grid interval"),
    seed: int = typer.Option(0, "--seed", min=0),
    threads: int = typer.Option(2, "--threads", min=1, help="CPU threads"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="NHWC memory layout (speed only)"),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the main passes (speed only; "
                                 "compiling takes minutes)"),
    prefetch: int = typer.Option(2, "--prefetch", min=0, help="minibatches rendered ahead in a background thread "
                                 "(speed only)"),
    resume: bool = typer.Option(True, "--resume/--restart", help="continue from the run folder's checkpoint"),
) -> None:
    """Train a StyleGAN2 on the built-in synthetic-face renderer (resumable; sample grids and logs in the run folder)."""
    from otresefa.parsing import parse_device

    if device != "auto":
        parse_device(device)
    from otresefa.training.loop import TrainingConfig
    from otresefa.training.loop import train as run_training

    config = TrainingConfig(
        out_dir=str(out), total_kimg=kimg, resolution=resolution, z_dim=w_dim, w_dim=w_dim,
        mapping_layers=mapping_layers, channel_base=channel_base, channel_max=channel_max, use_noise=noise,
        batch_size=batch, lr=lr, r1_gamma=gamma, ema_kimg=ema_kimg, snapshot_kimg=snapshot_kimg, seed=seed,
        threads=threads, device=device, channels_last=channels_last, compile=compile, prefetch=prefetch,
    )
    path = run_training(config, resume=resume)
    typer.echo(f"generator written to {path}")


@app.command()
@friendly_errors
def export(
    run: Path = typer.Argument(..., help="a training run folder or its checkpoint.pt (or checkpoint-prev.pt)"),
    out: Path = typer.Argument(..., help="generator file to write (.safetensors)"),
    domain: str = typer.Option("synthfaces", "--domain", help="domain recorded in the file's metadata"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing generator file"),
) -> None:
    """Write the moving-average generator (G_ema) of a training checkpoint as a generator file."""
    from otresefa.training.loop import export_checkpoint

    _check_out_file(out, overwrite)
    typer.echo(f"generator written to {export_checkpoint(run, out, domain=domain, overwrite=overwrite)}")


@app.command()
@friendly_errors
def benchmark(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    out: Path = typer.Option(Path("otresefa-benchmark"), "--out", "-o", help="results folder (finished cells are reused)"),
    quick: bool = typer.Option(False, "--quick", help="tiny sizes, one replicate (a smoke test)"),
    regions: str = typer.Option("mouth,nose,eyes", "--regions", help="comma-separated regions"),
    methods: Optional[str] = typer.Option(None, "--methods", help="';'-separated method specs, e.g. "
                                          "'ot-resefa:within=foreground;resefa'"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="replicates, e.g. '0-2'"),
    num_real: Optional[int] = typer.Option(None, "--num-real", min=2, help="real images (paper: 1000)"),
    num_edited: Optional[int] = typer.Option(None, "--num-edited", min=2, help="edited images per cell (paper: 500)"),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="local FID Inception-v3 "
                                                     "weights file"),
    real: str = typer.Option("auto", "--real", help="'auto', 'generator', or a folder of real images"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
) -> None:
    """Run the paper's Table-1 protocol (FID/KID, locality, semantics) for every method, region and sign."""
    from otresefa.parsing import parse_device, parse_seeds

    seed_list = None if seeds is None else parse_seeds(seeds)
    parse_device(device)
    from otresefa.benchmark import BenchmarkConfig, run_benchmark

    config = BenchmarkConfig(
        out=out, generator=checkpoint, quick=quick, regions=[r.strip() for r in regions.split(",") if r.strip()],
        methods=None if methods is None else [m.strip() for m in methods.split(";") if m.strip()],
        seeds=seed_list, num_real=num_real, num_edited=num_edited, inception_weights=inception_weights, real=real,
        device=device,
    )
    results = run_benchmark(config)
    typer.echo(f"results in {results.out} ({results.computed} cells computed, {results.reused} reused)")


@app.command()
@friendly_errors
def ui(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(7860, "--port", min=1, max=65535),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads (1 is fastest on a "
                                          "busy machine)"),
    device: Optional[str] = typer.Option(None, "--device", help=DEVICE_HELP),
) -> None:
    """Start the local browser editor (no telemetry, no sharing, no external requests)."""
    from otresefa.parsing import parse_device, torch_device

    parse_device(device)
    torch_device(device)
    if threads:
        import torch

        torch.set_num_threads(threads)
    from otresefa.ui.app import launch

    launch(checkpoint, host=host, port=port, device=device)


@app.command()
def methods() -> None:
    """List the discovery methods: what each does, what it needs, and its options."""
    from otresefa.methods import NEEDS, available_methods, method_info

    for name in available_methods():
        info = method_info(name)
        typer.echo(f"{name} ({info.title}): {info.summary}")
        typer.echo(f"  needs: {'; '.join(NEEDS[need] for need in sorted(info.needs))}")
        typer.echo(f"  seeded: {'yes (--method-seed)' if info.seeded else 'no (deterministic)'}")
        for option in info.options:
            typer.echo(f"  {option.describe()}")


@app.command()
@friendly_errors
def info(checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP)) -> None:
    """Show the format a checkpoint was read as, its architecture and its constructor arguments (JSON)."""
    import json

    G = _load(checkpoint, None)
    typer.echo(json.dumps({"checkpoint": G.checkpoint_id, "format": G.checkpoint_format,
                           "architecture": G.architecture(), "init_kwargs": G.init_kwargs}, indent=2))


@app.command()
@friendly_errors
def convert(
    source: str = typer.Argument(..., help=CHECKPOINT_HELP),
    out: Path = typer.Argument(..., help="the .safetensors file to write"),
    network: str = typer.Option("G_ema", "--network", help="which network of a pickle: G_ema (moving average) or G"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing OUT"),
) -> None:
    """Convert any supported checkpoint to the project's safetensors format (never unpickles, loads a little faster)."""
    from otresefa.checkpoints import load_generator

    _check_out_file(out, overwrite)
    if out.suffix != ".safetensors":
        raise ValueError(f"the output must be a .safetensors file, got {out}")
    G = load_generator(source, network=network)
    metadata = {"converted_from": str(source), "source_format": G.checkpoint_format, "source_checkpoint": G.checkpoint_id,
                "network": network}
    G.save(out, metadata=metadata, overwrite=overwrite)
    typer.echo(f"{G.checkpoint_format} -> {out} ({G.architecture()['family']}, {G.img_resolution}px)")


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover - python -m otresefa.cli
    main()
