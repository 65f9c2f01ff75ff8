"""Where fetch_url may go: the checks on a URL the model gave, and on every address it resolves to.

Owns the URL rules (http(s), no credentials, a bounded length), which addresses are not
public (private, loopback, link-local, multicast, reserved, unspecified, and IPv4 hidden in
IPv6), and the operator's allowances (CAIRN_FETCH_ALLOW, CAIRN_FETCH_ALLOW_PRIVATE).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cairn_server.config import FetchSettings

if TYPE_CHECKING:  # httpx loads at the first fetch (0.04 s of every server start otherwise)
    import httpx

MAX_URL_CHARS = 2048
DEFAULT_PORTS = {"http": 80, "https": 443}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Addresses that carry an IPv4 address a gateway would reach (RFC 6052's NAT64 prefix).
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
ALLOWING = (
    "fetch_url reaches public addresses only (the server's operator can allow others with "
    "CAIRN_FETCH_ALLOW or CAIRN_FETCH_ALLOW_PRIVATE=1)"
)


class FetchRefused(ValueError):
    """A URL or destination fetch_url will not go to; the message says why, in one line."""


@dataclass(frozen=True)
class Destination:
    """The address a request connects to, checked, and the host name it is for."""

    address: IpAddress
    host: str  # as in the URL: lower case, IDNA-encoded
    port: int


def checked_url(text: str) -> httpx.URL:
    """The URL in `text` (its fragment dropped) if fetch_url may try it; FetchRefused if not."""
    text = text.strip()
    if not text:
        raise FetchRefused("url is empty; give an http:// or https:// address")
    if len(text) > MAX_URL_CHARS:
        raise FetchRefused(f"the URL is {len(text):,} characters long; at most {MAX_URL_CHARS:,}")
    if any(char.isspace() or unicodedata.category(char) == "Cc" or char == "\\" for char in text):
        raise FetchRefused(
            "the URL contains spaces, control characters or backslashes; percent-encode them"
        )
    import httpx

    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchRefused(f"{_quoted(text)} is not a valid URL: {exc}") from None
    return _checked_parts(url, text)


def _checked_parts(url: httpx.URL, text: str) -> httpx.URL:
    if not url.scheme:
        raise FetchRefused(f"{_quoted(text)} has no scheme; write it as https://{text}")
    if url.scheme not in DEFAULT_PORTS:
        raise FetchRefused(f"only http and https URLs can be fetched, not {url.scheme}: URLs")
    if url.userinfo:
        raise FetchRefused(
            "URLs with a user name or password are refused: fetch_url sends no credentials"
        )
    if not url.raw_host:
        raise FetchRefused(f"{_quoted(text)} has no host")
    if url.port is not None and not 0 < url.port < 65536:
        raise FetchRefused(f"{_quoted(text)} has port {url.port}; ports go from 1 to 65535")
    return url.copy_with(fragment=None)


def host_of(url: httpx.URL) -> str:
    """The host a URL reaches, as approvals name it: lower case, IDNA, no trailing dot."""
    return url.raw_host.decode("ascii").lower().rstrip(".")


def next_url(current: httpx.URL, location: str) -> httpx.URL:
    """Where a redirect from `current` leads, checked like a URL the model gave."""
    import httpx

    try:
        target = current.join(location.strip())
    except (httpx.InvalidURL, ValueError) as exc:
        raise FetchRefused(f"{current} redirects to an invalid URL: {exc}") from None
    try:
        return checked_url(str(target))
    except FetchRefused as exc:
        raise FetchRefused(
            f"{current} redirects to {_quoted(str(target))}, refused: {exc}"
        ) from None


async def destination(url: httpx.URL, settings: FetchSettings) -> Destination:
    """The address to connect to for `url`: every address its host resolves to must be
    public or allowed (so a name with one private address among public ones is refused)."""
    host = host_of(url)
    port = url.port or DEFAULT_PORTS[url.scheme]
    addresses = await _resolved(host, port)
    for address in addresses:
        problem = address_problem(address)
        if problem is not None and not is_allowed(settings, address, host, port):
            shown = host if host == str(address) else f"{host} resolves to {address}, which"
            raise FetchRefused(f"{shown} is {problem}; {ALLOWING}")
    return Destination(addresses[0], host, port)


async def _resolved(host: str, port: int) -> list[IpAddress]:
    """The host's addresses (an address literal is its own), IPv4 inside IPv6 unwrapped."""
    try:
        literal: IpAddress = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [_unmapped(literal)]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchRefused(f"cannot resolve the host {host!r}: {_gai_reason(exc)}") from None
    found = [_unmapped(ipaddress.ip_address(str(info[4][0]).partition("%")[0])) for info in infos]
    if not found:
        raise FetchRefused(f"the host {host!r} has no address")
    return list(dict.fromkeys(found))


def address_problem(address: IpAddress) -> str | None:
    """What kind of non-public address this is ("a loopback address"); None when public."""
    if isinstance(address, ipaddress.IPv6Address):
        for embedded in _embedded_ipv4(address):
            kind = _kind(embedded)
            if kind is not None:
                return f"{kind} IPv4 address ({embedded}) inside an IPv6 address"
    kind = _kind(address)
    return None if kind is None else f"{kind} address"


def _kind(address: IpAddress) -> str | None:
    checks = [
        ("an unspecified", address.is_unspecified),
        ("a loopback", address.is_loopback),
        ("a link-local", address.is_link_local),
        ("a multicast", address.is_multicast),
        ("a private", address.is_private),
        ("a reserved", address.is_reserved),
        ("a non-public", not address.is_global),
    ]
    return next((kind for kind, matched in checks if matched), None)


def is_allowed(settings: FetchSettings, address: IpAddress, host: str, port: int) -> bool:
    """Whether the operator allowed this non-public destination."""
    if settings.allow_private:
        return True
    for allowance in settings.allow:
        if allowance.port is not None and allowance.port != port:
            continue
        if allowance.network is not None and address in allowance.network:
            return True
        if allowance.host is not None and allowance.host == host:
            return True
    return False


def _unmapped(address: IpAddress) -> IpAddress:
    """::ffff:a.b.c.d is a.b.c.d: it is checked, allowed and connected to as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses a packet to `address` may end up at: 6to4, Teredo, NAT64."""
    found = []
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)
    if address in NAT64:
        found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _gai_reason(exc: OSError | UnicodeError) -> str:
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror.lower()
    return str(exc)


def _quoted(text: str) -> str:
    """The URL as an error names it: quoted, and shortened when long."""
    return repr(text if len(text) <= 200 else text[:199] + "…")
