"""The local browser app (``otresefa ui``): discover and apply region edits interactively.

``otresefa.ui.app`` holds the Gradio layout (``build_app``, ``launch``) and needs the ``ui`` extra;
``otresefa.ui.callbacks`` holds what the app does, as plain functions testable without a browser.
"""
