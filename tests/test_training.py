"""Discriminator, StyleGAN2 losses, and the resumable training loop (tiny networks, CPU)."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from typer.testing import CliRunner

from otresefa.checkpoints import load_generator
from otresefa.cli import app
from otresefa.models.discriminator import Discriminator, MinibatchStdLayer
from otresefa.models.generator import Generator
from otresefa.training.loop import (
    export_checkpoint,
    ConfigMismatchError,
    SeededBatchStream,
    Trainer,
    TrainingCheckpointError,
    TrainingConfig,
    batch_seed,
    blob_sampler,
    train,
)
from otresefa.training.loss import (
    StyleGAN2Loss,
    d_logistic_loss,
    g_nonsaturating_loss,
    lazy_regularization,
    mix_styles,
    r1_penalty,
)


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """Tiny networks gain nothing from two threads, and on a busy shared machine two spinning OpenMP
    threads slow these tests down by an order of magnitude."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_discriminator(resolution: int = 16, seed: int = 0) -> Discriminator:
    torch.manual_seed(seed)
    return Discriminator(c_dim=0, img_resolution=resolution, img_channels=3, channel_base=8 * resolution, channel_max=16)


def tiny_config(out_dir, **overrides) -> TrainingConfig:
    kwargs = dict(
        out_dir=str(out_dir), resolution=16, z_dim=32, w_dim=32, mapping_layers=2, channel_base=128, channel_max=16,
        batch_size=8, r1_gamma=1.0, ema_kimg=0.05, total_kimg=0.2, snapshot_kimg=0.1, grid_size=(4, 2),
        threads=1, device="cpu", seed=3,
    )
    kwargs.update(overrides)
    return TrainingConfig(**kwargs)


# --- discriminator -------------------------------------------------------------------------------------
def test_discriminator_shape_names_and_gradient_flow():
    D = tiny_discriminator()
    names = set(D.state_dict())
    for name in ("b16.fromrgb.weight", "b16.conv0.weight", "b16.conv1.weight", "b16.skip.weight", "b8.conv1.weight",
                 "b4.conv.weight", "b4.fc.weight", "b4.out.weight"):
        assert name in names
    assert not any(n.startswith("b8.fromrgb") for n in names), "fromRGB only at the top resolution"
    img = torch.randn(8, 3, 16, 16, requires_grad=True)
    logits = D(img)
    assert logits.shape == (8, 1)
    logits.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    for name, p in D.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, f"no gradient reaches {name}"
    with pytest.raises(ValueError, match="img must have shape"):
        D(torch.randn(8, 3, 8, 8))


def test_minibatch_std_layer():
    x = torch.randn(8, 6, 4, 4)
    y = MinibatchStdLayer(group_size=4, num_channels=2)(x)
    assert y.shape == (8, 8, 4, 4)
    assert torch.equal(y[:, :6], x)
    # Sample n is in group n mod 2 (groups {0,2,4,6} and {1,3,5,7}); statistic of channel slice 1.
    members = x[[1, 3, 5, 7], 3:6]
    expected = (members.var(dim=0, unbiased=False) + 1e-8).sqrt().mean()
    torch.testing.assert_close(y[5, 7], expected.expand(4, 4))
    torch.testing.assert_close(y[1, 7], y[7, 7])
    with pytest.raises(ValueError, match="not divisible"):
        MinibatchStdLayer(4, 1)(torch.randn(6, 6, 4, 4))


def test_conditional_discriminator():
    torch.manual_seed(0)
    D = Discriminator(c_dim=5, img_resolution=8, img_channels=3, channel_base=64, channel_max=16,
                      mapping_kwargs=dict(num_layers=2))
    assert D(torch.randn(4, 3, 8, 8), torch.randn(4, 5)).shape == (4, 1)
    with pytest.raises(ValueError, match="conditional"):
        D(torch.randn(4, 3, 8, 8))


