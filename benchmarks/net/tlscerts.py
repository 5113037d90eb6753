"""A throw-away certificate authority for the TLS benchmarks, made with
``trustme`` at run time: a CA, and a server certificate for ``127.0.0.1``
and ``localhost`` signed by it."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["TLSFiles", "make_tls_files"]


@dataclass(frozen=True)
class TLSFiles:
    """Paths of the PEM files: the server's chain and key, the CA to trust."""

    server_pem: str
    ca_pem: str


def make_tls_files(directory: str) -> TLSFiles:
    """Write a new CA and server certificate into ``directory``.

    Raises ImportError if ``trustme`` is not installed.
    """
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TLSFiles(os.path.join(directory, "server.pem"), os.path.join(directory, "ca.pem"))
    cert.private_key_and_cert_chain_pem.write_to_path(files.server_pem)
    ca.cert_pem.write_to_path(files.ca_pem)
    return files
