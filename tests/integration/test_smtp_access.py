"""The SMTP edge's limits over real sockets: who may connect, how many, for how long, at once."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from crm_mailer.settings import Settings
from crm_mailer.smtp import replies
from crm_mailer.smtp.access import Admission, Lease, Refusal, TrustedNetworks, client_address
from crm_mailer.smtp.server import SmtpServer
from tests import factories
from tests.integration.smtp_clients import RawClient, StartEdge, dotted, edge, sqlite_only
from tests.integration.test_smtp_edge import stored_messages
from tests.integration.test_smtp_ingest import history, writing_lock

__all__ = ["edge"]  # the fixture


# --- trusted networks ----------------------------------------------------------------------

@sqlite_only
async def test_client_in_a_trusted_network_is_greeted_and_delivers(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(trusted_networks=("192.0.2.0/24", "127.0.0.0/8"))
    assert (await served.deliver(factories.mail())).code == 250
    assert len(await history(example)) == 1


@sqlite_only
async def test_client_outside_the_trusted_networks_gets_554_at_connect(edge: StartEdge) -> None:
    served = await edge(trusted_networks=("10.0.0.0/8", "127.0.0.2/32", "::1/128"))
    for _ in range(2):  # and the daemon keeps refusing, and serving
        client = await served.client()
        assert str(await client.reply()) == replies.S554_NETWORK_NOT_ALLOWED
        assert await client.closed()
    assert served.server.admission.open == 0
    # The same daemon greets a client from a network it trusts.
    trusted = await served.client(source="127.0.0.2")
    assert (await trusted.reply()).code == 220
    trusted.close()


def test_ipv4_mapped_ipv6_clients_count_as_their_ipv4_address() -> None:
    assert client_address(("::ffff:127.0.0.1", 2525, 0, 0)) == "127.0.0.1"
    assert client_address(("fe80::1%eth0", 2525, 0, 2)) == "fe80::1"
    assert client_address(("192.0.2.7", 2525)) == "192.0.2.7"
    trusted = TrustedNetworks(["127.0.0.0/8", "::ffff:192.0.2.0/120"])
    assert trusted.allows("127.0.0.1") and trusted.allows("192.0.2.9")
    assert not trusted.allows("::1") and not trusted.allows("198.51.100.1")
    assert not trusted.allows("not-an-address")
    assert TrustedNetworks([]).allows("198.51.100.1")


@sqlite_only
async def test_mapped_client_on_a_dual_stack_socket_is_judged_as_ipv4(
        example: async_sessionmaker[AsyncSession], settings: Settings) -> None:
    server = SmtpServer(dataclasses.replace(settings, trusted_networks=("127.0.0.0/8",)), example)
    listener = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind(("::", 0))
    listening = await asyncio.get_running_loop().create_server(server._protocol, sock=listener)
    try:
        port = listener.getsockname()[1]
        mapped = await RawClient.connect("127.0.0.1", port)  # the server sees ::ffff:127.0.0.1
        assert (await mapped.reply()).code == 220
        ipv6 = await RawClient.connect("::1", port)
        assert str(await ipv6.reply()) == replies.S554_NETWORK_NOT_ALLOWED
        assert server.admission.per_client == {"127.0.0.1": 1}
        mapped.close()
    finally:
        listening.close()
        await server.stop(grace=1)


# --- connection limits ---------------------------------------------------------------------

@sqlite_only
async def test_connection_over_max_connections_gets_421_and_the_others_keep_working(
        edge: StartEdge) -> None:
    served = await edge(max_connections=2, max_connections_per_client=10)
    first = await (await served.client()).greeted()
    second = await (await served.client(source="127.0.0.2")).greeted()
    third = await served.client(source="127.0.0.3")
    assert str(await third.reply()) == replies.S421_TOO_MANY_CONNECTIONS
    assert await third.closed()
    assert (await first.command("NOOP")).code == 250
    assert (await second.command("NOOP")).code == 250
    first.close()
    await served.until_counted(1)
    assert (await (await served.client()).reply()).code == 220  # its place is free again


@sqlite_only
async def test_connection_over_max_connections_per_client_gets_421_others_are_greeted(
        edge: StartEdge) -> None:
    served = await edge(max_connections=10, max_connections_per_client=2)
    mine = [await (await served.client()).greeted() for _ in range(2)]
    extra = await served.client()
    assert str(await extra.reply()) == replies.S421_TOO_MANY_CONNECTIONS_FROM_CLIENT
    assert await extra.closed()
    other = await served.client(source="127.0.0.2")  # another client is not held up
    assert (await other.reply()).code == 220
    assert [(await c.command("NOOP")).code for c in mine] == [250, 250]
    assert served.server.admission.per_client == {"127.0.0.1": 2, "127.0.0.2": 1}


@sqlite_only
async def test_every_way_of_leaving_gives_the_place_back(edge: StartEdge) -> None:
    served = await edge(max_connections=5, max_connections_per_client=5)
    quitting, closing, resetting, half_closing, in_data = [
        await (await served.client()).greeted() for _ in range(5)]
    await served.until_counted(5)
    assert (await quitting.command("QUIT")).code == 221
    closing.close()
    resetting.reset()
    half_closing.writer.write_eof()
    await in_data.start_data()
    assert (await in_data.reply()).code == 354
    in_data.send(b"Subject: half\r\n\r\nand then gone")
    await asyncio.sleep(0.05)
    in_data.reset()
    await served.until_counted(0)
    assert served.server.admission.per_client == {}
    assert not served.server.connections


# --- timeouts ------------------------------------------------------------------------------

@sqlite_only
async def test_silent_client_gets_421_after_command_timeout(edge: StartEdge) -> None:
    served = await edge(command_timeout=0.3)
    client = await (await served.client()).greeted()
    started = time.monotonic()
    assert str(await client.reply(within=3)) == replies.S421_COMMAND_TIMEOUT
    assert 0.25 < time.monotonic() - started < 2
    assert await client.closed()
    await served.until_counted(0)


@sqlite_only
async def test_a_client_that_keeps_talking_is_not_timed_out(edge: StartEdge) -> None:
    served = await edge(command_timeout=0.3)
    client = await (await served.client()).greeted()
    for _ in range(6):  # 0.9 s in all, never 0.3 s silent
        await asyncio.sleep(0.15)
        assert (await client.command("NOOP")).code == 250


async def test_slow_data_gets_421_and_nothing_is_stored(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(data_timeout=0.5, command_timeout=5)
    client = await (await served.client()).greeted()
    await client.start_data()
    assert (await client.reply()).code == 354
    started = time.monotonic()

    async def trickle() -> None:  # slow-loris: one byte at a time, never silent for long
        for byte in dotted(factories.mail()):
            client.send(bytes([byte]))
            await asyncio.sleep(0.05)

    sender = asyncio.create_task(trickle())
    try:
        assert str(await client.reply(within=3)) == replies.S421_DATA_TIMEOUT
        assert 0.45 < time.monotonic() - started < 2
        assert await client.closed()
    finally:
        sender.cancel()
    assert await stored_messages(example) == 0
    assert (await served.deliver(factories.mail())).code == 250  # and the daemon serves on


@sqlite_only
async def test_data_is_bounded_by_data_timeout_not_command_timeout(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(command_timeout=0.3, data_timeout=5)
    client = await (await served.client()).greeted()
    await client.start_data()
    assert (await client.reply()).code == 354
    body = dotted(factories.mail())
    for part in (body[:40], body[40:80], body[80:]):  # 0.8 s for DATA, pauses of 0.4 s
        client.send(part)
        await asyncio.sleep(0.4)
    assert (await client.reply()).code == 250
    assert len(await history(example)) == 1


@sqlite_only
async def test_time_spent_storing_is_not_the_clients_silence(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(command_timeout=0.3)
    lock = writing_lock(example)
    await lock.acquire()  # the message waits for the database longer than command_timeout
    try:
        delivery = asyncio.create_task(served.deliver(factories.mail()))
        await asyncio.sleep(0.8)
        assert not delivery.done()
    finally:
        lock.release()
    assert (await delivery).code == 250


# --- messages at once ----------------------------------------------------------------------

async def test_second_message_waits_for_a_slot_while_others_are_answered(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(max_concurrent_messages=1)
    first, second, third = [await (await served.client()).greeted() for _ in range(3)]
    body = dotted(factories.mail(message_id="<first@xyz.de>"))
    await first.start_data()
    assert (await first.reply()).code == 354
    first.send(body[:50])  # and holds the slot, in the middle of its message

    await second.start_data()
    with pytest.raises(TimeoutError):  # no 354 while the only slot is taken
        await second.reply(within=0.3)
    started = time.monotonic()
    assert (await third.command("NOOP")).code == 250  # a third client is not held up
    assert time.monotonic() - started < 0.2

    first.send(body[50:])
    assert (await first.reply()).code == 250
    assert (await second.reply()).code == 354
    second.send(dotted(factories.mail(message_id="<second@xyz.de>")))
    assert (await second.reply()).code == 250
    assert sorted(e["message_id"] for e in await history(example)) == [
        "first@xyz.de", "second@xyz.de"]


@sqlite_only
async def test_wait_for_a_slot_is_bounded_by_data_timeout_and_the_session_goes_on(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(max_concurrent_messages=1, data_timeout=0.4)
    lock = writing_lock(example)
    await lock.acquire()  # the first message holds the slot while it is being stored
    try:
        holder = asyncio.create_task(served.deliver(factories.mail(message_id="<a@xyz.de>")))
        await asyncio.sleep(0.1)
        waiting = await (await served.client()).greeted()
        await waiting.start_data()
        started = time.monotonic()
        assert str(await waiting.reply(within=3)) == replies.S451_BUSY
        assert 0.35 < time.monotonic() - started < 2
        # The transaction is over; the session is not.
        assert (await waiting.command("DATA")).code == 503
        assert (await waiting.command("NOOP")).code == 250
    finally:
        lock.release()
    assert (await holder).code == 250


@sqlite_only
async def test_a_client_leaving_while_it_waits_takes_no_slot_with_it(edge: StartEdge) -> None:
    served = await edge(max_concurrent_messages=1)
    holder, leaver = [await (await served.client()).greeted() for _ in range(2)]
    await holder.start_data()
    assert (await holder.reply()).code == 354
    await leaver.start_data()
    await asyncio.sleep(0.1)
    leaver.reset()  # gone while waiting for the slot
    await asyncio.sleep(0.1)
    holder.send(dotted(factories.mail()))
    assert (await holder.reply()).code == 250

    # Still exactly one slot: with one message inside DATA, the next one waits.
    inside, next_one = [await (await served.client()).greeted() for _ in range(2)]
    await inside.start_data()
    assert (await inside.reply()).code == 354
    await next_one.start_data()
    with pytest.raises(TimeoutError):
        await next_one.reply(within=0.3)
    inside.send(dotted(factories.mail(message_id="<inside@xyz.de>")))
    assert (await inside.reply()).code == 250
    assert (await next_one.reply()).code == 354


async def test_one_client_cannot_take_every_message_slot(
        edge: StartEdge, example: async_sessionmaker[AsyncSession]) -> None:
    served = await edge(max_concurrent_messages=3, max_messages_per_client=1)
    holder, same_client = [await (await served.client()).greeted() for _ in range(2)]
    other = await (await served.client(source="127.0.0.2")).greeted()
    await holder.start_data()
    assert (await holder.reply()).code == 354  # holds its client's only slot
    await same_client.start_data()
    with pytest.raises(TimeoutError):  # its own second message waits ...
        await same_client.reply(within=0.3)
    await other.start_data()
    assert (await other.reply(within=1)).code == 354  # ... another client's does not
    other.send(dotted(factories.mail(message_id="<other@xyz.de>")))
    assert (await other.reply()).code == 250
    holder.send(dotted(factories.mail(message_id="<holder@xyz.de>")))
    assert (await holder.reply()).code == 250
    assert (await same_client.reply()).code == 354
    same_client.send(dotted(factories.mail(message_id="<same@xyz.de>")))
    assert (await same_client.reply()).code == 250


def test_admission_refuses_past_each_limit_and_releases_once() -> None:
    admission = Admission(Settings(max_connections=2, max_connections_per_client=1))
    lease = admission.admit("192.0.2.1")
    assert isinstance(lease, Lease)
    assert admission.admit("192.0.2.1") == Refusal(
        "max_connections_per_client", replies.S421_TOO_MANY_CONNECTIONS_FROM_CLIENT)
    assert isinstance(admission.admit("192.0.2.2"), Lease)
    assert admission.admit("192.0.2.3") == Refusal(
        "max_connections", replies.S421_TOO_MANY_CONNECTIONS)
    lease.release()
    lease.release()
    assert admission.open == 1 and dict(admission.per_client) == {"192.0.2.2": 1}
