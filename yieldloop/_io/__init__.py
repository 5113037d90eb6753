"""Layer 4: I/O and the OS (sockets, streams, servers) over the kernel's
``wait_readable``/``wait_writable`` and ``park``/``reschedule``."""
