"""What the benchmarks share: byte meters on the console's transport, a TCP byte-counting proxy and
percentiles (the fleet simulator's pieces they use too: ``bench.fleetsim.metering`` for a hypervisor that
reports cpuTime the way QEMU does, ``bench.fleetsim.tables`` for tables).

Message bytes are AMQP-encoded message sizes (header, properties, application properties and
body, exactly what ``virtq.transport.encoded_size(wire)`` gives — for received messages, the size of
the delivery). TCP bytes are everything the connection carried, measured by a proxy between
console and agent: message bytes plus AMQP framing (transfer frames, flow, dispositions).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Protocol, Sequence, Set, Tuple

from bench.fleetsim.metering import category
from virtq.schema import errors
from virtq.schema.codec import MethodRequest, StatsIndication, WireMessage, decode
from virtq.transport import Connection, QmfProfile, encoded_size


# --- message meters ----------------------------------------------------------------------------

@dataclass
class Tally:
    messages: int = 0
    bytes: int = 0

    def add(self, size: int) -> None:
        self.messages += 1
        self.bytes += size


@dataclass
class Reading:
    """A meter's counters at one moment (or the difference of two readings)."""

    received: Dict[str, Tally] = field(default_factory=dict)
    sent: Dict[str, Tally] = field(default_factory=dict)
    stats_rows: Dict[str, int] = field(default_factory=dict)  # object name -> rows received in stats batches

    def __sub__(self, before: "Reading") -> "Reading":
        def diff(a: Dict[str, Tally], b: Dict[str, Tally]) -> Dict[str, Tally]:
            out = {k: Tally(v.messages - b.get(k, Tally()).messages, v.bytes - b.get(k, Tally()).bytes)
                   for k, v in a.items()}
            return {k: v for k, v in out.items() if v.messages}
        rows = {k: v - before.stats_rows.get(k, 0) for k, v in self.stats_rows.items()}
        return Reading(diff(self.received, before.received), diff(self.sent, before.sent),
                       {k: v for k, v in rows.items() if v})

    def _tallies(self, prefix: str, sent: bool, received: bool, exclude: Sequence[str]) -> List[Tally]:
        """The tallies of the categories that start with ``prefix`` and with none of ``exclude``."""
        tallies: List[Tuple[str, Tally]] = []
        if received:
            tallies += list(self.received.items())
        if sent:
            tallies += list(self.sent.items())
        return [t for k, t in tallies if k.startswith(prefix) and not k.startswith(tuple(exclude) or "\0")]

    def bytes(self, prefix: str = "", sent: bool = True, received: bool = True,
              exclude: Sequence[str] = ()) -> int:
        return sum(t.bytes for t in self._tallies(prefix, sent, received, exclude))

    def messages(self, prefix: str = "", sent: bool = True, received: bool = True,
                 exclude: Sequence[str] = ()) -> int:
        return sum(t.messages for t in self._tallies(prefix, sent, received, exclude))


class Meter:
    """Thread-safe counters of one console connection's messages, by category."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reading = Reading()
        self._methods: Dict[str, str] = {}  # correlation id -> method name, until answered

    def count(self, direction: str, wire: WireMessage, size: int) -> None:
        name = category(wire)
        if direction == "sent" and name == "method_request":
            try:
                request = decode(wire)
                if isinstance(request, MethodRequest):
                    name = f"method_request/{request.method_name}"
                    if wire.correlation_id is not None:
                        with self._lock:
                            self._methods[wire.correlation_id] = request.method_name
            except errors.ProtocolError:
                pass
        elif direction == "received" and name in ("method_response", "exception") and wire.correlation_id:
            with self._lock:
                method = self._methods.pop(wire.correlation_id, None)
            if method is not None:
                name = f"{name}/{method}"
        rows: Iterable[str] = ()
        if name.startswith("stats/"):
            try:
                message = decode(wire)
                if isinstance(message, StatsIndication):
                    rows = [name for batch in message.batches for name, _ in batch.rows()]
            except errors.ProtocolError:
                pass
        with self._lock:
            side = self._reading.received if direction == "received" else self._reading.sent
            side.setdefault(name, Tally()).add(size)
            for row in rows:
                self._reading.stats_rows[row] = self._reading.stats_rows.get(row, 0) + 1

    def read(self) -> Reading:
        with self._lock:
            r = self._reading
            return Reading({k: Tally(v.messages, v.bytes) for k, v in r.received.items()},
                           {k: Tally(v.messages, v.bytes) for k, v in r.sent.items()}, dict(r.stats_rows))


class CountingConnector(Connection):
    """A console's direct-mode connection that meters every message it sends and receives."""

    def __init__(self, url: str, meter: Meter, subscribe_to: Optional[str] = None) -> None:
        super().__init__([url], QmfProfile(), role="console", fail_fast=True,
                         sources=[subscribe_to] if subscribe_to is not None else None)
        self.meter = meter

    def deliver(self, wire: WireMessage) -> None:
        self.meter.count("received", wire, wire.size or encoded_size(wire))
        super().deliver(wire)

    def send(self, message: WireMessage) -> None:
        self.meter.count("sent", message, encoded_size(message))
        super().send(message)


# --- TCP bytes ---------------------------------------------------------------------------------

class ByteCountingProxy:
    """A loopback TCP proxy to one port that counts the bytes it forwards each way."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind((host, 0))
        self._server.listen(64)
        self.port = int(self._server.getsockname()[1])
        self.url = f"amqp://{host}:{self.port}"
        self._lock = threading.Lock()
        self.up = 0  # console -> agent
        self.down = 0  # agent -> console
        self._sockets: Set[socket.socket] = set()
        self._closed = False
        threading.Thread(target=self._accept, name="bench-proxy", daemon=True).start()

    def read(self) -> Tuple[int, int]:
        with self._lock:
            return self.up, self.down

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self._lock:
                    if up:
                        self.up += len(data)
                    else:
                        self.down += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self._closed = True
        self._server.close()
        with self._lock:
            sockets, self._sockets = list(self._sockets), set()
        for s in sockets:
            s.close()


# --- numbers -------------------------------------------------------------------------------------

def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ratio(a: float, b: float) -> float:
    return a / b if b else math.inf




# --- the command line ------------------------------------------------------------------------------

class Outcome(Protocol):
    """What a benchmark's run gives: a printed report, JSON, and the functional problems it met."""

    problems: List[str]

    def report(self) -> str: ...

    def to_json(self) -> Dict[str, Any]: ...


def bench_main(parser: argparse.ArgumentParser, argv: Optional[Sequence[str]],
               run: Callable[[argparse.Namespace], Outcome]) -> int:
    """A benchmark's main(): adds ``--json`` and ``-v``, runs, prints the report, writes the JSON; the exit
    status is 1 when something functionally broke (never for a timing)."""
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = run(args)
    print(result.report())
    if args.json:
        args.json.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    return 1 if result.problems else 0
