"""TLS and mutual TLS server credentials from PEM files."""
from pathlib import Path

import grpc


def server_credentials(cert_file: Path, key_file: Path, client_ca_file: Path | None = None) -> grpc.ServerCredentials:
    """TLS with this certificate chain and key; with client_ca_file, clients must present a certificate
    signed by that CA (mutual TLS). Files are read once at start: restart (roll the pods) to rotate them."""
    for name, path in (("tls_cert_file", cert_file), ("tls_key_file", key_file), ("tls_client_ca_file", client_ca_file)):
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{name}: no file at {path}")
    chain = Path(cert_file).read_bytes()
    key = Path(key_file).read_bytes()
    root = Path(client_ca_file).read_bytes() if client_ca_file is not None else None
    return grpc.ssl_server_credentials([(key, chain)], root_certificates=root, require_client_auth=root is not None)
