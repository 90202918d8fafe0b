"""Small pieces every CLI group uses."""

from __future__ import annotations


def client():
    """The SDK client (MODELYARD_URL / MODELYARD_TOKEN, or the local admin token on the server's machine)."""
    from modelyard.sdk import Client

    return Client()


def human_size(n: float | None) -> str:
    """Bytes in binary units: '0 B', '1.5 KiB', '516.5 MiB'; None -> '-'."""
    if n is None:
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(x) < 1024 or unit == "TiB":
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return str(n)