# --- losses --------------------------------------------------------------------------------------------
def test_logistic_losses_sign_behaviour():
    logits = torch.tensor([[-3.0], [0.0], [3.0]])
    real, fake = d_logistic_loss(logits, logits)
    assert torch.all(real[1:] < real[:-1]), "D's real loss falls as real logits rise"
    assert torch.all(fake[1:] > fake[:-1]), "D's fake loss rises with fake logits"
    g = g_nonsaturating_loss(logits)
    assert torch.all(g[1:] < g[:-1]), "G's loss falls as D scores fakes as real"
    torch.testing.assert_close(real[1], torch.tensor([math.log(2.0)]))


def test_discriminator_learns_two_colours():
    D = tiny_discriminator(resolution=8)
    opt = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(0)
    red = torch.tensor([1.0, -1.0, -1.0])[None, :, None, None]
    blue = torch.tensor([-1.0, -1.0, 1.0])[None, :, None, None]
    losses = []
    for _ in range(15):
        real = red + 0.1 * torch.randn(8, 3, 8, 8, generator=gen)
        fake = blue + 0.1 * torch.randn(8, 3, 8, 8, generator=gen)
        loss_real, loss_fake = d_logistic_loss(D(real), D(fake))
        loss = loss_real.mean() + loss_fake.mean()
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_r1_penalty_zero_for_constant_discriminator():
    D = tiny_discriminator()
    with torch.no_grad():
        D.b4.out.weight.zero_()
        D.b4.out.bias.fill_(0.7)
    penalty, logits = r1_penalty(D, torch.randn(8, 3, 16, 16))
    torch.testing.assert_close(logits, torch.full((8, 1), 0.7))
    assert torch.equal(penalty, torch.zeros(8))
    # And positive for an ordinary D.
    penalty, _ = r1_penalty(tiny_discriminator(), torch.randn(8, 3, 16, 16))
    assert torch.all(penalty > 0)


def test_lazy_regularization_adjustment():
    lr, betas = lazy_regularization(0.0025, (0.0, 0.99), 16)
    assert lr == pytest.approx(0.0025 * 16 / 17)
    assert betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    assert lazy_regularization(0.0025, (0.0, 0.99), None) == (0.0025, (0.0, 0.99))


def test_style_mixing_crossover():
    torch.manual_seed(0)
    ws, ws2 = torch.zeros(64, 6, 4), torch.ones(64, 6, 4)
    assert torch.equal(mix_styles(ws, ws2, 0.0), ws)
    mixed = mix_styles(ws, ws2, 1.0)
    per_layer = mixed[:, :, 0]  # [N, num_ws], 0 before the crossover and 1 from it on
    assert torch.all(per_layer[:, 0] == 0), "the crossover point is at least 1"
    assert torch.all(per_layer[:, 1:] >= per_layer[:, :-1]), "a single crossover per sample"
    assert torch.all(per_layer[:, -1] == 1)
    assert len(set(per_layer.sum(1).tolist())) > 2, "crossover points vary"
    some = mix_styles(ws, ws2, 0.5)[:, -1, 0]
    assert 0 < some.sum() < 64


def test_all_loss_phases_are_finite_and_update_state():
    torch.manual_seed(0)
    G = Generator(z_dim=32, c_dim=0, w_dim=32, img_resolution=16, img_channels=3, mapping_kwargs=dict(num_layers=2),
                  synthesis_kwargs=dict(channel_base=128, channel_max=16))
    D = tiny_discriminator()
    loss = StyleGAN2Loss(G, D, r1_gamma=1.0)
    assert loss.g_phases() == [("Gmain", 1), ("Greg", 4)] and loss.d_phases() == [("Dmain", 1), ("Dreg", 16)]
    real, z = torch.randn(8, 3, 16, 16), torch.randn(8, 32)
    w_avg = G.mapping.w_avg.clone()
    for phase, module in (("Gmain", G), ("Greg", G), ("Dmain", D), ("Dreg", D), ("Gboth", G), ("Dboth", D)):
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        stats = loss.accumulate_gradients(phase, real, z, gain=4.0)
        assert stats and all(math.isfinite(v) for v in stats.values()), (phase, stats)
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads), phase
        other = D if module is G else G
        assert all(p.grad is None for p in other.parameters()), f"{phase} must not touch the other network"
        assert all(p.requires_grad for p in D.parameters())
    assert not torch.equal(G.mapping.w_avg, w_avg), "the G phase updates w_avg"
    assert loss.pl_mean.item() > 0


