"""Network addresses: which host names are this machine's loopback."""
import ipaddress


def is_loopback(host):
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ``::1``, with or without brackets)."""
    host = str(host).strip().strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
