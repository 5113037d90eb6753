"""Layer 1: the kernel (run loop, tasks, time, cancel scopes, requests)."""