# --- data stream ---------------------------------------------------------------------------------------
def test_seeded_stream_is_deterministic_and_resumable():
    assert batch_seed(1, 5) == batch_seed(1, 5) != batch_seed(1, 6)
    stream = SeededBatchStream(blob_sampler(8), seed=1)
    batches = [stream.next_batch(4) for _ in range(3)]
    assert batches[0].shape == (4, 3, 8, 8) and batches[0].min() >= -1 and batches[0].max() <= 1
    assert not torch.equal(batches[0], batches[1])
    resumed = SeededBatchStream(blob_sampler(8), seed=1)
    resumed.load_state_dict({"index": 2, "seed": 1})
    assert torch.equal(resumed.next_batch(4), batches[2])


def test_prefetching_stream_gives_the_same_batches_and_state():
    plain = SeededBatchStream(blob_sampler(8), seed=1)
    ahead = SeededBatchStream(blob_sampler(8), seed=1, prefetch=2)
    try:
        for _ in range(3):
            assert torch.equal(ahead.next_batch(4), plain.next_batch(4))
        assert ahead.state_dict() == plain.state_dict() == {"index": 3, "seed": 1}
        assert [index for index, _, _ in ahead._pending] == [3, 4], "two minibatches in flight"
        ahead.load_state_dict({"index": 1, "seed": 1})  # repositioning drops what was rendered ahead
        assert torch.equal(ahead.next_batch(4), SeededBatchStream(blob_sampler(8), seed=1, index=1).next_batch(4))
        assert ahead.next_batch(2).shape[0] == 2, "another batch size is rendered afresh"
    finally:
        ahead.close()
    assert ahead._worker is None and not ahead._pending
    with pytest.raises(ValueError, match="prefetch must be >= 0"):
        TrainingConfig(prefetch=-1)


def test_speed_options_compute_the_same_step():
    """channels_last and the fused Adam change the layout and kernels, not the numbers (to rounding)."""
    real = blob_sampler(16)(8, 0)
    results = []
    for speed in (dict(channels_last=False, fused_adam=False), dict(channels_last=True, fused_adam=True)):
        trainer = Trainer(tiny_config("unused", **speed))
        torch.manual_seed(5)
        stats = trainer.step(real)  # step 0 runs all four phases
        results.append((stats, trainer.G.state_dict(), trainer.D.state_dict()))
    (stats_a, G_a, D_a), (stats_b, G_b, D_b) = results
    for key in stats_a:
        assert stats_a[key] == pytest.approx(stats_b[key], rel=1e-4, abs=1e-6), key
    for name in G_a:
        torch.testing.assert_close(G_a[name], G_b[name], rtol=1e-4, atol=1e-5, msg=name)
    for name in D_a:
        torch.testing.assert_close(D_a[name], D_b[name], rtol=1e-4, atol=1e-5, msg=name)


# --- training loop -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    path = train(tiny_config(out), resume=False, progress=False, data_source=blob_sampler(16),
                 metrics_hook=lambda G_ema, kimg: {"hook_kimg": kimg, "hook_uses_rng": torch.rand([])})
    return out, path


def test_tiny_training_run_writes_outputs(uninterrupted_run):
    out, path = uninterrupted_run
    assert path.is_file() and path.parent == out
    assert (out / "checkpoint.pt").is_file() and not (out / "checkpoint.pt.tmp").exists()
    assert (out / "reals.png").is_file() and (out / "samples-000000.png").is_file()
    assert (out / "samples-000000.104.png").is_file() and (out / "samples-000000.200.png").is_file()
    lines = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [line["nimg"] for line in lines] == [104, 200]
    for key in ("kimg", "time_s", "sec_per_kimg", "loss_G", "loss_D", "pl_mean", "r1_penalty", "hook_kimg"):
        assert key in lines[-1], key
    assert lines[-1]["hook_kimg"] == pytest.approx(0.2)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["cur_nimg"] == 200 and state["batch_idx"] == 25
    G = load_generator(path)
    torch.testing.assert_close(G.state_dict(), state["G_ema"])
    assert G.training_metadata["domain"] == "custom"  # trained on blobs, not the face renderer


