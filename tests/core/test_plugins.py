"""Plugin discovery through real entry points, disabling, broken plugins, hook validation."""

from __future__ import annotations

import pytest

from himalia.errors import PluginError
from himalia.plugins import load_plugins

HELLO = """
from aiohttp import web
from himalia import Route, hookimpl

async def hello(request):
    return web.json_response({"hello": "world"})

@hookimpl
def himalia_routes(config):
    return [Route("GET", "/api/hello", hello)]
"""


def test_entry_point_plugin_is_discovered_and_registered(plugin_site):
    plugin_site("himalia-hello", {"hello": HELLO}, version="2.3")
    loaded = load_plugins()
    info = loaded.infos["hello"]
    assert (info.distribution, info.version, info.error) == ("himalia-hello", "2.3", None)
    assert info.hooks == ["himalia_routes"]
    assert loaded.pm.get_plugin("hello") is not None
    # the default plugins are found the same way, as a third party's would be
    assert {"auth", "contents", "kernels", "sessions", "gateway"} <= set(loaded.infos)
    assert loaded.infos["auth"].distribution == "himalia"


async def test_entry_point_plugin_serves_its_route(plugin_site, himalia_server):
    plugin_site("himalia-hello", {"hello": HELLO})
    async with himalia_server() as server:
        r = await server.get("/api/hello")
        assert r.status == 200
        assert await r.json() == {"hello": "world"}


def test_disabled_plugin_is_not_imported(plugin_site):
    plugin_site("himalia-broken", {"broken": "raise RuntimeError('must never be imported')"})
    loaded = load_plugins(["broken"])
    info = loaded.infos["broken"]
    assert info.disabled and info.error is None
    assert loaded.pm.get_plugin("broken") is None
    loaded.raise_for_errors()  # nothing to report


def test_broken_plugin_fails_closed_with_one_line(plugin_site):
    plugin_site("himalia-broken", {"broken": "import no_such_module_anywhere"}, version="0.3")
    loaded = load_plugins()
    assert "ModuleNotFoundError" in loaded.infos["broken"].error
    assert "no_such_module_anywhere" in loaded.infos["broken"].traceback
    with pytest.raises(PluginError) as e:
        loaded.raise_for_errors()
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith("plugin 'broken' (himalia-broken 0.3) failed to import")
    assert message.endswith("disable it with --disable broken")


def test_misspelt_hook_is_an_error(plugin_site):
    plugin_site("himalia-typo", {"typo": """
        from himalia import hookimpl

        @hookimpl
        def himalia_route(config):
            return []
    """})
    loaded = load_plugins()
    assert "unknown hook" in loaded.infos["typo"].error
    assert "himalia_route" in loaded.infos["typo"].error
    assert loaded.pm.get_plugin("typo") is None


def test_misspelt_hook_names_the_hook_once_and_suggests_the_right_one(plugin_site):
    plugin_site("himalia-typo", {"typo": """
        from himalia import hookimpl

        @hookimpl
        def himalia_kernel_stoped(kernel_id, reason):
            pass

        @hookimpl
        def himalia_zzz_nothing_like_it():
            pass
    """})
    error = load_plugins().infos["typo"].error
    assert error == ("implements unknown hooks 'himalia_kernel_stoped' (did you mean "
                     "'himalia_kernel_stopped'?), 'himalia_zzz_nothing_like_it'")


def test_async_hook_is_refused_naming_the_plugin(plugin_site):
    plugin_site("himalia-asy", {"asy": """
        from himalia import hookimpl

        @hookimpl
        async def himalia_routes(config):
            return []
    """})
    loaded = load_plugins()
    assert "himalia_routes as async" in loaded.infos["asy"].error
    with pytest.raises(PluginError, match="plugin 'asy'"):
        loaded.raise_for_errors()



@pytest.mark.parametrize("option", ["tryfirst=True", "trylast=True", "hookwrapper=True", "wrapper=True"])
def test_hookimpl_ordering_and_wrapper_options_are_refused_naming_the_plugin(plugin_site, option):
    body = "yield" if "wrapper" in option else "return []"
    plugin_site("himalia-eager", {"eager": f"""
        from himalia import hookimpl

        @hookimpl({option})
        def himalia_routes(config):
            {body}
    """})
    loaded = load_plugins()
    error = loaded.infos["eager"].error
    assert error == (f"uses @hookimpl({option.split('=')[0]}) on himalia_routes; Himalia calls every "
                     "implementation itself, in plugin-name order, so tryfirst, trylast, wrapper and "
                     "hookwrapper would be ignored: use a plain @hookimpl")
    assert loaded.pm.get_plugin("eager") is None
    with pytest.raises(PluginError, match="plugin 'eager' .*uses @hookimpl"):
        loaded.raise_for_errors()


async def test_a_server_refuses_a_plugin_with_a_tryfirst_hookimpl(himalia_server):
    from himalia import hookimpl

    class Eager:
        @hookimpl(tryfirst=True)
        def himalia_routes(self, config):
            return []

    with pytest.raises(PluginError, match="plugin 'eager' .*uses @hookimpl\\(tryfirst\\) on himalia_routes"):
        async with himalia_server(plugins={"eager": Eager()}):
            pass  # pragma: no cover

def test_duplicate_plugin_names_are_reported(plugin_site):
    plugin_site("himalia-auth-clone", {"auth": "x = 1"})
    loaded = load_plugins()
    dup = [i for n, i in loaded.infos.items() if n.startswith("auth (")]
    assert len(dup) == 1 and "same name" in dup[0].error
    with pytest.raises(PluginError, match="same name"):
        loaded.raise_for_errors()


def test_hook_returning_a_coroutine_is_a_startup_error(plugin_site):
    from himalia.hooks import Hooks

    plugin_site("himalia-sneaky", {"sneaky": """
        from himalia import hookimpl

        async def later():
            return []

        @hookimpl
        def himalia_routes(config):
            return later()
    """})
    loaded = load_plugins()
    with pytest.raises(PluginError, match="plugin 'sneaky' returned an awaitable from himalia_routes"):
        Hooks(loaded.pm).routes(config=None)


def test_one_manager_per_load():
    a, b = load_plugins(), load_plugins()
    assert a.pm is not b.pm
