"""`python -m bench [NAME] [options]`: run one benchmark (default: all known, with defaults).

    python -m bench                      every benchmark below
    python -m bench plugin_overhead      bench/plugin_overhead.py (see its --help)
    python -m bench analyze              bench/analyze.py (see its --help)
    python -m bench correlate [--big]    bench/correlate.py (see its --help)
    python -m bench memory               bench/memory.py (see its --help)
"""
from __future__ import annotations

import importlib
import sys

BENCHES = ("plugin_overhead", "analyze", "correlate", "memory")


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    if argv and not argv[0].startswith("-"):
        name, rest = argv[0], argv[1:]
        if name not in BENCHES:
            print(f"bench: unknown benchmark {name!r} (known: {', '.join(BENCHES)})", file=sys.stderr)
            return 2
        return importlib.import_module(f"bench.{name}").main(rest) or 0
    rc = 0
    for name in BENCHES:
        print(f"== {name}")
        rc |= importlib.import_module(f"bench.{name}").main(argv) or 0
    return rc


if __name__ == "__main__":
    sys.exit(main())