def test_export_checkpoint_writes_a_loadable_generator(uninterrupted_run, tmp_path):
    out, _ = uninterrupted_run
    path = export_checkpoint(out / "checkpoint.pt", tmp_path / "g.safetensors", domain="synthfaces")
    G = load_generator(path)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(G.state_dict(), state["G_ema"])
    assert G.training_metadata["kimg"] == pytest.approx(0.2) and G.training_metadata["domain"] == "synthfaces"
    with pytest.raises(FileExistsError):
        export_checkpoint(out / "checkpoint.pt", path)


def test_resume_is_bit_identical(uninterrupted_run, tmp_path):
    full_out, _ = uninterrupted_run
    hook = lambda G_ema, kimg: {"hook_uses_rng": torch.randn([3]).sum().item()}  # noqa: E731
    train(tiny_config(tmp_path, total_kimg=0.1), resume=True, progress=False, data_source=blob_sampler(16),
          metrics_hook=hook)
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["cur_nimg"] == 104
    # Continue with a longer total and another snapshot interval (run-only fields may change).
    train(tiny_config(tmp_path, total_kimg=0.2, snapshot_kimg=0.05), resume=True, progress=False,
          data_source=blob_sampler(16))
    full = torch.load(full_out / "checkpoint.pt", weights_only=True)
    resumed = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert resumed["cur_nimg"] == full["cur_nimg"] == 200
    for key in ("G", "D", "G_ema"):
        for name, tensor in full[key].items():
            assert torch.equal(tensor, resumed[key][name]), f"{key}.{name} differs after resuming"
    for key in ("opt_G", "opt_D"):
        for idx, slot in full[key]["state"].items():
            for name, tensor in slot.items():
                assert torch.equal(tensor, resumed[key]["state"][idx][name]), f"{key}[{idx}].{name}"
    assert torch.equal(full["loss"]["pl_mean"], resumed["loss"]["pl_mean"])
    assert torch.equal(full["rng"]["torch"], resumed["rng"]["torch"])


def test_snapshots_keep_the_previous_checkpoint(uninterrupted_run):
    out, _ = uninterrupted_run
    previous = torch.load(out / "checkpoint-prev.pt", weights_only=True)
    assert previous["cur_nimg"] == 104 and torch.load(out / "checkpoint.pt", weights_only=True)["cur_nimg"] == 200


def copy_run(source, destination):
    """The run folder without its exported generator; returns the copy."""
    for name in ("checkpoint.pt", "checkpoint-prev.pt", "log.jsonl"):
        shutil.copy(source / name, destination / name)
    return destination


