"""The local browser app: a Gradio layout over :mod:`otresefa.ui.callbacks`.

``launch()`` serves it on this machine only: no share link, no telemetry, and a theme with system
fonts so that the page requests nothing from outside (a theme may ask for Google Fonts).
User errors (bad checkpoint, unusable region, bad option) appear as Gradio error toasts; problems
that do not stop the work (a region missing on this sample) as warnings and in the status line.
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Callable

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # must be set before gradio is imported

import gradio as gr

from otresefa.checkpoints import CheckpointError
from otresefa.methods import DEFAULT_METHOD, Option, available_methods, method_info
from otresefa.ui import callbacks as cb

MAX_DIRECTIONS = 8  # one strength slider each; sliders are created up front and shown as needed
ALPHA_RANGE = 6.0  # slider range; in region units +6 changes the region by an RMS of 0.3 per channel
UNIT_CHOICES = {"region units (+1 = the same region change for every method)": "region", "raw alpha": "alpha"}
DEFAULT_NUM_DIRECTIONS = 3
MAIN_OPTION_COUNT = 4
"""A method's first options are shown; the others sit in its "more options" accordion."""
SYSTEM_FONTS = ("system-ui", "-apple-system", "Segoe UI", "Helvetica Neue", "Arial", "sans-serif")
SYSTEM_MONO_FONTS = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, CheckpointError, ArithmeticError)
INTRO = (
    "# otresefa: local edits of generated faces\n"
    "**1.** Load a model and pick a sample. **2.** Pick a region, or choose *box* and click two corners on "
    "the sample. **3.** Discover directions that change the region and keep the rest. **4.** Move the "
    "sliders; the edit updates as you move them. **5.** Export the edit, a GIF sweep or the directions."
)


def app_theme() -> gr.themes.Base:
    """Gradio's default look with the system's fonts, so that no font is fetched from the web."""
    return gr.themes.Default(font=SYSTEM_FONTS, font_mono=SYSTEM_MONO_FONTS)


def shows_user_errors(function: Callable) -> Callable:
    """Turn the library's input errors into a Gradio error toast naming the problem."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except USER_ERRORS as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise gr.Error(str(message), print_exception=False) from None

    return wrapper


def require_session(session: cb.EditSession | None) -> cb.EditSession:
    if session is None:
        raise ValueError("no model is loaded: enter a checkpoint and press Load")
    return session


def warn_about_region(session: cb.EditSession) -> None:
    if session.region_problem:
        gr.Warning(session.region_problem)


def option_widget(option: Option) -> gr.components.Component:
    """A widget for one method option, from the registry's facts (choices, type, optional)."""
    if option.choices:
        return gr.Dropdown(list(option.choices), value=option.default, label=option.name, info=option.help)
    if option.kind is bool:
        return gr.Checkbox(value=option.default, label=option.name, info=option.help)
    if option.kind in (int, float) and not option.optional:
        return gr.Number(value=option.default, precision=0 if option.kind is int else None, label=option.name,
                         minimum=option.low, maximum=option.high, info=option.help)
    return gr.Textbox(value="" if option.default is None else str(option.default), label=option.name,
                      placeholder="blank: automatic" if option.optional else None, info=option.help)


def method_option_widgets(method: str) -> tuple[gr.Group, list[tuple[str, gr.components.Component]]]:
    """A group with ``method``'s options (the first few shown, the rest folded away), visible when chosen."""
    options = method_info(method).options
    widgets = []
    with gr.Group(visible=method == DEFAULT_METHOD) as group:
        for option in options[:MAIN_OPTION_COUNT]:
            widgets.append((option.name, option_widget(option)))
        if options[MAIN_OPTION_COUNT:]:
            with gr.Accordion(f"more {method} options", open=False):
                for option in options[MAIN_OPTION_COUNT:]:
                    widgets.append((option.name, option_widget(option)))
    return group, widgets


