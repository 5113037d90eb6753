"""The yieldloop benchmark suite: ``python -m benchmarks --help``.

Workloads (``benchmarks/workloads/``) are written once per runtime API and
measured on yieldloop, asyncio, uvloop, trio and the other runtimes in
:mod:`benchmarks.runtimes`, each measurement in a process of its own. See
``benchmarks/README.md``.
"""
