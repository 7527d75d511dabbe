"""Run tshark so that the tcpstall Lua plugin loads when tcpstall itself runs as root.

Since Wireshark 4.2 a process started as root (uid or gid 0: wsutil's started_with_special_privs)
silently skips `-X lua_script:` and the personal Lua plugin folder unless the system's init.lua
(in the "Global Lua Plugins" folder) sets `run_user_scripts_when_superuser = true`. Debian 12's
4.0 ships an init.lua that sets it; Debian 13's 4.4 ships none. Rather than change the system's
Wireshark configuration, tcpstall as root runs tshark as an unprivileged user, as Wireshark advises:

* as `nobody` (TCPSTALL_TSHARK_USER names another user), supplementary groups cleared, no new
  privileges, HOME pointing nowhere: no personal preferences or plugins, so the results do not
  depend on root's Wireshark profile, and nothing is written;
* keeping the one capability CAP_DAC_READ_SEARCH when this process holds it (`setpriv
  --ambient-caps`): tshark then opens the capture and the plugin by the same names wherever root
  could (any format, seeking, `-2`, file names in its messages) and can write nothing that
  `nobody` could not;
* without that capability (a container's default capability set lacks it) the capture is opened
  here and handed over as an inherited descriptor that tshark opens as /proc/self/fd/N (works when
  the file's own mode lets others read it, whatever its folders allow; seeking and `-2` work), and
  the plugin is copied to a private folder that user can read.

This is done whenever tcpstall runs as root, whatever the Wireshark version: whether root may run
Lua scripts depends on an init.lua only tshark can evaluate (Debian 12's 4.0 allows it, another
distribution's 4.0 may not), a probe would cost a tshark start in every tcpstall process, and not
running dissectors as root is Wireshark's advice anyway; 4.0 and 4.4 thus take the same path.
TCPSTALL_TSHARK_USER=root keeps tshark running as root (for a system whose init.lua allows it).
Without a `nobody` user (and no TCPSTALL_TSHARK_USER), tshark runs as root as before.
"""
from __future__ import annotations

import atexit
import os
import pwd
import shlex
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from .paths import PLUGIN_MAIN, plugin_dir, plugin_files, plugin_script

USER_ENV = "TCPSTALL_TSHARK_USER"
DEFAULT_USER = "nobody"
CAP_DAC_READ_SEARCH = 2               # linux/capability.h
# Wireshark's personal settings come from these: the unprivileged tshark gets none of them
PERSONAL_ENV = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "WIRESHARK_CONFIG_DIR", "WIRESHARK_DATA_DIR")
NO_HOME = "/nonexistent"

ROOT_HINT = ("as root, Wireshark 4.2 and newer skip Lua plugins unless run_user_scripts_when_superuser = true "
             "is set in init.lua of the Global Lua Plugins folder (tshark -G folders)")


class PrivilegeError(Exception):
    """tshark would have to run unprivileged and cannot; str() is one line with the fix."""


@dataclass(frozen=True)
class Identity:
    """Who tshark runs as when tcpstall runs as root."""
    user: str
    uid: int
    gid: int
    read_cap: bool        # keeps CAP_DAC_READ_SEARCH: reads by path whatever the file modes

    @property
    def describe(self) -> str:
        how = "keeping only CAP_DAC_READ_SEARCH" if self.read_cap else \
            "without CAP_DAC_READ_SEARCH: captures are handed over as open files"
        return (f"as {self.user} ({how}), not as root: Wireshark 4.2+ skips Lua plugins for root, and tcpstall "
                f"runs none as root on any version ({USER_ENV}=root to change that)")


_decision: List[Optional[Identity]] = []
_lock = threading.Lock()


def is_superuser() -> bool:
    """What Wireshark calls started with special privileges (uid or gid 0, or set-id)."""
    return 0 in (os.getuid(), os.geteuid(), os.getgid(), os.getegid())


def run_as() -> Optional[Identity]:
    """The identity tcpstall runs tshark as, or None to run it as we are."""
    if not is_superuser():
        return None
    with _lock:
        if not _decision:
            _decision.append(_identity())
        return _decision[0]


def _identity() -> Optional[Identity]:
    name = os.environ.get(USER_ENV) or DEFAULT_USER
    if name == "root":
        return None                     # asked for: tshark's own rules for root apply
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if name == DEFAULT_USER:        # not asked for: run as root, as tcpstall always did
            return None
        raise PrivilegeError(f"{USER_ENV}={name}: no such user (name an unprivileged user, or root to run "
                             "tshark as root)") from None
    if pw.pw_uid == 0 or pw.pw_gid == 0:
        raise PrivilegeError(f"{USER_ENV}={name} is not unprivileged (uid {pw.pw_uid}, gid {pw.pw_gid}): name "
                             "a user whose uid and group are not 0, or root to run tshark as root")
    return Identity(name, pw.pw_uid, pw.pw_gid, _holds_read_cap() and shutil.which("setpriv") is not None)


def _holds_read_cap() -> bool:
    """CAP_DAC_READ_SEARCH in our effective and bounding sets (/proc/self/status)."""
    caps = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("CapEff", "CapBnd"):
                    caps[key] = int(value.strip(), 16)
    except (OSError, ValueError):
        return False
    bit = 1 << CAP_DAC_READ_SEARCH
    return all(caps.get(k, 0) & bit for k in ("CapEff", "CapBnd"))


