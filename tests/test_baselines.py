"""Registry, region problem validation, ReSeFa, LowRankGAN (RPCA), SeFa, GANSpace, and recovery of a
planted local direction by the region methods on a synthetic linear generator."""

import json
import math

import numpy as np

import pytest
import scipy.linalg
import torch

from otresefa.methods import available_methods, method_needs, method_options, run_method
from otresefa.methods.base import RegionProblem, orient_signs
from otresefa.methods.lowrankgan import rpca, scaled_sparsity
from otresefa.methods.resefa import generalized_eigenvectors
from otresefa.methods.sefa import style_weights


@pytest.fixture(autouse=True)
def single_thread():
    """These problems are tiny: thread hand-offs would cost more than the arithmetic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def random_spd(dim, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(dim + 5, dim, generator=generator, dtype=torch.float64)
    return x.T @ x / (dim + 5)


def linear_generator_grams(height=24, width=24, dim=32, num_global=3, seed=0):
    """A linear "generator" with Jacobian J [H, W, d]: a planted direction n* that moves only the
    pixels of a mask (strongly), plus global directions that move every pixel. Returns
    (A_F, A_B, n*, mask) with the pixel-count-normalised Grams of the mask and of the rest."""
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, num_global + 1, generator=generator, dtype=torch.float64))
    planted, global_directions = basis[:, 0], basis[:, 1:].T  # [d], [g, d]
    mask = torch.zeros(height, width, dtype=torch.bool)
    mask[8:16, 9:17] = True
    amplitude = 3.0 * (1.0 + torch.rand(height, width, generator=generator, dtype=torch.float64))
    jacobian = (mask * amplitude)[..., None] * planted  # [H, W, d]
    for direction in global_directions:
        coefficient = torch.randn(height, width, generator=generator, dtype=torch.float64)
        jacobian = jacobian + coefficient[..., None] * direction
    foreground, background = jacobian[mask], jacobian[~mask]  # [N_f, d], [N_b, d]
    return (foreground.T @ foreground / len(foreground), background.T @ background / len(background),
            planted, mask)


# --- registry and problem validation -------------------------------------------------------

def test_registry_lists_all_methods_with_their_options():
    assert available_methods() == ["ganspace", "lowrankgan", "ot-resefa", "resefa", "sefa"]
    assert method_options("ot-resefa")["lam"] == 2.0
    assert method_options("ot-resefa")["sinkhorn_iter"] == 10
    assert method_options("ot-resefa")["max_iter"] == 100
    assert method_options("ot-resefa")["within"] == "both"
    assert method_needs("sefa") == method_needs("ganspace") == {"generator"}
    assert method_needs("resefa") == {"jacobians"}
    json.dumps({name: method_options(name) for name in available_methods()})


def test_unknown_method_and_option():
    problem = RegionProblem(random_spd(4, 0), random_spd(4, 1))
    with pytest.raises(ValueError, match=r"unknown method 'pca'; known methods: ganspace, lowrankgan, ot-resefa"):
        run_method("pca", problem)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['lambda'\] for method 'ot-resefa'; valid options: .*lam"):
        run_method("ot-resefa", problem, lam=2.0, **{"lambda": 1.0})
    with pytest.raises(ValueError, match=r"valid options: tau"):
        run_method("resefa", problem, sparsity=0.1)


@pytest.mark.parametrize("count", [0, 5, -1, 1.5])
def test_num_directions_out_of_range(count):
    problem = RegionProblem(random_spd(4, 0), random_spd(4, 1))
    with pytest.raises(ValueError, match=r"num_directions must be an integer in \[1, 4\]"):
        run_method("resefa", problem, num_directions=count)


def test_generator_methods_need_a_generator():
    with pytest.raises(ValueError, match="method 'sefa' needs a generator"):
        run_method("sefa", RegionProblem(random_spd(4, 0), random_spd(4, 1)))


def test_region_problem_rejects_bad_grams():
    good = random_spd(4, 0)
    nan, inf = good.clone(), good.clone()
    nan[1, 2] = nan[2, 1] = float("nan")
    inf[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"gram_fg \(A_F\) contains 2 non-finite"):
        RegionProblem(nan, good)
    with pytest.raises(ValueError, match=r"gram_bg \(A_B\) contains 1 non-finite"):
        RegionProblem(good, inf)
    with pytest.raises(ValueError, match=r"gram_fg \(A_F\) must be a square \[d, d\] matrix, got shape \(4, 3\)"):
        RegionProblem(good[:, :3], good)
    with pytest.raises(ValueError, match=r"has shape \(4, 4\) but gram_bg \(A_B\) has shape \(3, 3\)"):
        RegionProblem(good, good[:3, :3])
    with pytest.raises(ValueError, match="not symmetric"):
        RegionProblem(good + torch.triu(torch.ones(4, 4, dtype=torch.float64), 1), good)
    with pytest.raises(ValueError, match="must be a torch.Tensor or numpy array"):
        RegionProblem([[1.0]], [[1.0]])
    problem = RegionProblem(good.float().numpy(), good)
    assert problem.gram_fg.dtype == torch.float64 and problem.dim == 4


# --- ReSeFa ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_resefa_equals_scipy_generalized_eigh(seed):
    gram_fg, gram_bg = random_spd(20, seed), random_spd(20, seed + 10)
    result = run_method("resefa", RegionProblem(gram_fg, gram_bg), num_directions=20, tau=0.0)
    values, vectors = scipy.linalg.eigh(gram_fg.numpy(), gram_bg.numpy())
    order = values.argsort()[::-1]
    torch.testing.assert_close(result.scores, torch.from_numpy(values[order].copy()), rtol=1e-9, atol=0)
    reference = torch.from_numpy(vectors[:, order].T.copy())
    reference = reference / reference.norm(dim=1, keepdim=True)
    cosines = (result.vectors.double() * reference).sum(dim=1).abs()
    torch.testing.assert_close(cosines, torch.ones(20, dtype=torch.float64), atol=1e-6, rtol=0)
    assert result.info["tau"] == 0.0


def test_resefa_rank_deficient_background():
    gram_fg, _, _, _ = linear_generator_grams()
    rank_two = random_spd(32, 3)[:, :2]
    gram_bg = rank_two @ rank_two.T  # rank 2 of 32
    problem = RegionProblem(gram_fg, gram_bg)
    with pytest.raises(ValueError, match=r"A_B \(background Gram\) is rank-deficient.*use tau > 0"):
        run_method("resefa", problem, tau=0.0)
    automatic = run_method("resefa", problem)
    assert automatic.info["tau"] == 1e-3
    with pytest.raises(ValueError, match="option 'tau' of method 'resefa' must be at least 0"):
        run_method("resefa", problem, tau=-1.0)


def test_resefa_regularisation_form():
    """tau shifts A_B by tau * trace(A_B) * I."""
    gram_fg, gram_bg = random_spd(6, 4), random_spd(6, 5)
    values, _, _ = generalized_eigenvectors(gram_fg, gram_bg, tau=0.01)
    shifted = gram_bg + 0.01 * torch.trace(gram_bg) * torch.eye(6, dtype=torch.float64)
    reference = scipy.linalg.eigh(gram_fg.numpy(), shifted.numpy(), eigvals_only=True)[::-1]
    torch.testing.assert_close(values, torch.from_numpy(reference.copy()))


# --- LowRankGAN / RPCA -----------------------------------------------------------------------

def test_rpca_recovers_planted_low_rank_plus_sparse():
    generator = torch.Generator().manual_seed(0)
    rows, cols, rank = 60, 50, 3
    low_rank = torch.randn(rows, rank, generator=generator, dtype=torch.float64) @ \
        torch.randn(rank, cols, generator=generator, dtype=torch.float64)
    support = torch.rand(rows, cols, generator=generator) < 0.05
    sparse = torch.where(support, 10 * torch.randn(rows, cols, generator=generator, dtype=torch.float64), 0.0)
    found_low_rank, found_sparse = rpca(low_rank + sparse, sparsity=None)
    assert float(torch.linalg.matrix_norm(found_low_rank - low_rank) / torch.linalg.matrix_norm(low_rank)) < 1e-5
    assert float(torch.linalg.matrix_norm(found_sparse - sparse) / torch.linalg.matrix_norm(sparse)) < 1e-5
    assert int(torch.linalg.matrix_rank(found_low_rank)) == rank


def test_lowrankgan_sparsity_default_is_lowrankgans_at_512():
    assert scaled_sparsity(512) == pytest.approx(1 / 60)
    assert method_options("lowrankgan")["sparsity"] is None


def test_lowrankgan_refuses_more_directions_than_the_rank():
    gram_fg, gram_bg, _, _ = linear_generator_grams()
    problem = RegionProblem(gram_fg, gram_bg)
    with pytest.raises(ValueError, match=r"L_F has rank 4, so LowRankGAN has only 4 direction"):
        run_method("lowrankgan", problem, num_directions=5, sparsity=1 / math.sqrt(32))


# --- region methods on the synthetic linear generator ---------------------------------------

REGION_METHOD_OPTIONS = {
    "resefa": {},
    # the synthetic Grams are exactly low rank: PCP's own weight 1/sqrt(d) keeps them whole, while
    # LowRankGAN's 1/60 (tuned for d = 512, rescaled to 1/15 at d = 32) moves part into S.
    "lowrankgan": {"sparsity": 1 / math.sqrt(32)},
    "ot-resefa": {},
}


@pytest.mark.parametrize("name", sorted(REGION_METHOD_OPTIONS))
def test_region_methods_recover_the_planted_local_direction(name):
    gram_fg, gram_bg, planted, _ = linear_generator_grams()
    result = run_method(name, RegionProblem(gram_fg, gram_bg), **REGION_METHOD_OPTIONS[name])
    assert abs(float(result.vectors[0].double() @ planted)) > 0.99


@pytest.mark.parametrize("name", available_methods())
def test_every_method_returns_ranked_oriented_unit_directions(name, tiny_generator):
    gram_fg, gram_bg, _, _ = linear_generator_grams()
    options = {"sparsity": 1 / math.sqrt(32)} if name == "lowrankgan" else {}
    if name == "ot-resefa":
        options = {"max_iter": 10}
    result = run_method(name, RegionProblem(gram_fg, gram_bg, tiny_generator), num_directions=3,
                        **options)
    assert result.vectors.dtype == torch.float32 and result.vectors.shape == (3, 32)
    torch.testing.assert_close(result.vectors.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(result.vectors, orient_signs(result.vectors))
    assert result.scores.dtype == torch.float64
    assert result.scores.tolist() == sorted(result.scores.tolist(), reverse=True)
    json.dumps(result.info)


# --- SeFa and GANSpace: global, region-blind --------------------------------------------------

@pytest.mark.parametrize("name", ["sefa", "ganspace"])
def test_global_methods_ignore_the_region(name, tiny_generator):
    first, second = linear_generator_grams(seed=0), linear_generator_grams(seed=1)
    results = [run_method(name, RegionProblem(grams[0], grams[1], tiny_generator), num_directions=4,
                          **({"num_samples": 2000} if name == "ganspace" else {}))
               for grams in (first, second)]
    torch.testing.assert_close(results[0].vectors, results[1].vectors)
    torch.testing.assert_close(results[0].scores, results[1].scores)


def test_sefa_directions_are_eigenvectors_of_normalised_style_weights(tiny_generator):
    problem = RegionProblem(torch.eye(32, dtype=torch.float64), torch.eye(32, dtype=torch.float64),
                            tiny_generator)
    result = run_method("sefa", problem, num_directions=5)
    weights, names = style_weights(tiny_generator)
    assert names == result.info["layers"] and not any("torgb" in name for name in names)
    weights = weights / weights.norm(dim=1, keepdim=True)
    gram = weights.T @ weights
    vectors = result.vectors.double()
    torch.testing.assert_close(vectors @ gram, result.scores[:, None] * vectors, atol=1e-5, rtol=1e-5)
    first_layer = run_method("sefa", problem, num_directions=1, layers=[0])
    assert first_layer.info["layers"] == [names[0]]


def test_ganspace_matches_pca_of_sampled_w(tiny_generator):
    problem = RegionProblem(torch.eye(32, dtype=torch.float64), torch.eye(32, dtype=torch.float64),
                            tiny_generator)
    result = run_method("ganspace", problem, num_directions=3, seed=5, num_samples=3000, chunk_size=700)
    z = torch.randn(3000, tiny_generator.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        w = tiny_generator.mapping(z, None)[:, 0].double()
    variances, axes = torch.linalg.eigh(torch.cov(w.T))
    torch.testing.assert_close(result.scores, variances.flip(0)[:3], rtol=1e-5, atol=1e-8)
    cosines = (result.vectors.double() * axes.flip(1)[:, :3].T).sum(dim=1).abs()
    torch.testing.assert_close(cosines, torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)
    repeat = run_method("ganspace", problem, num_directions=3, seed=5, num_samples=3000)
    torch.testing.assert_close(repeat.vectors, result.vectors)


def test_option_values_of_the_wrong_type_are_named():
    problem = RegionProblem(torch.eye(4, dtype=torch.float64), torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="option 'tau' of method 'resefa' takes float, got 'big'"):
        run_method("resefa", problem, tau="big")
    with pytest.raises(ValueError, match="option 'max_iter' of method 'lowrankgan'"):
        run_method("lowrankgan", problem, max_iter=2.5)
    with pytest.raises(ValueError, match="option 'within'"):
        run_method("ot-resefa", problem, within=3)
    run_method("resefa", problem, tau=None)
    run_method("resefa", problem, tau=1e-3)


# --- the registry's facts and its one option parser ------------------------------------------------

def test_every_registered_function_takes_exactly_the_declared_options():
    import inspect

    from otresefa.methods import method_info

    for name in available_methods():
        info = method_info(name)
        parameters = inspect.signature(info.function()).parameters.values()
        keywords = [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]
        assert keywords == list(info.defaults), name
        assert all(p.default is inspect.Parameter.empty for p in parameters), f"{name}: defaults live in the registry"
        assert info.title and info.summary


def test_option_text_values_widget_values_and_python_values_parse_alike():
    from otresefa.methods import method_info, parse_option_pairs

    assert parse_option_pairs("ot-resefa", ["lam=4", "within=foreground", "restarts=3"]) == \
        {"lam": 4.0, "within": "foreground", "restarts": 3}
    assert parse_option_pairs("ot-resefa", "lam=0.5,normalize=none") == {"lam": 0.5, "normalize": "none"}
    assert parse_option_pairs("sefa", "layers=0-2,4") == {"layers": [0, 1, 2, 4]}
    assert parse_option_pairs("sefa", "layers=[1, 3]") == {"layers": [1, 3]}
    assert parse_option_pairs("resefa", "tau=none") == {"tau": None}
    info = method_info("ot-resefa")
    assert info.parse_options({"restarts": 3.0, "lam": 4, "init": "resefa"}) == {"restarts": 3, "lam": 4.0,
                                                                                 "init": "resefa"}
    assert info.parse_options({"restarts": np.int64(2)}) == {"restarts": 2}


@pytest.mark.parametrize("pairs, message", [
    (["lam"], "method options are NAME=VALUE, got 'lam'"),
    (["lam=-1"], "option 'lam' of method 'ot-resefa' must be at least"),
    (["restarts=0"], "option 'restarts' of method 'ot-resefa' must be at least 1, got 0"),
    (["restarts=1.5"], "option 'restarts' of method 'ot-resefa' takes a whole number, got 1.5"),
    (["within=middle"], "option 'within' of method 'ot-resefa' must be one of both, foreground; got 'middle'"),
    (["lam=nan"], "option 'lam' of method 'ot-resefa' takes float, got 'nan'"),
    (["lambda=2"], r"unknown option\(s\) \['lambda'\] for method 'ot-resefa'"),
    (["max_iter=true"], "option 'max_iter' of method 'ot-resefa' takes a whole number, got True"),
])
def test_bad_option_values_name_the_option(pairs, message):
    from otresefa.methods import parse_option_pairs

    with pytest.raises(ValueError, match=message):
        parse_option_pairs("ot-resefa", pairs)


def test_methods_registry_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import otresefa.methods as m; m.method_info('ot-resefa').parse_options({'lam': '3'}); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
