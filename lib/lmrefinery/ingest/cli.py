"""`lmrefinery ledger ...` and `lmrefinery formats`: the input ledger and the read formats."""
from __future__ import annotations

import json


def cmd_ledger(a) -> int:
    from .ledger import Ledger, default_location

    uri = a.ledger or default_location(a.output)
    led = Ledger(uri)
    if a.action == "show":
        print(json.dumps({"ledger": uri, "objects": led.entries}, indent=1, sort_keys=True))
    elif a.action == "forget":
        n = led.forget(a.pattern)
        print(f"forgot {n} objects in {uri}")
    return 0


def cmd_formats(a) -> int:
    from . import _load_formats
    from .formats import OPTIONS, READERS

    _load_formats()
    for name in sorted(READERS):
        doc = (READERS[name].__doc__ or "").strip().splitlines()
        print(f"{name:18s} {doc[0] if doc else ''}")
        if getattr(a, "options", False):
            for key, f in OPTIONS[name].model_fields.items():
                default = f.get_default(call_default_factory=True)
                print(f"    options.{key} = {json.dumps(default)}{' - ' + f.description if f.description else ''}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("ledger", help="show or edit the input ledger used by `run --new-only`")
    p.add_argument("action", choices=["show", "forget"],
                   help="show the recorded objects, or forget them so --new-only reads them again")
    p.add_argument("output", help="the recipe's output root (the ledger lives under it)")
    p.add_argument("--ledger", help="ledger URI, if not the default <output>/_ledger/inputs.json")
    p.add_argument("--pattern", help="forget: only objects matching this glob (default: all)")
    p.set_defaults(fn=cmd_ledger)

    p = sub.add_parser("formats", help="list the input formats the read stage knows")
    p.add_argument("--options", action="store_true", help="also list each format's options and defaults")
    p.set_defaults(fn=cmd_formats)
