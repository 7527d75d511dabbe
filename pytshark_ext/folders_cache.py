"""What `tshark -G folders` said, kept between tcpstall runs.

Before it runs tshark with the plugin, tcpstall asks that tshark for its Lua plugin folders (an
installed copy of the plugin must not be loaded twice: tshark.plugin_args). That is one more
tshark start per tcpstall process, ~0.15 s: a third of `tcpstall analyze` on a small capture and
the same again for every process of `tcpstall scan`. The answer only changes with the tshark
binary, with who it runs as and with the environment Wireshark finds its folders from, so it is
kept under that key in `$XDG_CACHE_HOME/tcpstall/tshark-folders.json` (default `~/.cache`). The
plugin files in those folders are still looked at on every run; `tcpstall doctor` always asks
tshark itself. A cache that cannot be read or written is ignored.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence

MAX_ENTRIES = 16
# the environment variables Wireshark derives its personal and global folders from
FOLDER_ENV = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME")


def cache_file() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tcpstall" / "tshark-folders.json"


def key(tshark: str, argv: Sequence[str], popen_kwargs: Mapping[str, object]) -> Optional[str]:
    """The key of one `tshark -G folders` run: the binary (path, size, modification time), how it is
    started (a setpriv prefix, the user and group) and the folder environment it gets; None when
    the binary cannot be looked at (then nothing is cached)."""
    try:
        st = os.stat(tshark)
    except OSError:
        return None
    env = popen_kwargs.get("env") or os.environ
    folder_env = sorted((k, v) for k, v in env.items() if k in FOLDER_ENV or k.startswith("WIRESHARK_"))
    who = [popen_kwargs.get("user"), popen_kwargs.get("group")]
    return json.dumps([os.path.realpath(tshark), st.st_size, st.st_mtime_ns, list(argv[:-3]), who, folder_env])


def _load(path: Path) -> Dict[str, Dict[str, str]]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def get(cache_key: Optional[str]) -> Optional[Dict[str, str]]:
    if cache_key is None:
        return None
    folders = _load(cache_file()).get(cache_key)
    if isinstance(folders, dict) and all(isinstance(v, str) for v in folders.values()):
        return dict(folders)
    return None


def put(cache_key: Optional[str], folders: Mapping[str, str]) -> None:
    """Store (atomically: another tcpstall may be reading it); the oldest entries go first."""
    if cache_key is None or not folders:
        return
    path = cache_file()
    data = _load(path)
    data.pop(cache_key, None)
    data[cache_key] = dict(folders)
    for old in list(data)[:-MAX_ENTRIES]:
        del data[old]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tshark-folders.")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
