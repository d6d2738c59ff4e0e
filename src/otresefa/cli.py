"""The ``otresefa`` command line: a thin layer over the library's public functions.

Every command catches the library's input errors and prints them as one clear line (exit code 2)
instead of a traceback; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import inspect
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Local image editing with StyleGAN2: region semantic discovery by optimal transport (OT-ReSeFa).",
)

CHECKPOINT_HELP = "checkpoint file (NVIDIA .pkl, rosinality .pt, otresefa .safetensors) or a built-in model name"
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError)


def friendly_errors(command: Callable) -> Callable:
    """Turn the library's input errors into one readable line and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = kwargs.pop("debug", False)
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            if debug:
                raise
            message = error.args[0] if isinstance(error, KeyError) and error.args else error
            typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
            raise typer.Exit(code=2) from None

    # expose --debug on every command
    signature = inspect.signature(command)
    debug_param = inspect.Parameter(
        "debug", inspect.Parameter.KEYWORD_ONLY, default=False,
        annotation=bool,
    )
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), debug_param])
    wrapper.__annotations__ = {**command.__annotations__, "debug": bool}
    return wrapper


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``["lam=4", "within=foreground"]`` -> ``{"lam": 4, "within": "foreground"}`` (JSON values when they parse)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"method options are NAME=VALUE, got {pair!r}")
        name, text = pair.split("=", 1)
        try:
            options[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            options[name.strip()] = text
    return options


def _load(checkpoint: str, device: Optional[str]):
    from otresefa.checkpoints import load_generator

    return load_generator(checkpoint, device=device)


@app.command()
@friendly_errors
def demo(
    out: Path = typer.Option(Path("otresefa-demo"), "--out", "-o", help="output folder"),
    checkpoint: str = typer.Option("synthfaces", "--checkpoint", help=CHECKPOINT_HELP),
    seed: Optional[int] = typer.Option(None, "--seed", "-s", help="the sample to edit (default: the first from 4 on where mouth and eyes are found)"),
    quick: bool = typer.Option(False, "--quick", help="fewer OT-ReSeFa iterations and GIF frames"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Discover mouth and eyes edits on the built-in model with OT-ReSeFa and ReSeFa; write pictures and index.html."""
    from otresefa.demo import run_demo

    run_demo(out, checkpoint=checkpoint, seed=seed, quick=quick, overwrite=overwrite, device=device)


@app.command()
@friendly_errors
def discover(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    seed: str = typer.Option("4", "--seed", "-s", help="seed(s) of the sample(s); several ('0-9') average their Gram matrices"),
    region: str = typer.Option("mouth", "--region", "-r", help="preset name, 'box:row,col,height,width' or a mask image"),
    method: str = typer.Option("ot-resefa", "--method", "-m", help="discovery method (see `otresefa methods`)"),
    num_directions: int = typer.Option(5, "--num-directions", "-k", help="how many directions"),
    out: Path = typer.Option(Path("otresefa-discover"), "--out", "-o", help="output folder"),
    option: list[str] = typer.Option([], "--option", help="method option NAME=VALUE (repeatable), e.g. lam=4"),
    method_seed: int = typer.Option(0, "--method-seed", help="seed of the method's own random choices"),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi", help="truncation of the sample's w"),
    size: int = typer.Option(256, "--size", help="Jacobian size (images larger than this are down-sampled)"),
    layers: Optional[str] = typer.Option(None, "--layers", help="ws indices to perturb, e.g. '0-7' (default all)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="recompute the Jacobian even when cached"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Discover directions that edit a region of a sample; writes the directions and a preview strip."""
    from otresefa.latents import parse_seeds
    from otresefa.pipelines import discover_report, parse_layers

    G = _load(checkpoint, device)
    discover_report(
        G, parse_seeds(seed), region, method, out, num_directions=num_directions, options=parse_options(option),
        method_seed=method_seed, truncation_psi=truncation_psi, size=size, layers=parse_layers(layers, G.num_ws),
        cache=not no_cache, overwrite=overwrite,
    )


@app.command()
@friendly_errors
def edit(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    directions: Path = typer.Option(..., "--directions", "-d", help="directions file (.npy, with its .json sidecar if any)"),
    index: str = typer.Option("0", "--index", "-i", help="direction index or indices ('0,2')"),
    seeds: str = typer.Option("0-3", "--seeds", "-s", help="seeds to edit, e.g. '0-3,7'"),
    alphas: str = typer.Option("-3:3:7", "--alphas", "-a", help="strengths 'start:stop:count' or '-3,0,3'"),
    layers: Optional[str] = typer.Option(None, "--layers", help="ws indices that receive the edit, e.g. '0-7'"),
    region: Optional[str] = typer.Option(None, "--region", "-r", help="region for the locality views (default: the directions' own)"),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi"),
    fps: float = typer.Option(12, "--fps", help="animation frames per second"),
    no_video: bool = typer.Option(False, "--no-video", help="skip the MP4 files"),
    out: Path = typer.Option(Path("otresefa-edit"), "--out", "-o", help="output folder"),
    device: Optional[str] = typer.Option(None, "--device"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output folder"),
) -> None:
    """Render strips, sweeps (PNG, GIF, MP4) and locality views of edits along saved directions."""
    from otresefa.directions import Directions
    from otresefa.pipelines import edit_report

    G = _load(checkpoint, device)
    found = Directions.load(directions, w_dim=G.w_dim)
    indices = [int(i) for i in index.split(",") if i.strip()]
    edit_report(G, found, out, seeds, alphas, index=indices, layers=layers, truncation_psi=truncation_psi, fps=fps,
                region=region, video=not no_video, overwrite=overwrite)


@app.command()
@friendly_errors
def compare(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    seed: int = typer.Option(4, "--seed", "-s"),
    region: str = typer.Option("mouth", "--region", "-r"),
    methods: str = typer.Option("ot-resefa,resefa,lowrankgan", "--methods", "-m", help="comma-separated methods"),
    num_directions: int = typer.Option(1, "--num-directions", "-k", help="directions shown per method"),
    alphas: str = typer.Option("-3:3:5", "--alphas", "-a"),
    layers: Optional[str] = typer.Option(None, "--layers"),
    truncation_psi: float = typer.Option(0.7, "--truncation-psi"),
    size: int = typer.Option(256, "--size", help="Jacobian size"),
    out: Path = typer.Option(Path("otresefa-compare"), "--out", "-o"),
    device: Optional[str] = typer.Option(None, "--device"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Discover with several methods on one sample and region; render the comparison grid and locality views."""
    from otresefa.pipelines import compare_methods, parse_layers

    G = _load(checkpoint, device)
    compare_methods(G, seed, region, methods, out, num_directions=num_directions, alphas=alphas,
                    layers=parse_layers(layers, G.num_ws), truncation_psi=truncation_psi, size=size,
                    overwrite=overwrite)


@app.command()
@friendly_errors
def train(
    out: Path = typer.Option(Path("runs/synthfaces"), "--out", "-o", help="run folder (resumed when it has a checkpoint)"),
    kimg: float = typer.Option(100.0, "--kimg", help="train until this many thousand images have been seen"),
    resolution: int = typer.Option(64, "--resolution"),
    w_dim: int = typer.Option(512, "--w-dim", help="z and w dimension"),
    mapping_layers: int = typer.Option(2, "--mapping-layers"),
    channel_base: int = typer.Option(2048, "--channel-base"),
    channel_max: int = typer.Option(128, "--channel-max"),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="per-pixel noise inputs in the generator"),
    batch: int = typer.Option(16, "--batch"),
    lr: float = typer.Option(0.0025, "--lr", help="Adam learning rate of G and D"),
    gamma: Optional[float] = typer.Option(None, "--gamma", help="R1 weight (default 0.0002 * resolution^2 / batch)"),
    ema_kimg: float = typer.Option(5.0, "--ema-kimg", help="half-life of the generator's moving average"),
    snapshot_kimg: float = typer.Option(4.0, "--snapshot-kimg", help="checkpoint and sample grid interval"),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(2, "--threads", help="CPU threads"),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last", help="NHWC memory layout (speed only)"),
    compile: bool = typer.Option(False, "--compile/--no-compile", help="torch.compile the main passes (speed only; compiling takes minutes)"),
    prefetch: int = typer.Option(2, "--prefetch", help="minibatches rendered ahead in a background thread (speed only)"),
    resume: bool = typer.Option(True, "--resume/--restart", help="continue from the run folder's checkpoint"),
) -> None:
    """Train a StyleGAN2 on the built-in synthetic-face renderer (resumable; sample grids and logs in the run folder)."""
    from otresefa.training.loop import TrainingConfig
    from otresefa.training.loop import train as run_training

    config = TrainingConfig(
        out_dir=str(out), total_kimg=kimg, resolution=resolution, z_dim=w_dim, w_dim=w_dim,
        mapping_layers=mapping_layers, channel_base=channel_base, channel_max=channel_max, use_noise=noise, batch_size=batch,
        lr=lr, r1_gamma=gamma, ema_kimg=ema_kimg, snapshot_kimg=snapshot_kimg, seed=seed, threads=threads, device=device,
        channels_last=channels_last, compile=compile, prefetch=prefetch,
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

    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    typer.echo(f"generator written to {export_checkpoint(run, out, domain=domain, overwrite=overwrite)}")


@app.command()
@friendly_errors
def benchmark(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    out: Path = typer.Option(Path("otresefa-benchmark"), "--out", "-o", help="results folder (finished cells are reused)"),
    quick: bool = typer.Option(False, "--quick", help="tiny sizes, one replicate (a smoke test)"),
    regions: str = typer.Option("mouth,nose,eyes", "--regions", help="comma-separated regions"),
    methods: Optional[str] = typer.Option(None, "--methods", help="';'-separated method specs, e.g. 'ot-resefa:within=foreground;resefa'"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="replicates, e.g. '0-2'"),
    num_real: Optional[int] = typer.Option(None, "--num-real", help="real images (paper: 1000)"),
    num_edited: Optional[int] = typer.Option(None, "--num-edited", help="edited images per cell (paper: 500)"),
    inception_weights: Optional[Path] = typer.Option(None, "--inception-weights", help="local FID Inception-v3 weights file"),
    real: str = typer.Option("auto", "--real", help="'auto', 'generator', or a folder of real images"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda"),
) -> None:
    """Run the paper's Table-1 protocol (FID/KID, locality, semantics) for every method, region and sign."""
    from otresefa.benchmark import BenchmarkConfig, run_benchmark
    from otresefa.latents import parse_seeds

    config = BenchmarkConfig(
        out=out, generator=checkpoint, quick=quick, regions=[r.strip() for r in regions.split(",") if r.strip()],
        methods=None if methods is None else [m.strip() for m in methods.split(";") if m.strip()],
        seeds=None if seeds is None else parse_seeds(seeds), num_real=num_real, num_edited=num_edited,
        inception_weights=inception_weights, real=real, device=device,
    )
    results = run_benchmark(config)
    typer.echo(f"results in {results.out} ({results.computed} cells computed, {results.reused} reused)")


@app.command()
@friendly_errors
def ui(
    checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(7860, "--port"),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads (1 is fastest on a busy machine)"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda"),
) -> None:
    """Start the local browser editor (no telemetry, no sharing, no external requests)."""
    if threads:
        import torch

        torch.set_num_threads(threads)
    from otresefa.ui.app import launch

    launch(checkpoint, host=host, port=port, device=device)


@app.command()
def methods() -> None:
    """List the discovery methods and their options."""
    from otresefa.methods import available_methods, method_needs, method_options

    for name in available_methods():
        options = ", ".join(f"{k}={v!r}" for k, v in method_options(name).items())
        typer.echo(f"{name:12s} (needs {method_needs(name)}): {options}")


@app.command()
@friendly_errors
def info(checkpoint: str = typer.Argument("synthfaces", help=CHECKPOINT_HELP)) -> None:
    """Show a checkpoint's architecture."""
    G = _load(checkpoint, None)
    typer.echo(json.dumps({"checkpoint": G.checkpoint_id, "num_ws": G.num_ws, **G.init_kwargs}, indent=2))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())
