"""Where the Lua plugin lives: the source tree (editable install, a checkout) or the data files
a wheel install puts under <prefix>/share/tcpstall/plugins."""
from __future__ import annotations

import os
import sys
from pathlib import Path

PLUGIN_MAIN = "tcpstall.lua"
PLUGIN_MODULE_DIR = "tcpstall"


def plugin_dir() -> Path:
    """The folder holding tcpstall.lua and its tcpstall/ modules. TCPSTALL_PLUGINS overrides."""
    candidates = []
    if os.environ.get("TCPSTALL_PLUGINS"):
        candidates.append(Path(os.environ["TCPSTALL_PLUGINS"]))
    candidates.append(Path(__file__).resolve().parent.parent / "plugins")
    candidates.append(Path(sys.prefix) / "share" / "tcpstall" / "plugins")
    for c in candidates:
        if (c / PLUGIN_MAIN).is_file():
            return c
    raise FileNotFoundError("tcpstall Lua plugin not found (looked in: "
                            + ", ".join(str(c) for c in candidates) + ")")


def plugin_script() -> Path:
    return plugin_dir() / PLUGIN_MAIN
