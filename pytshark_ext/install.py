"""Install the Lua plugin where the Wireshark GUI finds it (layout and the installed-copy check:
`installed`; the folders: `tshark.lua_plugin_folders`)."""
from __future__ import annotations

import filecmp
import shutil
from pathlib import Path
from typing import List, Optional

from .installed import install_dir, old_layout_files
from .paths import PLUGIN_MODULE_DIR, plugin_dir, plugin_files
from .tshark import GLOBAL_LUA_FOLDER, PERSONAL_LUA_FOLDER, lua_plugin_folders


def personal_lua_folder(tshark: str) -> Optional[Path]:
    """The personal Lua plugin folder of whoever runs tcpstall (where the GUI looks)."""
    return lua_plugin_folders(tshark, as_tcpstall_runs_it=False).get(PERSONAL_LUA_FOLDER)


def global_lua_folder(tshark: str) -> Optional[Path]:
    return lua_plugin_folders(tshark, as_tcpstall_runs_it=False).get(GLOBAL_LUA_FOLDER)


def install(folder: Path) -> List[str]:
    """Copy the plugin into `folder`; returns what was done, one line per file (idempotent:
    identical files are left alone and reported as up to date)."""
    src = plugin_dir()
    target = install_dir(folder)
    done = [f"removed     {p}  (old layout)" for p in old_layout_files(folder)]
    for p in old_layout_files(folder):
        p.unlink()
    shipped = plugin_files(src)
    for rel in shipped:
        dest = target / rel
        if dest.is_file() and filecmp.cmp(src / rel, dest, shallow=False):
            done.append(f"up to date  {dest}")
            continue
        verb = "updated    " if dest.exists() else "installed  "
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(src / rel, tmp)
        tmp.replace(dest)            # atomic: the GUI never loads a half-written file
        done.append(f"{verb} {dest}")
    for old in sorted((target / PLUGIN_MODULE_DIR).glob("*.lua")):
        if old.relative_to(target) not in shipped:   # a module this version no longer ships
            old.unlink()
            done.append(f"removed     {old}")
    return done


def uninstall(folder: Path) -> List[str]:
    """Remove only our files from `folder` (either layout), and our folders once empty."""
    target = install_dir(folder)
    ours = [target / rel for rel in plugin_files()] + sorted((target / PLUGIN_MODULE_DIR).glob("*.lua"))
    done = []
    for p in dict.fromkeys(old_layout_files(folder) + ours):
        if p.is_file():
            p.unlink()
            done.append(f"removed     {p}")
    for d in (target / PLUGIN_MODULE_DIR, target):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return done or [f"nothing to remove in {folder}"]
