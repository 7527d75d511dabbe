"""Where the Lua plugin lives: the source tree (editable install, a checkout) or the data files
a wheel install puts under <prefix>/share/tcpstall/plugins."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

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


def plugin_files(src: Optional[Path] = None) -> List[Path]:
    """Our plugin files, relative to the plugin folder: tcpstall.lua and tcpstall/*.lua."""
    src = src or plugin_dir()
    files = [Path(PLUGIN_MAIN)]
    files += sorted(p.relative_to(src) for p in (src / PLUGIN_MODULE_DIR).glob("*.lua"))
    return files
