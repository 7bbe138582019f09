"""Who may connect, and how many at once: the checks made before the greeting.

The order is fixed and the first refusal wins: the client's network (trusted_networks),
then all open connections (max_connections), then this client's (max_connections_per_client).
A refused connection is told why and closed; it is never counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from crm_mailer.settings import Settings
from crm_mailer.smtp import replies

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Refusal(NamedTuple):
    """Why a connection is refused: the limit's name (for the log) and the reply."""

    limit: str
    reply: str


def client_address(peer: object) -> str:
    """The client's IP address from a transport's peername; IPv4-mapped IPv6 reads as IPv4."""
    host = peer[0] if isinstance(peer, tuple) and peer else peer
    text = str(host).split("%", 1)[0]  # a scope (fe80::1%eth0) names our interface, not them
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _as_ipv4(network: Network) -> Network:
    """::ffff:192.0.2.0/120 is 192.0.2.0/24: clients are compared in their IPv4 form."""
    if (isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96
            and network.network_address.ipv4_mapped is not None):
        return ipaddress.IPv4Network(
            (network.network_address.ipv4_mapped, network.prefixlen - 96))
    return network


class TrustedNetworks:
    """The networks whose clients may connect (trusted_networks); none configured: everyone."""

    def __init__(self, networks: Iterable[str]) -> None:
        self.networks = tuple(_as_ipv4(ipaddress.ip_network(n, strict=False)) for n in networks)

    def allows(self, client: str) -> bool:
        """True when the client address (as `client_address` gives it) is in a trusted network."""
        if not self.networks:
            return True
        try:
            address = ipaddress.ip_address(client)
        except ValueError:  # not an IP address at all: never in a configured network
            return False
        return any(address in network for network in self.networks)


class Lease:
    """One admitted connection's place; `release` gives it back exactly once."""

    __slots__ = ("_admission", "client", "released")

    def __init__(self, admission: Admission, client: str) -> None:
        self._admission = admission
        self.client = client
        self.released = False

    def release(self) -> None:
        """Give the place back; calling it again (close after reset, say) does nothing."""
        if not self.released:
            self.released = True
            self._admission._release(self.client)


class Admission:
    """Counts open connections, in all and per client address, and admits within the limits."""

    def __init__(self, settings: Settings) -> None:
        self.trusted = TrustedNetworks(settings.trusted_networks)
        self.max_connections = settings.max_connections
        self.max_connections_per_client = settings.max_connections_per_client
        self.open = 0
        self.per_client: Counter[str] = Counter()

    def admit(self, client: str) -> Lease | Refusal:
        """A lease for the client's connection, or the refusal of the first limit it breaks."""
        if not self.trusted.allows(client):
            return Refusal("trusted_networks", replies.S554_NETWORK_NOT_ALLOWED)
        if self.open >= self.max_connections:
            return Refusal("max_connections", replies.S421_TOO_MANY_CONNECTIONS)
        if self.per_client[client] >= self.max_connections_per_client:
            return Refusal("max_connections_per_client",
                           replies.S421_TOO_MANY_CONNECTIONS_FROM_CLIENT)
        self.open += 1
        self.per_client[client] += 1
        return Lease(self, client)

    def _release(self, client: str) -> None:
        self.open -= 1
        self.per_client[client] -= 1
        if self.per_client[client] <= 0:
            del self.per_client[client]  # the map holds connected clients only


class MessageSlots:
    """At most `total` messages in DATA at once, and at most `per_client` of one address.

    Without the second bound one client's slow DATA transfers could hold every slot until
    data_timeout and make everyone else wait.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self._total = asyncio.Semaphore(total)
        self._per_client = per_client
        self._clients: dict[str, asyncio.Semaphore] = {}
        self._users: Counter[str] = Counter()

    async def acquire(self, client: str) -> None:
        """Wait for a slot of the client's and one of all; cancellation takes none."""
        own = self._clients.setdefault(client, asyncio.Semaphore(self._per_client))
        self._users[client] += 1
        try:
            await own.acquire()
            try:
                await self._total.acquire()
            except BaseException:
                own.release()
                raise
        except BaseException:
            self._forget(client)
            raise

    def release(self, client: str) -> None:
        """Give back what acquire() took."""
        self._total.release()
        self._clients[client].release()
        self._forget(client)

    def _forget(self, client: str) -> None:
        self._users[client] -= 1
        if self._users[client] <= 0:
            del self._users[client]
            del self._clients[client]