def test_corrupt_checkpoint_names_the_previous_one_and_resuming_from_it_is_exact(uninterrupted_run, tmp_path):
    full_out, _ = uninterrupted_run
    out = copy_run(full_out, tmp_path)
    data = (out / "checkpoint.pt").read_bytes()
    (out / "checkpoint.pt").write_bytes(data[: len(data) // 2])  # half-written
    with pytest.raises(TrainingCheckpointError) as excinfo:
        train(tiny_config(out), resume=True, progress=False, data_source=blob_sampler(16))
    message = str(excinfo.value)
    assert "\n" not in message
    assert f"{out / 'checkpoint.pt'} is corrupt or half-written" in message
    assert f"previous snapshot (0.104 kimg), move {out / 'checkpoint-prev.pt'} to {out / 'checkpoint.pt'}" in message
    # Following the advice continues the run exactly where the previous snapshot left it.
    (out / "checkpoint-prev.pt").replace(out / "checkpoint.pt")
    train(tiny_config(out), resume=True, progress=False, data_source=blob_sampler(16))
    full = torch.load(full_out / "checkpoint.pt", weights_only=True)
    resumed = torch.load(out / "checkpoint.pt", weights_only=True)
    for name, tensor in full["G_ema"].items():
        assert torch.equal(tensor, resumed["G_ema"][name]), name
    assert [json.loads(line)["nimg"] for line in (out / "log.jsonl").read_text().splitlines()] == [104, 200]


@pytest.mark.parametrize("damage, expected", [
    ("garbage", "is corrupt or half-written"),
    ("not_training", "is not a training checkpoint (missing G_init_kwargs, G, D"),
    ("missing", "checkpoint.pt does not exist; to resume from the previous snapshot (0.104 kimg)"),
    ("both", "the previous snapshot is damaged too"),
    ("wrong_shapes", "does not fit this run"),
])
def test_damaged_checkpoints_get_one_clear_line(uninterrupted_run, tmp_path, damage, expected):
    out = copy_run(uninterrupted_run[0], tmp_path)
    ckpt = out / "checkpoint.pt"
    if damage in ("garbage", "both"):
        ckpt.write_bytes(b"\x00not a checkpoint" * 100)
    if damage == "both":
        (out / "checkpoint-prev.pt").write_bytes(b"")
    if damage == "not_training":
        torch.save({"config": {}, "version": 1}, ckpt)
    if damage == "missing":
        ckpt.unlink()  # a crash between the two renames of a snapshot
    if damage == "wrong_shapes":
        state = torch.load(ckpt, weights_only=True)
        state["G"]["mapping.fc0.weight"] = torch.zeros(3, 3)
        torch.save(state, ckpt)
    with pytest.raises(TrainingCheckpointError, match="^cannot resume: ") as excinfo:
        train(tiny_config(out), resume=True, progress=False, data_source=blob_sampler(16))
    assert expected in str(excinfo.value) and "\n" not in str(excinfo.value)
    assert "--restart" in str(excinfo.value)


def test_cli_export_needs_overwrite_and_reports_bad_checkpoints(uninterrupted_run, tmp_path):
    out, _ = uninterrupted_run
    cli = CliRunner()
    target = tmp_path / "g.safetensors"
    result = cli.invoke(app, ["export", str(out), str(target)])  # a run folder: its checkpoint.pt
    assert result.exit_code == 0, result.output
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(load_generator(target).state_dict(), state["G_ema"])
    before = target.read_bytes()
    result = cli.invoke(app, ["export", str(out / "checkpoint-prev.pt"), str(target)])
    assert result.exit_code == 2 and result.output.strip() == f"error: {target} exists; pass --overwrite to replace it"
    assert target.read_bytes() == before
    result = cli.invoke(app, ["export", str(out / "checkpoint-prev.pt"), str(target), "--overwrite"])
    assert result.exit_code == 0 and load_generator(target).training_metadata["kimg"] == pytest.approx(0.104)
    broken = tmp_path / "broken.pt"
    broken.write_bytes((out / "checkpoint.pt").read_bytes()[:1000])
    result = cli.invoke(app, ["export", str(broken), str(tmp_path / "h.safetensors")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert f"{broken} is corrupt or half-written" in result.output and "Traceback" not in result.output


def test_cli_train_reports_a_corrupt_checkpoint(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    result = CliRunner().invoke(app, ["train", "--out", str(tmp_path), "--threads", "1", "--resolution", "8",
                                      "--w-dim", "16", "--channel-base", "64", "--channel-max", "8"])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1, result.output
    assert "is corrupt or half-written" in result.output and "there is no previous snapshot" in result.output


def test_resume_with_different_config_raises(uninterrupted_run):
    out, _ = uninterrupted_run
    with pytest.raises(ConfigMismatchError, match=r"\['batch_size', 'lr'\]") as excinfo:
        train(tiny_config(out, lr=0.001, batch_size=4), resume=True, progress=False, data_source=blob_sampler(16))
    assert "checkpoint 0.0025, requested 0.001" in str(excinfo.value)


def test_config_validation():
    with pytest.raises(ValueError, match="mbstd_group_size"):
        TrainingConfig(batch_size=6, mbstd_group_size=4)
    assert TrainingConfig(resolution=64, batch_size=32).effective_r1_gamma == pytest.approx(0.0002 * 64**2 / 32)


def test_default_source_is_the_face_renderer():
    from otresefa.training.loop import synthfaces_sampler

    sample = synthfaces_sampler(16)
    images = sample(4, batch_seed(0, 7))
    assert images.shape == (4, 3, 16, 16) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, sample(4, batch_seed(0, 7)))
