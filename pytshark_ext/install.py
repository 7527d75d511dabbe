"""Install the Lua plugin where the Wireshark GUI finds it, and check what is installed.

Wireshark loads every *.lua file at the top of its personal Lua plugin folder; our modules live
in a `tcpstall/` subfolder next to tcpstall.lua, which Wireshark does not load by itself (the
entry script loads them relative to its own location).
"""
from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .paths import PLUGIN_MAIN, PLUGIN_MODULE_DIR, plugin_dir
from .tshark import tshark_folders

PERSONAL_LUA_FOLDER = "Personal Lua Plugins"


def personal_lua_folder(tshark: str) -> Optional[Path]:
    folder = tshark_folders(tshark).get(PERSONAL_LUA_FOLDER)
    return Path(folder) if folder else None


def plugin_files(src: Optional[Path] = None) -> List[Path]:
    """Our plugin files, relative to the plugin folder: tcpstall.lua and tcpstall/*.lua."""
    src = src or plugin_dir()
    files = [Path(PLUGIN_MAIN)]
    files += sorted(p.relative_to(src) for p in (src / PLUGIN_MODULE_DIR).glob("*.lua"))
    return files


@dataclass(frozen=True)
class InstallState:
    folder: Path
    present: bool        # tcpstall.lua exists there
    same: bool           # every file identical to this package's copy
    differing: List[str]


def installed_state(folder: Path) -> InstallState:
    src = plugin_dir()
    differing = [str(rel) for rel in plugin_files(src)
                 if not (folder / rel).is_file() or not filecmp.cmp(src / rel, folder / rel, shallow=False)]
    return InstallState(folder, (folder / PLUGIN_MAIN).is_file(), not differing, differing)


def install(folder: Path) -> List[str]:
    """Copy the plugin into `folder`; returns what was done, one line per file (idempotent:
    identical files are left alone and reported as up to date)."""
    src = plugin_dir()
    done = []
    shipped = plugin_files(src)
    for rel in shipped:
        target = folder / rel
        if target.is_file() and filecmp.cmp(src / rel, target, shallow=False):
            done.append(f"up to date  {target}")
            continue
        verb = "updated    " if target.exists() else "installed  "
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(src / rel, tmp)
        tmp.replace(target)          # atomic: the GUI never loads a half-written file
        done.append(f"{verb} {target}")
    for old in sorted((folder / PLUGIN_MODULE_DIR).glob("*.lua")):
        if old.relative_to(folder) not in shipped:   # a module this version no longer ships
            old.unlink()
            done.append(f"removed     {old}")
    return done


def uninstall(folder: Path) -> List[str]:
    """Remove only our files from `folder`."""
    done = []
    main = folder / PLUGIN_MAIN
    if main.is_file():
        main.unlink()
        done.append(f"removed     {main}")
    moddir = folder / PLUGIN_MODULE_DIR
    if moddir.is_dir():
        for p in sorted(moddir.glob("*.lua")):
            p.unlink()
            done.append(f"removed     {p}")
        if not any(moddir.iterdir()):
            moddir.rmdir()
    return done or [f"nothing to remove in {folder}"]
