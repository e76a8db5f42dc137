"""Which URLs an automation may call (SPEC §5): the SSRF rules, pure.

A target is parsed once (:func:`parse_target`) into scheme, host, port and the
rest of the URL. Its host is either an IP literal (written any way a resolver
or browser accepts, ``2130706433``, ``0x7f000001`` and ``0177.0.0.1``
included: these are read as the IPv4 address they mean, as browsers do) or a
name that the caller resolves **once**; every address it resolved to is
checked (:func:`refusal`) and the connection then goes to a checked address
(:meth:`Target.url_for`), never to the name again, so a DNS answer that
changes between the check and the connection (rebinding) cannot reach
anything the check refused.

Refused addresses (unless the deployment allows private targets):

* IPv4: this network ``0.0.0.0/8``, private ``10/8 172.16/12 192.168/16``,
  shared (CGNAT) ``100.64/10``, loopback ``127/8``, link-local
  ``169.254/16``, IETF protocol assignments ``192.0.0/24``, documentation
  ``192.0.2/24 198.51.100/24 203.0.113/24``, 6to4 relays ``192.88.99/24``,
  benchmarking ``198.18/15``, multicast ``224/4``, reserved ``240/4`` and
  broadcast.
* IPv6: only global unicast ``2000::/3`` is callable, less documentation
  (``2001:db8::/32``, ``3fff::/20``) and IETF protocol assignments
  (``2001::/23``, Teredo included); unspecified, loopback, ULA ``fc00::/7``,
  link-local ``fe80::/10``, site-local ``fec0::/10``, multicast and the rest
  are refused. Forms that carry an IPv4 address are judged by it as well:
  IPv4-mapped ``::ffff:a.b.c.d`` and NAT64 ``64:ff9b::/96`` are callable only
  when the IPv4 address is, 6to4 ``2002::/16`` likewise, while
  IPv4-compatible ``::a.b.c.d``, the local-use NAT64 prefix
  ``64:ff9b:1::/48`` and Teredo ``2001::/32`` are refused always (the
  message names the embedded address, e.g. a Teredo client's, which is
  stored XOR-ed).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from regalia.errors import InvalidRequest

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]
MAX_URL = 2048
ALLOW_HINT = "the server refuses these unless REGALIA_AUTOMATION_ALLOW_PRIVATE=1"

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network
V4_REFUSED: tuple[tuple[ipaddress.IPv4Network, str], ...] = (
    (_V4("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "shared address space (CGNAT)"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link-local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "IETF protocol assignments"),
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "6to4 relay anycast"),
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),
)
GLOBAL_UNICAST = _V6("2000::/3")
MAPPED = _V6("::ffff:0:0/96")
COMPATIBLE = _V6("::/96")
NAT64 = _V6("64:ff9b::/96")
NAT64_LOCAL = _V6("64:ff9b:1::/48")
SIX_TO_FOUR = _V6("2002::/16")
TEREDO = _V6("2001::/32")
V6_REFUSED: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    (COMPATIBLE, "IPv4-compatible (deprecated)"),
    (NAT64_LOCAL, "local-use NAT64"),
    (TEREDO, "Teredo"),
    (_V6("2001::/23"), "IETF protocol assignments"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("fc00::/7"), "unique local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local"),
    (_V6("ff00::/8"), "multicast"),
)
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
HOST_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
USERINFO = re.compile(r"[A-Za-z0-9\-._~%!$&'()*+,;=:]*")


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4,
    Teredo client), or None."""
    value = int(address)
    if address in MAPPED or address in COMPATIBLE or address in NAT64 or address in NAT64_LOCAL:
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address in SIX_TO_FOUR:
        return ipaddress.IPv4Address((value >> 80) & 0xFFFFFFFF)
    if address in TEREDO:  # the client's address is stored inverted
        return ipaddress.IPv4Address(~value & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be called (a short reason), or None if it may."""
    if isinstance(address, ipaddress.IPv4Address):
        for network, why in V4_REFUSED:
            if address in network:
                return why
        return None
    if address.is_unspecified or address.is_loopback:
        return "unspecified" if address.is_unspecified else "loopback"
    inner = embedded_ipv4(address)
    if inner is not None:
        inner_why = refusal(inner)
        if inner_why is not None:
            return f"it embeds the {inner_why} IPv4 address {inner}"
    for network6, why6 in V6_REFUSED:
        if address in network6:
            return why6
    if address in MAPPED or address in NAT64:
        return None  # judged by the IPv4 address it carries (above)
    if address not in GLOBAL_UNICAST:
        return "not a global unicast address"
    return None


def parse_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``host`` as an IPv4 address if it is written as one in any form a
    resolver accepts (1 to 4 parts, each decimal, ``0x`` hex or ``0`` octal; the
    last part fills the remaining bytes); None if it is a name.

    Raises:
        InvalidRequest: it ends in a number but is no valid address.
    """
    parts = host.removesuffix(".").split(".")
    if not _NUMBER.fullmatch(parts[-1]):
        return None  # a name (a host name never ends in a number)
    values: list[int] = []
    for part in parts:
        if not _NUMBER.fullmatch(part):
            raise InvalidRequest(f"the target host {host!r} is not a valid IPv4 address")
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                raise InvalidRequest(f"the target host {host!r} is not a valid IPv4 address")
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if len(values) > 4 or any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        raise InvalidRequest(f"the target host {host!r} is not a valid IPv4 address")
    number = last
    for i, v in enumerate(head):
        number += v << (8 * (3 - i))
    return ipaddress.IPv4Address(number)


@dataclass(frozen=True)
class Target:
    """An http(s) URL taken apart for a connection to a checked address."""

    url: str
    scheme: str
    written: str  # the host as the URL writes it (for messages)
    host: str  # lower-case ASCII (IDNA), no brackets; an IP literal in canonical form
    port: int
    explicit_port: bool
    literal: IPAddress | None  # the host, when it is an IP address
    userinfo: str
    path: str
    query: str

    @property
    def host_header(self) -> str:
        """The ``Host`` header the request carries (what the URL names)."""
        host = f"[{self.host}]" if isinstance(self.literal, ipaddress.IPv6Address) else self.host
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def tls_name(self) -> str | None:
        """The name TLS sends (SNI) and verifies, for https to a host name."""
        return self.host if self.scheme == "https" and self.literal is None else None

    def url_for(self, address: IPAddress) -> str:
        """The URL with ``address`` in place of the host: where to connect (an
        IPv4-mapped address as the IPv4 address it is)."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        host = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
        netloc = f"{self.userinfo}@{host}:{self.port}" if self.userinfo else f"{host}:{self.port}"
        return urlunsplit((self.scheme, netloc, self.path or "/", self.query, ""))


def parse_target(url: str) -> Target:
    """Take an http(s) URL apart (no name lookup).

    Raises:
        InvalidRequest: not an http(s) URL, too long, or its host or port is invalid.
    """
    if len(url) > MAX_URL:
        raise InvalidRequest(f"the target URL is longer than {MAX_URL} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        raise InvalidRequest(f"the target URL is not valid: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidRequest(f"the target {redact_url(url)!r} is not an http(s) URL")
    literal: IPAddress | None
    if ":" in host:
        try:
            literal = ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise InvalidRequest(f"the target host {host!r} is not a valid IPv6 address") from None
        host = str(literal)
    else:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise InvalidRequest(f"the target host {host!r} is not a valid host name") from None
        literal = parse_ipv4(host)
        if literal is not None:
            host = str(literal)
        elif len(host) > 253 or not HOST_NAME.fullmatch(host):
            raise InvalidRequest(f"the target host {host!r} is not a valid host name")
    userinfo = parts.netloc.rpartition("@")[0]
    if not USERINFO.fullmatch(userinfo):
        raise InvalidRequest("the user information in the target URL has characters it may not")
    default = 443 if parts.scheme == "https" else 80
    return Target(
        url=url,
        scheme=parts.scheme,
        written=parts.hostname or host,
        host=host,
        port=port or default,
        explicit_port=port is not None,
        literal=literal,
        userinfo=userinfo,
        path=parts.path,
        query=parts.query,
    )


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for ``host``, in its order.

    Raises:
        OSError: the name does not resolve.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def addresses_of(target: Target, resolve: Resolver) -> tuple[IPAddress, ...]:
    """The target's addresses: its literal, or what ``resolve`` answers (once).

    Raises:
        OSError or UnicodeError: the name does not resolve (from ``resolve``).
        InvalidRequest: the resolver answered nothing usable.
    """
    if target.literal is not None:
        return (target.literal,)
    found: list[IPAddress] = []
    for text in resolve(target.host, target.port):
        try:
            found.append(ipaddress.ip_address(text.split("%", 1)[0]))
        except ValueError:
            continue
    if not found:
        raise InvalidRequest(f"the target host {target.host!r} resolves to no IP address")
    return tuple(found)


def first_refusal(target: Target, addresses: Sequence[IPAddress]) -> str | None:
    """The message refusing ``target`` if any of its addresses may not be called."""
    for address in addresses:
        why = refusal(address)
        if why is not None:
            shown = "" if str(address) == target.written else f" ({address})"
            return (
                f"the target host {target.written!r}{shown} is not a public address: {why}; "
                f"{ALLOW_HINT}"
            )
    return None


def check_target(url: str, *, allow_private: bool, resolve: Resolver = system_resolve) -> Target:
    """The parsed target, after checking (unless ``allow_private``) that the host
    is, or resolves only to, addresses that may be called.

    A host name that does not resolve right now (offline, a DNS failure) is
    accepted: nothing can be called through it, and every delivery resolves it
    again, checks what it got and connects to that (see the module doc), so it
    cannot reach a refused address later either (:func:`resolves_now` tells).

    Raises:
        InvalidRequest: not an http(s) URL, or a refused address.
    """
    target = parse_target(url)
    if allow_private:
        return target
    addresses = _addresses_now(target, resolve)
    if addresses is None:
        return target  # checked when a delivery resolves it
    why = first_refusal(target, addresses)
    if why is not None:
        raise InvalidRequest(why, host=target.host)
    return target


def resolves_now(url: str, resolve: Resolver = system_resolve) -> bool:
    """Whether the target's host is an address or a name that resolves at the
    moment (from this machine).

    Raises:
        InvalidRequest: not an http(s) URL.
    """
    return _addresses_now(parse_target(url), resolve) is not None


def _addresses_now(target: Target, resolve: Resolver) -> tuple[IPAddress, ...] | None:
    """The target's addresses, or None if its name gives no usable one right now."""
    try:
        return addresses_of(target, resolve)
    except (OSError, UnicodeError, InvalidRequest):  # InvalidRequest: no usable address
        return None


def redact_url(url: str) -> str:
    """A URL fit for messages and logs: scheme, host and port only (the path of
    a Slack webhook URL is its secret)."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
        host = parts.hostname or "?"
    except ValueError:
        return "(an invalid URL)"
    return f"{parts.scheme}://{host}{port}/…"
