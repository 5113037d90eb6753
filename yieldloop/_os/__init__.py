"""Layer 4, the operating system: worker threads, signals, child processes.

Built only from what :mod:`yieldloop.lowlevel` offers (park/reschedule,
wait_readable/wait_writable, notify_closing) and ``call_soon_threadsafe``.
"""

from ._signals import SignalReceiver, open_signal_receiver
from ._subprocess import Process, open_process, run_process
from ._threads import (
    current_default_thread_limiter,
    from_thread,
    from_thread_run,
    from_thread_run_sync,
    to_thread,
)

__all__ = [
    "Process",
    "SignalReceiver",
    "current_default_thread_limiter",
    "from_thread",
    "from_thread_run",
    "from_thread_run_sync",
    "open_process",
    "open_signal_receiver",
    "run_process",
    "to_thread",
]
