"""Install the Lua plugin where the Wireshark GUI finds it, and check what is installed.

Layout: `<Lua plugin folder>/tcpstall/tcpstall.lua` with its modules in
`<Lua plugin folder>/tcpstall/tcpstall/*.lua` (tcpstall.lua loads them relative to its own
location). Wireshark loads every *.lua file of its Lua plugin folders, subfolders included (4.0
and 4.4 alike; the modules do nothing when loaded that way). The entry script sits in a subfolder
because Wireshark 4.4, as root with `run_user_scripts_when_superuser = true`, loads the scripts at
the top of the personal folder through `require()` with a package.path that lacks that folder
("module 'tcpstall' not found"), while it loads those in subfolders. Copies in the old layout
(tcpstall.lua and tcpstall/<modules> at the top) are replaced by `install` and removed by `uninstall`.
"""
from __future__ import annotations

import filecmp
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from .paths import PLUGIN_MAIN, PLUGIN_MODULE_DIR, plugin_dir
from .tshark import tshark_folders

PERSONAL_LUA_FOLDER = "Personal Lua Plugins"
GLOBAL_LUA_FOLDER = "Global Lua Plugins"
INSTALL_SUBFOLDER = "tcpstall"


def personal_lua_folder(tshark: str) -> Optional[Path]:
    """The personal Lua plugin folder of whoever runs tcpstall (where the GUI looks)."""
    return lua_plugin_folders(tshark, as_tcpstall_runs_it=False).get(PERSONAL_LUA_FOLDER)


def global_lua_folder(tshark: str) -> Optional[Path]:
    return lua_plugin_folders(tshark, as_tcpstall_runs_it=False).get(GLOBAL_LUA_FOLDER)


def lua_plugin_folders(tshark: str, as_tcpstall_runs_it: bool = True) -> Dict[str, Path]:
    """{"Personal Lua Plugins": path, "Global Lua Plugins": path} as tshark reports them (see
    tshark_folders)."""
    folders = tshark_folders(tshark, as_tcpstall_runs_it=as_tcpstall_runs_it)
    return {name: Path(folders[name]) for name in (PERSONAL_LUA_FOLDER, GLOBAL_LUA_FOLDER) if folders.get(name)}


def plugin_files(src: Optional[Path] = None) -> List[Path]:
    """Our plugin files, relative to the plugin folder: tcpstall.lua and tcpstall/*.lua."""
    src = src or plugin_dir()
    files = [Path(PLUGIN_MAIN)]
    files += sorted(p.relative_to(src) for p in (src / PLUGIN_MODULE_DIR).glob("*.lua"))
    return files


def install_dir(folder: Path) -> Path:
    """Where our files go inside a Lua plugin folder."""
    return folder / INSTALL_SUBFOLDER


def _old_layout_files(folder: Path) -> List[Path]:
    """Files of a copy installed in the old layout (tcpstall.lua and tcpstall/<module>.lua at the top)."""
    old = [folder / PLUGIN_MAIN] if (folder / PLUGIN_MAIN).is_file() else []
    return old + sorted(p for p in (folder / PLUGIN_MODULE_DIR).glob("*.lua") if p.name != PLUGIN_MAIN)


@dataclass(frozen=True)
class InstallState:
    folder: Path
    present: bool        # a tcpstall.lua of ours is there (either layout)
    same: bool           # every file identical to this package's copy, in the current layout
    differing: List[str]

    @property
    def entry(self) -> Path:
        return install_dir(self.folder) / PLUGIN_MAIN


def installed_state(folder: Path) -> InstallState:
    src = plugin_dir()
    target = install_dir(folder)
    old = _old_layout_files(folder)
    differing = [str(rel) for rel in plugin_files(src)
                 if not (target / rel).is_file() or not filecmp.cmp(src / rel, target / rel, shallow=False)]
    differing += [f"{p.relative_to(folder)} (old layout)" for p in old]
    present = (target / PLUGIN_MAIN).is_file() or (folder / PLUGIN_MAIN) in old
    return InstallState(folder, present, not differing, differing)


def install(folder: Path) -> List[str]:
    """Copy the plugin into `folder`; returns what was done, one line per file (idempotent:
    identical files are left alone and reported as up to date)."""
    src = plugin_dir()
    target = install_dir(folder)
    done = [f"removed     {p}  (old layout)" for p in _old_layout_files(folder)]
    for p in _old_layout_files(folder):
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
    for p in dict.fromkeys(_old_layout_files(folder) + ours):
        if p.is_file():
            p.unlink()
            done.append(f"removed     {p}")
    for d in (target / PLUGIN_MODULE_DIR, target):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return done or [f"nothing to remove in {folder}"]
