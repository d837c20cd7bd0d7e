"""Prefect artifacts a browser can open: plots embedded in markdown, lake files linked by their HTTP address.

Prefect's image artifact takes a URL, and the lake's own URLs (file://, s3://) are ones a browser will not open, so
a plot is published as a markdown artifact with the PNG embedded (it shows in the UI with no server to reach, offline
too) and a link to the file where ``reports.base_url`` serves it (``astrolab docs`` locally, MinIO in production).
"""

from __future__ import annotations

import base64
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact

from astrolab.resources import report_url
from astrolab.settings import Settings
from tasks.storage.lake import Lake


def image_markdown(png: bytes, title: str, url: str) -> str:
    """Markdown that shows ``png`` inline under ``title`` and links to the file at ``url``."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError(f"{title}: not a PNG image")
    data = base64.b64encode(png).decode("ascii")
    return f"### {title}\n\n![{title}](data:image/png;base64,{data})\n\nFile: [{url}]({url})\n"


def publish_image(path: Path, key: str, title: str, settings: Settings, lake: Lake) -> str:
    """Publish the PNG at ``path`` (a report file in the lake) as an artifact; returns the file's browser URL."""
    url = report_url(settings, lake, path)
    create_markdown_artifact(image_markdown(path.read_bytes(), title, url), key=key, description=title)
    return url


def publish_link(path: Path, key: str, text: str, settings: Settings, lake: Lake) -> str:
    """Publish a link artifact to a report file in the lake (e.g. the Data Docs index); returns its browser URL."""
    url = report_url(settings, lake, path)
    create_link_artifact(url, link_text=text, key=key, description=text)
    return url
