"""Interoperability with other async libraries (layer 5): asyncio bridges
and the anyio backend."""
