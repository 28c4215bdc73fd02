"""The hooks for web UIs: the root page (himalia_default_urls), page config keys (himalia_page_config)
and the notes `himalia plugins` prints (himalia_plugin_notes), with the core's own plugins only."""

from __future__ import annotations

from himalia import hookimpl
from himalia.hooks import Hooks
from himalia.plugins import load_plugins


class Offers:
    def __init__(self, url: str, keys: dict, note: str):
        self.url, self.keys, self.note = url, keys, note

    @hookimpl
    def himalia_default_urls(self, config):
        return [self.url]

    @hookimpl
    def himalia_page_config(self, app):
        return self.keys

    @hookimpl
    def himalia_plugin_notes(self, config):
        return [self.note]


def hooks(**plugins) -> Hooks:
    return Hooks(load_plugins(entry_points=False, extra=plugins).pm)


def test_first_default_url_by_plugin_name_and_merged_page_config():
    h = hooks(b=Offers("/b", {"k": "b", "only_b": 1}, "from b"), a=Offers("/a", {"k": "a"}, "from a"))
    assert h.default_url(None) == "/a"
    assert h.page_config(None) == {"k": "b", "only_b": 1}  # later names win, as for himalia_status
    assert h.plugin_notes(None) == {"a": ["from a"], "b": ["from b"]}
    assert hooks().default_url(None) is None and hooks().page_config(None) == {}


async def test_root_without_a_default_url_answers_json_and_with_one_redirects(himalia_server):
    async with himalia_server(entry_points=False, plugins={}, config={"server": {"allow_unauthenticated_access": True}}) as server:
        r = await server.get("/")
        assert r.status == 200 and (await r.json())["message"].startswith("Himalia")
    async with himalia_server(entry_points=False, plugins={"ui": Offers("/ui", {}, "")},
                              config={"server": {"allow_unauthenticated_access": True, "base_url": "/jh/"}}) as server:
        r = await server.get("/", allow_redirects=False)
        assert r.status == 302 and r.headers["Location"] == "/jh/ui"
