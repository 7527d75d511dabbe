"""tcpstall's Python companion: run tshark with the tcpstall plugin and make sense of the result.

Bulk work streams `tshark -T fields` (see `pytshark_ext.tshark`). For interactive exploration,
`open_capture` gives a pyshark capture with the plugin loaded — convenient, but pyshark parses
PDML/JSON per packet and is hundreds of times slower than the fields path.
"""
from __future__ import annotations

__version__ = "0.1.0"


def open_capture(path, *, two_pass: bool = True, display_filter: str = "frame", prefs=None,
                 tshark_path=None, **kwargs):
    """A `pyshark.FileCapture` of `path` with the tcpstall plugin loaded, so that
    `pkt.tcpstall.hol_hold_ms` and friends work in a pyshark loop.

    two_pass (default) lets the plugin annotate frames with what it learns later (held frames
    learn their release); pyshark then needs a display filter, "frame" keeps every packet.
    `prefs` maps tcpstall pref names to values (e.g. {"tcp_retries2": 6}); other keyword
    arguments go to pyshark.FileCapture unchanged. As root on Wireshark 4.2+, pyshark is given a
    wrapper that runs tshark unprivileged (see pytshark_ext.privileges).
    """
    import pyshark  # imported here: the bulk path must not pay for it

    from .privileges import PrivilegeError, wrapper_executable
    from .tshark import TsharkFailed, find_tshark, plugin_args, pref_args

    tshark = find_tshark(tshark_path)
    params = plugin_args(tshark) + pref_args(prefs)
    try:
        tshark = wrapper_executable(tshark)
    except PrivilegeError as exc:
        raise TsharkFailed(str(exc)) from None
    if two_pass:
        params.append("-2")
    params += list(kwargs.pop("custom_parameters", None) or [])
    return pyshark.FileCapture(str(path), display_filter=display_filter, tshark_path=tshark,
                               custom_parameters=params, **kwargs)
