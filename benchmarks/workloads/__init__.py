"""The workloads of the suite, one module each.

Importing this package registers every workload in
:data:`benchmarks.registry.WORKLOADS`, in the order of :data:`MODULES` (which
is the order of the report). To add a workload, write a module next to these
(``switch.py`` is the model) and add its name to :data:`MODULES`.
"""

from __future__ import annotations

import importlib

#: Workload modules, in report order.
MODULES = (
    "switch",
    "spawn",
    "timers",
    "gather",
    "primitives",
    "async_tree",
    "timer_scaling",
    "live",
    "threads",
)

for _name in MODULES:
    importlib.import_module(f"{__name__}.{_name}")
