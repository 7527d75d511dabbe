"""What a Lua plugin folder holds of ours: where an installed copy goes and whether it matches
this package's plugin. Filesystem only (no tshark), so that both `tshark` (which must not load a
second, different copy) and `install` (which writes the copy) use one definition of the layout.

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
from dataclasses import dataclass
from pathlib import Path
from typing import List

from .paths import PLUGIN_MAIN, PLUGIN_MODULE_DIR, plugin_dir, plugin_files

INSTALL_SUBFOLDER = "tcpstall"


def install_dir(folder: Path) -> Path:
    """Where our files go inside a Lua plugin folder."""
    return folder / INSTALL_SUBFOLDER


def old_layout_files(folder: Path) -> List[Path]:
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
    old = old_layout_files(folder)
    differing = [str(rel) for rel in plugin_files(src)
                 if not (target / rel).is_file() or not filecmp.cmp(src / rel, target / rel, shallow=False)]
    differing += [f"{p.relative_to(folder)} (old layout)" for p in old]
    present = (target / PLUGIN_MAIN).is_file() or (folder / PLUGIN_MAIN) in old
    return InstallState(folder, present, not differing, differing)
