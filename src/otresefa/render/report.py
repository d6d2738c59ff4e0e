"""A static ``index.html`` for a results folder: every figure with its caption and parameters.

The page is self-contained (inline CSS, no scripts, fonts or network) and links only relative
paths, so the folder can be moved, zipped or opened offline.  All text is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping
from urllib.parse import quote

from otresefa.io import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")
VIDEO_SUFFIXES = (".mp4", ".webm")

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1.5em; color: #222; background: #fafafa; }
h1 { font-size: 1.5em; margin-bottom: 0.3em; }
h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }
figure { display: inline-block; vertical-align: top; margin: 0.6em; padding: 0.6em; background: #fff;
         border: 1px solid #ddd; border-radius: 4px; max-width: calc(100% - 2.6em); }
figure img, figure video { max-width: 100%; height: auto; display: block; }
figcaption { margin: 0.4em 0; font-size: 0.95em; }
table { border-collapse: collapse; font-size: 0.85em; }
td, th { border: 1px solid #ddd; padding: 0.15em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; font-weight: 600; }
ul.files { font-size: 0.9em; }
"""


def format_value(value: Any) -> str:
    """A parameter value as short text: numbers with ``%g``, lists joined, dicts as JSON."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        # sentences (notes) may contain commas themselves
        separator = "; " if any(isinstance(v, str) for v in value) else ", "
        return separator.join(format_value(v) for v in value)
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def params_table(params: Mapping[str, Any]) -> str:
    """``params`` as a two-column HTML table (empty string when there are none)."""
    if not params:
        return ""
    rows = "".join(f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(format_value(value))}</td></tr>"
                   for key, value in params.items())
    return f"<table>{rows}</table>"


def relative_url(path: str) -> str:
    """A folder-relative POSIX path as an escaped ``href``/``src`` value."""
    return html.escape(quote(Path(path).as_posix()), quote=True)


def _figure(entry: Mapping[str, Any]) -> str:
    url = relative_url(entry["path"])
    caption = html.escape(entry.get("caption") or entry["path"])
    suffix = Path(entry["path"]).suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        media = f'<a href="{url}"><img src="{url}" alt="{caption}" loading="lazy"></a>'
    elif suffix in VIDEO_SUFFIXES:
        media = f'<video src="{url}" controls loop muted playsinline></video>'
    else:
        media = f'<a href="{url}">{html.escape(entry["path"])}</a>'
    return f"<figure>{media}<figcaption>{caption}</figcaption>{params_table(entry.get('params') or {})}</figure>"


def _sections(entries: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Entries grouped by their ``section``, sections in order of first appearance."""
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for entry in entries:
        grouped.setdefault(entry.get("section") or "", []).append(entry)
    return grouped


def render_index_html(title: str, entries: Iterable[Mapping[str, Any]], run_params: Mapping[str, Any],
                      extra_links: Iterable[str] = ()) -> str:
    """The page's HTML.  ``entries`` are mappings with ``path`` (folder-relative), ``caption``,
    ``params`` (mapping) and ``section``; ``extra_links`` are further relative files linked at the top."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1>", params_table(run_params)]
    links = [f'<li><a href="{relative_url(link)}">{html.escape(link)}</a></li>' for link in extra_links]
    if links:
        parts.append(f'<ul class="files">{"".join(links)}</ul>')
    for section, members in _sections(entries).items():
        if section:
            parts.append(f"<h2>{html.escape(section)}</h2>")
        parts.extend(_figure(entry) for entry in members)
    parts.append("</body></html>")
    return "\n".join(parts)


def write_index_html(folder: str | os.PathLike, title: str, entries: Iterable[Mapping[str, Any]],
                     run_params: Mapping[str, Any], extra_links: Iterable[str] = ()) -> Path:
    """Write ``folder/index.html`` (atomically) showing ``entries``; see :func:`render_index_html`."""
    path = Path(folder) / "index.html"
    text = render_index_html(title, entries, run_params, extra_links)
    with atomic_path(path) as temp:
        temp.write_text(text, encoding="utf-8")
    return path
