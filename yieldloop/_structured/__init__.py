"""Layer 2: structured concurrency (task groups, gather, timeouts) over the kernel."""
