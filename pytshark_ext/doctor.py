"""What `tcpstall doctor` checks: that tshark really loads the plugin, the way tcpstall runs it.

Loading is checked, not inferred: tshark is run with the same arguments and as the same user as
for an analysis (`-G plugins` says which tcpstall.lua copies it loaded, `-G fields` which
tcpstall fields they registered); whatever it printed as an error is reported as it said it.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import List, Optional

from . import privileges
from .paths import PLUGIN_MAIN
from .tshark import launch, plugin_args, tshark_error_line

# The stable field names of DESIGN.md section 3: a copy that lacks one is not ours or is broken.
CONTRACT_FIELDS = (
    "tcpstall.hol.hold_ms", "tcpstall.hol.released_bytes", "tcpstall.hol.max_hold_ms",
    "tcpstall.hol.release_frame", "tcpstall.hol.first_held_frame", "tcpstall.rwnd.window",
    "tcpstall.rwnd.scale", "tcpstall.rwnd.scale_inferred", "tcpstall.rwnd.cap_mbps",
    "tcpstall.rwnd.limited_ms", "tcpstall.retries.count", "tcpstall.retries.elapsed_s",
    "tcpstall.retries.abort_at_s", "tcpstall.retrans.trigger",
)


@dataclass(frozen=True)
class LoadCheck:
    via: str                    # "-X lua_script:PATH" or "the installed copy"
    loaded_from: List[str]      # tcpstall.lua files tshark lists among its Lua plugins
    fields: int                 # tcpstall.* fields registered
    missing: List[str]          # contract fields not registered
    error: Optional[str]        # tshark's own error line, when it printed one

    @property
    def ok(self) -> bool:
        return bool(self.loaded_from) and not self.missing and self.error is None


def _run(cmd: List[str]) -> subprocess.CompletedProcess:
    how = launch(cmd)
    return subprocess.run(how.argv, capture_output=True, text=True, errors="replace", timeout=300,
                          stdin=subprocess.DEVNULL, **how.popen_kwargs)


def check_plugin_loads(tshark: str) -> LoadCheck:
    """Run tshark as tcpstall runs it and see what of the plugin it loaded."""
    args = plugin_args(tshark)
    via = " ".join(args) if args else "the installed copy"
    listed = _run([tshark, "-G", "plugins", *args])
    # "NAME<TAB>VERSION<TAB>lua script<TAB>PATH" (4.0 names a -X script by the path it was given)
    loaded = [cols[-1].strip() for cols in (ln.split("\t") for ln in listed.stdout.splitlines())
              if "lua script" in cols and cols[-1].strip().endswith("/" + PLUGIN_MAIN)]
    fields = _run([tshark, "-G", "fields", *args])
    names = {cols[2] for cols in (ln.split("\t") for ln in fields.stdout.splitlines())
             if len(cols) > 2 and cols[0] == "F" and cols[2].startswith("tcpstall.")}
    stderr = "\n".join(p.stderr for p in (listed, fields) if p.stderr.strip())
    error = None
    if any(ln.startswith("tshark:") for ln in stderr.splitlines()) or fields.returncode != 0:
        error = tshark_error_line(stderr)
    return LoadCheck(via, loaded, len(names), [f for f in CONTRACT_FIELDS if f not in names], error)


def why_not_loaded(check: LoadCheck, lua: Optional[str]) -> str:
    """The fix for a plugin tshark did not load, as far as it can be told."""
    if lua is None:
        return "install a tshark built with Lua (Debian/Ubuntu: apt-get install tshark)"
    if check.error:
        return f"tshark said: {check.error}"
    if not check.loaded_from:
        if privileges.is_superuser() and privileges.run_as() is None:
            return (f"{privileges.ROOT_HINT}; tshark runs as root here ({privileges.describe()}): set "
                    f"{privileges.USER_ENV} to an unprivileged user, or run tcpstall as a normal user")
        return ("tshark loaded no tcpstall.lua and printed no error: is Lua disabled (enable_lua = false "
                "in an init.lua)?")
    return "the loaded copy lacks " + ", ".join(check.missing) + ": reinstall it (`tcpstall install-plugins`)"


def gui_note(version) -> Optional[str]:
    """For a root user of Wireshark 4.2+: the GUI and plain tshark skip the personal folder."""
    if not privileges.is_superuser() or version < (4, 2, 0):
        return None
    return ("as root, Wireshark 4.2+ (GUI and tshark) skips this personal folder: run Wireshark as a normal "
            "user, or `tcpstall install-plugins --global`, or set run_user_scripts_when_superuser = true "
            "in init.lua of the Global Lua Plugins folder (INSTALL.md)")
