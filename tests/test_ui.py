"""The browser app's callbacks (``otresefa.ui.callbacks``) without a browser, on a tiny generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_generator
from otresefa.directions import Directions
from otresefa.methods import method_info
from otresefa.render.images import to_pil, upscale
from otresefa.ui import callbacks as cb

RESOLUTION = 16


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return str(make_tiny_generator(resolution=RESOLUTION).save(tmp_path_factory.mktemp("ui") / "tiny.safetensors"))


@pytest.fixture(scope="module", autouse=True)
def jacobian_cache(tmp_path_factory):
    """Jacobians go to a folder of this module, never to the user's cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OTRESEFA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def discovered(checkpoint):
    """A session with two resefa directions for the "nose" preset (one Jacobian for the module)."""
    session = cb.choose_region(cb.new_session(checkpoint), "nose")
    reports = []
    cb.discover_directions(session, "resefa", 2, progress=lambda fraction, text: reports.append(fraction))
    assert reports[0] == 0.0 and reports[-1] == 1.0
    return session


def test_new_session_shows_the_sample_with_a_default_region(checkpoint):
    session = cb.new_session(checkpoint, seed=3)
    assert session.seed == 3 and session.original.shape == (3, RESOLUTION, RESOLUTION)
    assert session.region_choice == "mouth" and session.region.size == (RESOLUTION, RESOLUTION)
    assert cb.region_choices(session)[-1] == cb.BOX_REGION and "nose" in cb.region_choices(session)
    view = cb.sample_view(session)
    assert view.size == (cb.DISPLAY_SIZE, cb.DISPLAY_SIZE)
    assert "seed 3" in cb.session_summary(session) and "mouth" in cb.session_summary(session)


def test_the_generator_is_loaded_once(checkpoint):
    assert cb.cached_generator(checkpoint) is cb.cached_generator(f" {checkpoint} ")


@pytest.mark.parametrize("checkpoint_text, error, message", [
    ("/no/such/model.safetensors", FileNotFoundError, "checkpoint not found"),
    ("   ", ValueError, "enter a checkpoint"),
])
def test_bad_checkpoints_raise_errors_that_name_the_problem(checkpoint_text, error, message):
    with pytest.raises(error, match=message):
        cb.new_session(checkpoint_text)


def test_app_shows_library_errors_as_gradio_errors():
    import gradio as gr

    from otresefa.ui.app import shows_user_errors

    with pytest.raises(gr.Error, match="checkpoint not found"):
        shows_user_errors(cb.new_session)("/no/such/model.safetensors")


def test_build_app_makes_a_gradio_app(checkpoint):
    import gradio as gr

    from otresefa.ui.app import build_app

    assert isinstance(build_app(checkpoint), gr.Blocks)


def test_an_empty_region_is_reported_not_raised_and_stops_discovery(checkpoint):
    session = cb.choose_region(cb.new_session(checkpoint), None)
    assert session.region is None and "choose a region" in session.region_problem
    assert "choose a region" in cb.session_summary(session)
    with pytest.raises(ValueError, match="choose a region"):
        cb.discover_directions(session, "resefa", 1)


def test_a_box_from_two_clicked_corners(checkpoint):
    session = cb.choose_region(cb.new_session(checkpoint), cb.BOX_REGION)
    assert "2 more corner" in session.region_problem
    cb.click_corner(session, 9, 2)
    assert "1 more corner" in session.region_problem
    cb.click_corner(session, 4, 6)
    expected = torch.zeros(RESOLUTION, RESOLUTION, dtype=torch.bool)
    expected[4:10, 2:7] = True
    assert torch.equal(session.region.mask, expected)
    cb.click_corner(session, 0, 0)  # a third click starts a new box
    assert session.region is None and session.corners == ((0, 0),)


def test_unusable_boxes_and_points_outside_the_image_are_errors(checkpoint):
    session = cb.new_session(checkpoint)
    cb.click_corner(session, 0, 0)
    cb.click_corner(session, RESOLUTION - 1, RESOLUTION - 1)
    assert "covers the whole image" in session.region_problem
    with pytest.raises(ValueError, match="outside"):
        cb.click_corner(session, RESOLUTION, 0)
    with pytest.raises(ValueError, match="outside"):
        cb.image_pixel(session, x=10, y=300, shown_width=256)
    assert cb.image_pixel(session, x=17, y=255, shown_width=256) == (15, 1)


def test_unknown_region_names_are_reported(checkpoint):
    session = cb.choose_region(cb.new_session(checkpoint), "elbow")
    assert "unknown region 'elbow'" in session.region_problem


def test_random_seeds_are_reproducible_and_valid_seeds():
    assert cb.random_seed(5) == cb.random_seed(5) != cb.random_seed(6)
    assert 0 <= cb.random_seed(5) < cb.SEED_LIMIT
    with pytest.raises(ValueError, match="whole number"):
        cb.as_seed(2.5)


@pytest.mark.parametrize("method, name, value, expected", [
    ("ot-resefa", "lam", 4, 4.0),
    ("ot-resefa", "max_iter", 20.0, 20),
    ("ot-resefa", "within", "foreground", "foreground"),
    ("resefa", "tau", "", None),
    ("sefa", "layers", "[0, 1]", [0, 1]),
])
def test_widget_values_take_the_option_type(method, name, value, expected):
    assert method_info(method).parse_options({name: value}) == {name: expected}


