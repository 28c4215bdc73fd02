"""The `himalia_server` fixture plugin authors use: its options do what docs/plugins.md says."""

from __future__ import annotations

from himalia import CONFIG


async def test_config_path_is_read_and_relative_paths_resolve_against_it(tmp_path, himalia_server):
    conf_dir = tmp_path / "conf"
    (conf_dir / "notebooks").mkdir(parents=True)
    conf = conf_dir / "himalia.toml"
    conf.write_text('[server]\nroot_dir = "notebooks"\n[plugins.auth]\ntoken = "from-the-file"\n')
    async with himalia_server(config_path=conf) as server:
        assert server.token == "from-the-file"
        assert server.app[CONFIG].path == conf.resolve()
        assert server.app[CONFIG].server.root_dir == str((conf_dir / "notebooks").resolve())
        assert server.root_dir == (conf_dir / "notebooks").resolve()
        assert (await server.get("/api/status")).status == 200


async def test_config_dict_overrides_the_file_key_by_key(tmp_path, himalia_server):
    conf = tmp_path / "himalia.toml"
    conf.write_text('[plugins.auth]\ntoken = "from-the-file"\ncookie_max_age = 60\n')
    async with himalia_server(config_path=str(conf),
                              config={"plugins": {"auth": {"token": "from-the-dict"}}}) as server:
        assert server.token == "from-the-dict"
        assert server.app[CONFIG].section("auth").cookie_max_age == 60
        # the file sets no root_dir: the fixture's temporary one is served
        assert server.app[CONFIG].server.root_dir == str(tmp_path / "root")



async def test_config_path_to_no_file_only_anchors_relative_paths(tmp_path, himalia_server):
    (tmp_path / "etc" / "nb").mkdir(parents=True)
    async with himalia_server(config_path=tmp_path / "etc" / "himalia.toml",
                              config={"server": {"root_dir": "nb"}}) as server:
        assert server.root_dir == (tmp_path / "etc" / "nb").resolve()
