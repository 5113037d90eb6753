"""Layer 3: synchronization and communication primitives over park/wake."""