@pytest.mark.parametrize("method, name, value, message", [
    ("ot-resefa", "max_iter", 2.5, "whole number"),
    ("ot-resefa", "lam", None, "needs a value"),
    ("resefa", "tau", "abc", "takes float"),
    ("ot-resefa", "colour", 1, r"unknown option\(s\) \['colour'\]"),
])
def test_bad_widget_values_are_errors(method, name, value, message):
    with pytest.raises(ValueError, match=message):
        method_info(method).parse_options({name: value})


def test_a_method_rejects_an_unknown_choice(discovered):
    with pytest.raises(ValueError, match="option 'within' of method 'ot-resefa' must be one of both, foreground"):
        cb.discover_directions(discovered, "ot-resefa", 1, {"within": "nowhere"})


def test_discovered_directions_edit_the_sample(discovered):
    directions = discovered.directions
    assert len(directions) == 2 and directions.metadata["method"] == "resefa"
    assert directions.metadata["region"]["name"] == "nose"
    unchanged, no_heat_map = cb.render_edit(discovered, [0.0, 0.0], None)
    assert no_heat_map is None
    assert np.array_equal(np.asarray(unchanged), np.asarray(upscale(to_pil(discovered.original), cb.DISPLAY_SIZE)))
    edited = np.asarray(cb.render_edit(discovered, [3.0, 0.0], None)[0])
    composed = np.asarray(cb.render_edit(discovered, [3.0, -2.0], None)[0])
    assert not np.array_equal(edited, np.asarray(unchanged)) and not np.array_equal(composed, edited)
    overview = cb.directions_overview(discovered)
    assert [len(row) for row in overview.info["tiles"]] == [len(cb.STRIP_ALPHAS)] * 2  # a row per direction


def test_only_the_chosen_layers_are_edited(discovered):
    num_ws = discovered.G.num_ws
    assert cb.edit_layers(0, num_ws - 1, num_ws) is None
    assert cb.edit_layers(1, 2, num_ws) == [1, 2]
    with pytest.raises(ValueError, match="after the last"):
        cb.edit_layers(3, 1, num_ws)
    all_layers = cb.edited_image(discovered, [3.0, 0.0], None)
    some_layers = cb.edited_image(discovered, [3.0, 0.0], [0])
    assert not torch.equal(all_layers, some_layers)


def test_the_heat_map_shows_the_locality_view(discovered):
    edited, locality = cb.render_edit(discovered, [3.0, 0.0], None, heat_map=True)
    assert locality.width > 2 * edited.width  # original | edited | heat map


def test_exports(discovered, tmp_path):
    png = cb.export_png(discovered, [2.0, 0.0], None, tmp_path)
    assert Image.open(png).size == (cb.DISPLAY_SIZE, cb.DISPLAY_SIZE)
    gif = Image.open(cb.export_gif(discovered, 0.0, None, tmp_path))
    assert gif.format == "GIF" and gif.n_frames > 1
    npy, sidecar = cb.export_directions(discovered, tmp_path)
    assert sidecar.suffix == ".json"
    loaded = Directions.load(npy, w_dim=discovered.G.w_dim)
    assert torch.allclose(loaded.vectors, discovered.directions.vectors)
    assert cb.export_directions(discovered, tmp_path)[0] != npy  # a second export does not overwrite


def test_a_new_sample_keeps_the_directions(discovered):
    w_before = discovered.w.clone()
    cb.set_sample(discovered, 7, 0.5)
    try:
        assert not torch.equal(discovered.w, w_before) and discovered.directions is not None
        assert discovered.region.name == "nose"
    finally:
        cb.set_sample(discovered, 0, cb.DEFAULT_TRUNCATION_PSI)


def test_edits_need_directions(checkpoint):
    session = cb.new_session(checkpoint)
    with pytest.raises(ValueError, match="no directions yet"):
        cb.export_gif(session, 1.0, None, "unused")
    sample, _ = cb.render_edit(session, [], None)
    assert sample.size == (cb.DISPLAY_SIZE, cb.DISPLAY_SIZE)


def test_sliders_are_in_region_units_by_default_and_raw_on_request(discovered):
    from otresefa.editing import REGION_UNIT_RMS
    from otresefa.metrics.locality import rms_change_inside

    session = cb.set_units(discovered, "region")
    assert session.shown.in_region_units
    for i in range(len(session.shown)):
        strengths = [0.0] * len(session.shown)
        strengths[i] = 0.5  # small: region units are first order
        changed = cb.edited_image(session, strengths, None)
        assert float(rms_change_inside(session.original, changed, session.region)) == \
            pytest.approx(0.5 * REGION_UNIT_RMS, rel=0.15)
    raw = cb.set_units(session, "alpha")
    assert not raw.shown.in_region_units
    torch.testing.assert_close(cb.edited_image(raw, [1.0, 0.0], None),
                               cb.edit(raw.G, raw.w, raw.directions.vectors[0], [1.0])[0])
    with pytest.raises(ValueError, match="strength units"):
        cb.set_units(raw, "furlongs")
    cb.set_units(raw, "region")
