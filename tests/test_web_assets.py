"""The pages' assets: the committed livekit-client bundle is the version the build recipe pins,
the pages load nothing from elsewhere, the main controls have accessible names, and the wheel
carries the files."""

from __future__ import annotations

import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from app.web import STATIC_DIR

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
PAGES = ("playground.html", "console.html")
SCRIPTS = ("playground.js", "console.js")


def test_the_bundle_is_the_pinned_livekit_client() -> None:
    package = json.loads((WEB / "package.json").read_text())
    pinned = package["dependencies"]["livekit-client"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "pin an exact version"
    assert re.fullmatch(r"\d+\.\d+\.\d+", package["devDependencies"]["esbuild"])
    lock = json.loads((WEB / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/livekit-client"]["version"] == pinned
    assert lock["packages"][""]["dependencies"]["livekit-client"] == pinned
    bundle = (STATIC_DIR / "livekit-client.esm.js").read_text()
    banner = bundle.splitlines()[0]
    assert banner.startswith(f"/*! livekit-client {pinned} (npm), bundled with esbuild ")
    esbuild = package["devDependencies"]["esbuild"]
    assert f"esbuild {esbuild} " in banner
    # the library's own version constant, compiled in
    assert f'"{pinned}"' in bundle


@pytest.mark.parametrize("name", PAGES + SCRIPTS + ("style.css",))
def test_pages_load_nothing_from_elsewhere(name: str) -> None:
    # The SVG namespace is a name, never fetched.
    text = (STATIC_DIR / name).read_text().replace('"http://www.w3.org/2000/svg"', "")
    urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text)
    assert urls == [], f"{name} refers to {urls}"
    for src in re.findall(r'(?:src|href)="([^"]+)"', text):
        assert src.startswith("/web/"), src
    for module in re.findall(r'from "([^"]+)"', text):
        assert module.startswith("/web/"), module


class _Controls(HTMLParser):
    """Buttons with their text, and labels with their ``for``."""

    def __init__(self) -> None:
        super().__init__()
        self.buttons: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self._open: tuple[str, str] | None = None
        self.aria: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if "aria-label" in a and "id" in a:
            self.aria[a["id"]] = a["aria-label"]
        if tag == "button":
            self._open = ("button", a.get("id", ""))
        elif tag == "label":
            self._open = ("label", a.get("for", ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None and data.strip():
            kind, key = self._open
            target = self.buttons if kind == "button" else self.labels
            target[key] = (target.get(key, "") + " " + data.strip()).strip()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("button", "label"):
            self._open = None


def test_the_playground_controls_have_accessible_names() -> None:
    parser = _Controls()
    parser.feed((STATIC_DIR / "playground.html").read_text())
    names = set(parser.buttons.values())
    assert {"Start call", "Leave", "Send", "Microphone"} <= names
    assert parser.labels["message"] == "Message"
    assert parser.aria["mic-level"] == "Microphone level"
    assert parser.aria["transcript"] == "Transcript" and parser.aria["todo"] == "Todo list"


def test_the_console_sign_in_has_accessible_names() -> None:
    parser = _Controls()
    parser.feed((STATIC_DIR / "console.html").read_text())
    assert parser.labels["admin-token"] == "Admin token"
    assert "Sign in" in parser.buttons.values()


def test_the_wheel_carries_the_static_files() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "static/*" in pyproject["tool"]["setuptools"]["package-data"]["app.web"]
    for name in (*PAGES, *SCRIPTS, "style.css", "livekit-client.esm.js"):
        assert (STATIC_DIR / name).is_file(), name