def build_app(checkpoint: str = "synthfaces", device: str | None = None) -> gr.Blocks:
    """The app's layout and events; ``checkpoint`` (a built-in model name or a path) is loaded when
    the page opens.  Serve it with :func:`serve` or :func:`launch` (they apply the offline theme)."""
    # removed when the app (whose export callbacks hold it) is garbage-collected, or at exit
    export_root = tempfile.TemporaryDirectory(prefix="otresefa-ui-")

    with gr.Blocks(title="otresefa", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        session = gr.State(None)
        gr.Markdown(INTRO)
        status = gr.Markdown(cb.session_summary(None), elem_id="status")
        with gr.Row():
            with gr.Column(scale=1, min_width=320):
                gr.Markdown("### 1. Model and sample")
                with gr.Row(equal_height=True):
                    checkpoint_box = gr.Textbox(checkpoint, label="checkpoint: file path or built-in name", max_lines=1,
                                                scale=4, elem_id="checkpoint")
                    load_button = gr.Button("Load", scale=1, min_width=80, elem_id="load")
                with gr.Row(equal_height=True):
                    seed_box = gr.Number(0, precision=0, minimum=0, maximum=cb.SEED_LIMIT - 1, label="seed",
                                         elem_id="seed")
                    random_button = gr.Button("Random sample", elem_id="random-sample")
                psi_slider = gr.Slider(0.0, 1.0, value=cb.DEFAULT_TRUNCATION_PSI, step=0.05, label="truncation psi")
                gr.Markdown("### 2. Region")
                region_box = gr.Dropdown([], label="region to edit (or box: then click two corners on the sample)",
                                         elem_id="region")
                gr.Markdown("### 3. Discover directions")
                method_box = gr.Dropdown(available_methods(), value=DEFAULT_METHOD, label="method", elem_id="method")
                num_directions = gr.Slider(1, MAX_DIRECTIONS, value=DEFAULT_NUM_DIRECTIONS, step=1,
                                           label="number of directions", elem_id="num-directions")
                option_groups, option_fields = {}, []  # option_fields: (method, name, widget)
                for method in available_methods():
                    option_groups[method], widgets = method_option_widgets(method)
                    option_fields += [(method, name, widget) for name, widget in widgets]
                method_seed = gr.Number(0, precision=0, label="method seed (its random starts)")
                discover_button = gr.Button("Discover", variant="primary", elem_id="discover")
            with gr.Column(scale=2, min_width=560):
                with gr.Row():
                    sample_image = gr.Image(label="sample (region outlined; click for box corners)", type="pil",
                                            format="png", interactive=False, buttons=[], elem_id="sample-image")
                    edited_image = gr.Image(label="edited", type="pil", format="png", interactive=False,
                                            buttons=["download", "fullscreen"], elem_id="edited-image")
                heat_image = gr.Image(label="locality: where the edit changes the image", type="pil", format="png",
                                      interactive=False, visible=False, buttons=["download", "fullscreen"],
                                      elem_id="heat-image")
                gr.Markdown("### 4. Edit")
                units_box = gr.Radio(list(UNIT_CHOICES), value=next(iter(UNIT_CHOICES)), label="strength units",
                                     elem_id="units")
                alpha_sliders = [
                    gr.Slider(-ALPHA_RANGE, ALPHA_RANGE, value=0.0, step=0.1, label=f"direction {i} strength",
                              visible=False, elem_id=f"alpha-{i}")
                    for i in range(MAX_DIRECTIONS)
                ]
                with gr.Row(equal_height=True):
                    first_layer = gr.Slider(0, 1, value=0, step=1, label="edit layers: first", elem_id="first-layer")
                    last_layer = gr.Slider(0, 1, value=1, step=1, label="edit layers: last", elem_id="last-layer")
                with gr.Row(equal_height=True):
                    heat_map = gr.Checkbox(False, label="show the locality heat map", elem_id="heat-map")
                    reset_button = gr.Button("Reset strengths", size="sm")
                overview_image = gr.Image(type="pil", format="png", interactive=False, visible=False, show_label=False,
                                          buttons=["download", "fullscreen"], elem_id="directions")
                gr.Markdown("### 5. Export")
                with gr.Row():
                    png_button = gr.Button("PNG of the edit", elem_id="export-png")
                    gif_button = gr.Button("GIF sweep of direction 0", elem_id="export-gif")
                    directions_button = gr.Button("Directions (.npy + .json)", elem_id="export-directions")
                exported = gr.File(label="exported files", file_count="multiple", interactive=False, visible=False,
                                   elem_id="exported")

        edit_inputs = [session, heat_map, first_layer, last_layer, *alpha_sliders]
        edit_views = [edited_image, heat_image]

        def edit_settings(session_value, heat, first, last, *alphas):
            session_value = require_session(session_value)
            return session_value, bool(heat), cb.edit_layers(first, last, session_value.G.num_ws), list(alphas)

        def views(session_value, alphas, layers, heat) -> tuple:
            edited, locality = cb.render_edit(session_value, alphas, layers, heat)
            return edited, gr.update(value=locality, visible=locality is not None)

        def overview(session_value, layers):
            if session_value.directions is None:
                return gr.update(value=None, visible=False)
            return gr.update(value=cb.directions_overview(session_value, layers), visible=True)

        @shows_user_errors
        def load_model(checkpoint_text):
            loaded = cb.new_session(checkpoint_text, device)
            warn_about_region(loaded)
            last = loaded.G.num_ws - 1
            return (
                loaded, cb.session_summary(loaded),
                gr.update(choices=cb.region_choices(loaded), value=loaded.region_choice),
                0, cb.sample_view(loaded), *views(loaded, [], None, False), overview(loaded, None),
                gr.update(maximum=last, value=0), gr.update(maximum=last, value=last),
                gr.update(maximum=min(MAX_DIRECTIONS, loaded.G.w_dim)),
                *[gr.update(visible=False, value=0.0) for _ in alpha_sliders], next(iter(UNIT_CHOICES)),
            )

        load_outputs = [session, status, region_box, seed_box, sample_image, *edit_views, overview_image,
                        first_layer, last_layer, num_directions, *alpha_sliders, units_box]
        load_button.click(load_model, checkpoint_box, load_outputs)
        checkpoint_box.submit(load_model, checkpoint_box, load_outputs)
        demo.load(load_model, checkpoint_box, load_outputs)

        @shows_user_errors
        def change_sample(session_value, seed, psi, heat, first, last, *alphas):
            session_value = cb.set_sample(require_session(session_value), seed, psi)
            warn_about_region(session_value)
            _, heat, layers, alphas = edit_settings(session_value, heat, first, last, *alphas)
            return (session_value, cb.session_summary(session_value), cb.sample_view(session_value),
                    *views(session_value, alphas, layers, heat and session_value.region is not None),
                    overview(session_value, layers))

        sample_outputs = [session, status, sample_image, *edit_views, overview_image]
        sample_inputs = [session, seed_box, psi_slider, heat_map, first_layer, last_layer, *alpha_sliders]
        seed_box.change(change_sample, sample_inputs, sample_outputs, trigger_mode="always_last")
        psi_slider.release(change_sample, sample_inputs, sample_outputs)
        @shows_user_errors
        def draw_random_seed(seed):
            return cb.random_seed(cb.as_seed(seed))

        random_button.click(draw_random_seed, seed_box, seed_box)

        @shows_user_errors
        def change_region(session_value, choice):
            session_value = cb.choose_region(require_session(session_value), choice)
            warn_about_region(session_value)
            return session_value, cb.session_summary(session_value), cb.sample_view(session_value)

        region_box.input(change_region, [session, region_box], [session, status, sample_image])

        @shows_user_errors
        def click_sample(session_value, evt: gr.SelectData):
            session_value = require_session(session_value)
            x, y = evt.index
            shown = cb.sample_view(session_value).width
            session_value = cb.click_corner(session_value, *cb.image_pixel(session_value, x, y, shown))
            return (session_value, cb.session_summary(session_value), cb.sample_view(session_value),
                    gr.update(value=cb.BOX_REGION))

        sample_image.select(click_sample, session, [session, status, sample_image, region_box])

        method_box.change(
            lambda chosen: [gr.update(visible=method == chosen) for method in option_groups],
            method_box, list(option_groups.values()),
        )

        @shows_user_errors
        def run_discovery(session_value, method, count, seed_of_method, heat, first, last, *option_values,
                          progress=gr.Progress(track_tqdm=True)):
            session_value = require_session(session_value)
            options = {name: value for (owner, name, _), value in zip(option_fields, option_values) if owner == method}
            cb.discover_directions(session_value, method, int(count), options, cb.as_seed(seed_of_method),
                                   progress=lambda fraction, text: progress(fraction, desc=text))
            warn_about_region(session_value)
            layers = cb.edit_layers(first, last, session_value.G.num_ws)
            found = len(session_value.directions)
            return (session_value, cb.session_summary(session_value), overview(session_value, layers),
                    *views(session_value, [0.0] * found, layers, heat and session_value.region is not None),
                    *[gr.update(visible=i < found, value=0.0) for i in range(MAX_DIRECTIONS)])

        discover_button.click(
            run_discovery,
            [session, method_box, num_directions, method_seed, heat_map, first_layer, last_layer,
             *[widget for _, _, widget in option_fields]],
            [session, status, overview_image, *edit_views, *alpha_sliders],
            concurrency_limit=1,
        )

        @shows_user_errors
        def rerender(*values):
            session_value, heat, layers, alphas = edit_settings(*values)
            return views(session_value, alphas, layers, heat)

        for slider in alpha_sliders:
            # "always_last": while the slider moves, renders that fall behind are dropped, not queued
            slider.input(rerender, edit_inputs, edit_views, trigger_mode="always_last", show_progress="hidden")
        heat_map.input(rerender, edit_inputs, edit_views, show_progress="hidden")

        @shows_user_errors
        def change_layers(*values):
            session_value, heat, layers, alphas = edit_settings(*values)
            return *views(session_value, alphas, layers, heat), overview(session_value, layers)

        for layer_slider in (first_layer, last_layer):
            layer_slider.release(change_layers, edit_inputs, [*edit_views, overview_image])

        @shows_user_errors
        def change_units(session_value, choice, heat, first, last, *alphas):
            session_value = cb.set_units(require_session(session_value), UNIT_CHOICES[choice])
            warn_about_region(session_value)
            _, heat, layers, alphas = edit_settings(session_value, heat, first, last, *alphas)
            return (session_value, cb.session_summary(session_value), *views(session_value, alphas, layers, heat),
                    overview(session_value, layers))

        units_box.input(change_units, [session, units_box, heat_map, first_layer, last_layer, *alpha_sliders],
                        [session, status, *edit_views, overview_image])

        reset_button.click(lambda: [0.0] * MAX_DIRECTIONS, None, alpha_sliders).then(
            rerender, edit_inputs, edit_views, show_progress="hidden")

        def offer(paths) -> dict:
            return gr.update(value=[str(path) for path in paths], visible=True)

        @shows_user_errors
        def export_edit(*values):
            session_value, _, layers, alphas = edit_settings(*values)
            return offer([cb.export_png(session_value, alphas, layers, export_root.name)])

        @shows_user_errors
        def export_sweep(*values):
            session_value, _, layers, alphas = edit_settings(*values)
            return offer([cb.export_gif(session_value, alphas[0], layers, export_root.name)])

        @shows_user_errors
        def export_directions(session_value):
            return offer(cb.export_directions(require_session(session_value), export_root.name))

        png_button.click(export_edit, edit_inputs, exported)
        gif_button.click(export_sweep, edit_inputs, exported)
        directions_button.click(export_directions, session, exported)
    return demo


def serve(demo: gr.Blocks, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False) -> str:
    """Start serving ``demo`` in the background (no share link, offline theme); returns its URL."""
    demo.launch(
        server_name=host, server_port=port, inbrowser=open_browser, share=False, prevent_thread_lock=True,
        show_error=True, quiet=True, ssr_mode=False, mcp_server=False, theme=app_theme(),
    )
    return demo.local_url


def launch(checkpoint: str = "synthfaces", host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
           device: str | None = None) -> None:
    """Serve the app for ``checkpoint`` at ``http://host:port`` until interrupted (Ctrl+C)."""
    demo = build_app(checkpoint, device)
    url = serve(demo, host, port, open_browser)
    print(f"otresefa app running at {url} (Ctrl+C stops it)")
    demo.block_thread()