@dataclass
class Launch:
    """How to start one tshark command: argv, environment and descriptors for subprocess.Popen.
    `real_names` turns the /proc/self/fd/N name tshark saw back into the capture's name."""
    argv: List[str]
    popen_kwargs: Dict[str, object] = field(default_factory=dict)
    _fd: Optional[int] = None
    _fd_name: Optional[str] = None
    _capture: Optional[str] = None

    def real_names(self, text: str) -> str:
        return text.replace(self._fd_name, self._capture) if self._fd_name else text

    def started(self) -> None:
        """Call once the child holds its copy of the descriptor (after Popen), or on failure."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def prepare(cmd: List[str]) -> Launch:
    """The Launch for a tshark command line (`cmd[0]` is tshark; the capture follows `-r`)."""
    ident = run_as()
    if ident is None:
        return Launch(list(cmd))
    env = {k: v for k, v in os.environ.items() if k not in PERSONAL_ENV}
    env["HOME"] = NO_HOME
    argv = list(cmd)
    launch = Launch(argv, {"env": env})
    if ident.read_cap:
        launch.argv = _setpriv(ident) + argv
        return launch
    launch.popen_kwargs.update(user=ident.uid, group=ident.gid, extra_groups=[])
    if "-r" in argv[1:-1]:
        at = argv.index("-r", 1) + 1
        capture = argv[at]
        try:
            fd = os.open(capture, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return launch            # tshark says what is wrong with it
        launch._fd, launch._capture = fd, capture
        launch._fd_name = argv[at] = f"/proc/self/fd/{fd}"
        launch.popen_kwargs["pass_fds"] = (fd,)
    return launch


def plugin_script_for() -> Path:
    """The plugin's entry script where tshark, run the way `prepare` runs it, can read it."""
    ident = run_as()
    if ident is None or ident.read_cap:
        return plugin_script()
    return readable_plugin_copy() / PLUGIN_MAIN


def _setpriv(ident: Identity) -> List[str]:
    keep = ["--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"] if ident.read_cap else []
    return ["setpriv", f"--reuid={ident.uid}", f"--regid={ident.gid}", "--clear-groups", *keep,
            "--no-new-privs", "--"]


_copy: List[Path] = []
_wrappers: Dict[str, str] = {}


def readable_plugin_copy() -> Path:
    """A copy of the plugin (tcpstall.lua, tcpstall/*.lua) in a fresh folder every user can read,
    for a tshark without CAP_DAC_READ_SEARCH (the checkout may lie under /root); removed at exit."""
    with _lock:
        if not _copy:
            folder = Path(tempfile.mkdtemp(prefix="tcpstall-plugin-"))
            atexit.register(shutil.rmtree, folder, True)
            src = plugin_dir()
            for rel in plugin_files(src):
                (folder / rel).parent.mkdir(mode=0o755, exist_ok=True)
                shutil.copyfile(src / rel, folder / rel)
                os.chmod(folder / rel, 0o644)
            for d in {folder} | {(folder / rel).parent for rel in plugin_files(src)}:
                os.chmod(d, 0o755)
            _copy.append(folder)
        return _copy[0]


def wrapper_executable(tshark: str) -> str:
    """An executable that runs `tshark` the way `prepare` would (for pyshark, which starts tshark
    itself): `tshark` itself when no change is needed. Captures are passed by name, so without
    CAP_DAC_READ_SEARCH the unprivileged user must be able to open them."""
    ident = run_as()
    if ident is None:
        return tshark
    if shutil.which("setpriv") is None:
        raise PrivilegeError(f"{ROOT_HINT}; running tshark as {ident.user} for pyshark needs setpriv "
                             "(util-linux), which is not installed")
    with _lock:
        if tshark not in _wrappers:
            folder = Path(tempfile.mkdtemp(prefix="tcpstall-tshark-"))
            atexit.register(shutil.rmtree, folder, True)
            os.chmod(folder, 0o755)
            script = folder / "tshark"
            script.write_text(f"#!/bin/sh\n# {ident.describe}\n"
                              + "".join(f"unset {k}\n" for k in PERSONAL_ENV)
                              + f"HOME={NO_HOME} exec {shlex.join(_setpriv(ident) + [tshark])} \"$@\"\n")
            script.chmod(0o755)
            _wrappers[tshark] = str(script)
        return _wrappers[tshark]


def describe() -> str:
    """One line for `tcpstall doctor`: as whom tshark runs and why."""
    if not is_superuser():
        return f"as {pwd.getpwuid(os.getuid()).pw_name} (not root: Lua plugins load as usual)"
    try:
        ident = run_as()
    except PrivilegeError as exc:
        return f"CANNOT run it unprivileged: {exc}"
    if ident is None:
        why = f"{USER_ENV}=root" if os.environ.get(USER_ENV) == "root" else f"no user {DEFAULT_USER!r}"
        return f"as root ({why}; {ROOT_HINT})"
    return ident.describe


def reset() -> None:
    """Forget the decision (tests change the environment)."""
    with _lock:
        _decision.clear()

