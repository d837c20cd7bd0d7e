"""flows.artifacts: plots embedded in markdown artifacts, lake files linked at their browser address."""

import base64
import re

import pytest
from prefect import flow
from prefect.artifacts import Artifact

from astrolab.resources import build_lake, report_url
from astrolab.settings import load_settings
from flows.artifacts import image_markdown, publish_image, publish_link

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3


def embedded_png(markdown: str) -> bytes:
    """The bytes of the one PNG embedded in an artifact's markdown."""
    [data] = re.findall(r"\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown)
    return base64.b64decode(data)


def test_image_markdown_embeds_the_png_and_links_the_file():
    md = image_markdown(PNG, "n(z)", "http://localhost:8765/runs/r1/nz.png")
    assert md.startswith("### n(z)\n\n![n(z)](data:image/png;base64,") and embedded_png(md) == PNG
    assert md.endswith("File: [http://localhost:8765/runs/r1/nz.png](http://localhost:8765/runs/r1/nz.png)\n")
    with pytest.raises(ValueError, match="^n\\(z\\): not a PNG image$"):
        image_markdown(b"GIF89a", "n(z)", "x")


def test_report_urls_for_local_and_s3_lakes(tmp_path):
    local = load_settings(env={"ASTROLAB_HOME": str(tmp_path)})
    lake = build_lake(local)
    docs = lake.data_docs_dir() / "index.html"
    assert report_url(local, lake, docs) == "http://localhost:8765/data_docs/index.html"
    run = lake.run_report_dir("r1") / "nz.png"
    moved = load_settings(env={"ASTROLAB_HOME": str(tmp_path), "ASTROLAB_REPORTS_BASE_URL": "https://lab/reports/"})
    assert report_url(moved, lake, run) == "https://lab/reports/runs/r1/nz.png"
    with pytest.raises(ValueError, match="not under the lake's reports directory"):
        report_url(local, lake, tmp_path / "elsewhere.png")
    s3 = load_settings(env={"ASTROLAB_HOME": str(tmp_path), "ASTROLAB_LAKE_URL": "s3://lab-lake/desi",
                            "ASTROLAB_LAKE_S3_ENDPOINT": "http://minio1:9000/"})
    assert s3.reports_url == "http://minio1:9000/lab-lake/desi/reports"


def test_published_artifacts_show_in_the_ui_as_markdown_and_links(tmp_path):
    settings = load_settings(env={"ASTROLAB_HOME": str(tmp_path)})
    lake = build_lake(settings)
    image = lake.run_report_dir("r1") / "sky.png"
    image.write_bytes(PNG)
    docs = lake.data_docs_dir() / "index.html"
    docs.parent.mkdir(parents=True)
    docs.write_text("<html></html>")

    @flow
    def publish() -> tuple[str, str]:
        return (publish_image(image, "test-sky", "sky density", settings, lake),
                publish_link(docs, "test-docs", "Data Docs", settings, lake))

    image_url, docs_url = publish()
    assert image_url == "http://localhost:8765/runs/r1/sky.png"
    shown = Artifact.get("test-sky")
    assert shown.type == "markdown" and embedded_png(shown.data) == PNG and image_url in shown.data
    link = Artifact.get("test-docs")
    assert f"[Data Docs]({docs_url})" in link.data  # Prefect stores a link artifact as markdown
