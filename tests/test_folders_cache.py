"""folders_cache.py: the plugin-folder probe (`tshark -G folders`) runs once per tshark binary and
environment, not once per tcpstall process."""
from __future__ import annotations

import os
import subprocess

import pytest

from pytshark_ext import folders_cache
from pytshark_ext import tshark as ts


def _no_tshark(*args, **kwargs):
    raise AssertionError(f"tshark started: {args[0] if args else kwargs}")


def test_the_next_process_does_not_ask_tshark_again(isolated_home, monkeypatch):
    tshark = ts.find_tshark()
    first = ts.plugin_args(tshark)                       # asks tshark, keeps the answer on disk
    assert folders_cache.cache_file().is_file()
    assert str(folders_cache.cache_file()).startswith(str(isolated_home))
    ts._plugin_args_cache.clear()                        # (a new tcpstall process)
    monkeypatch.setattr(subprocess, "run", _no_tshark)
    assert ts.plugin_args(tshark) == first
    # doctor and install-plugins always ask tshark itself
    with pytest.raises(AssertionError, match="tshark started"):
        ts.lua_plugin_folders(tshark)


def test_the_key_is_the_binary_how_it_is_started_and_its_folder_environment(tmp_path, monkeypatch):
    binary = tmp_path / "tshark"
    binary.write_text("#!/bin/sh\n")
    argv = [str(binary), "-G", "folders"]
    env = {"HOME": "/home/a", "PATH": "/usr/bin"}
    key = folders_cache.key(str(binary), argv, {"env": env})
    assert key == folders_cache.key(str(binary), argv, {"env": {**env, "PATH": "/bin"}})     # not a folder variable
    assert key != folders_cache.key(str(binary), argv, {"env": {**env, "HOME": "/home/b"}})
    assert key != folders_cache.key(str(binary), argv, {"env": {**env, "WIRESHARK_CONFIG_DIR": "/etc/ws"}})
    assert key != folders_cache.key(str(binary), ["setpriv", "--reuid=65534", *argv], {"env": env})
    assert key != folders_cache.key(str(binary), argv, {"env": env, "user": 65534, "group": 65534})
    st = binary.stat()
    os.utime(binary, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))                  # (an upgrade)
    assert key != folders_cache.key(str(binary), argv, {"env": env})
    assert folders_cache.key(str(tmp_path / "missing"), argv, {"env": env}) is None


def test_a_damaged_cache_is_ignored_and_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = folders_cache.cache_file()
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert folders_cache.get("k") is None
    folders_cache.put("k", {"Global Lua Plugins": "/usr/lib/wireshark/plugins"})
    assert folders_cache.get("k") == {"Global Lua Plugins": "/usr/lib/wireshark/plugins"}
    for n in range(folders_cache.MAX_ENTRIES + 3):
        folders_cache.put(f"k{n}", {"Global Lua Plugins": str(n)})
    assert folders_cache.get("k") is None and folders_cache.get(f"k{folders_cache.MAX_ENTRIES + 2}") is not None
    assert [p.name for p in path.parent.iterdir()] == [path.name]          # no temporary file left
