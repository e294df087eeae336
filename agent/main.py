"""``virtq-agent``: the daemon. Options come from the command line, else from ``--config FILE``.

Under systemd (contrib/systemd/virtq-agent.service, docs/OPERATIONS.md) it speaks the notify protocol: READY once
libvirt is open and the transport runs, STATUS, RELOADING around a SIGHUP reload, STOPPING, and the watchdog.
"""

from __future__ import annotations

import logging
import os
import signal
import stat
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Tuple, Union

import click

from virtq import package_version
from virtq.schema import default_schema
from virtq.schema.errors import NotConnectedError
from virtq.schema.streams import IDLE_TIMEOUT, MAX_AGENT_STREAMS
from virtq.transport import Connection, DirectListener, TlsConfig, TlsError, Transport, is_loopback, profile
from virtq.transport.profiles import PROFILES
from virtq.transport.urls import redact, split_credentials, with_credentials

from .agent import CALL_TIMEOUT, LOOKUP_TIMEOUT, Agent
from .apartments import MAX_THREADS, OBJECT_QUEUE
from .config import ConfigError, read_options
from .hypervisor import HypervisorError
from .logformat import FORMATS, LEVELS, setup_logging
from .metrics import listen_address
from .notify import Notifier, watchdog_interval
from .policy import Policy, PolicyError
from .reload import CONFIG_PATH, Reloader
from .watchdog import Watchdog, agent_checks, agent_status

log = logging.getLogger("virtq.agent")


def _load_config(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[str]:
    if value:
        try:
            options = read_options(Path(value), ctx.command)
        except ConfigError as exc:
            raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc
        ctx.default_map = options
        ctx.meta[CONFIG_PATH] = value  # a reload (SIGHUP) reads it again
        holds_password = "broker_password" in options or any(
            split_credentials(u)[2] for u in options.get("brokers", []))
        if holds_password and os.stat(value).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            click.echo(f"warning: {value} holds a broker password and is readable by others than its owner "
                       f"(chmod 600 {value})", err=True)
    return value


def _print_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"virtq-agent {package_version()} (schema {default_schema().hash})")
        ctx.exit()


def _metrics_address(ctx: click.Context, param: click.Parameter, value: Optional[str]) -> Optional[Tuple[str, int]]:
    try:
        return listen_address(value) if value else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from exc


@click.command(context_settings={"auto_envvar_prefix": "VIRTQ_AGENT", "help_option_names": ["-h", "--help"]})
@click.option("--config", type=click.Path(dir_okay=False), is_eager=True, expose_value=False,
              callback=_load_config, help="INI file with an [agent] section; keys are these long options.")
@click.option("--libvirt", "libvirt_uri", default="qemu:///system", show_default=True,
              envvar=["VIRTQ_AGENT_LIBVIRT", "VIRTQ_AGENT_LIBVIRT_URI"],  # the documented name; the old one too
              help="libvirt connection URI (test:///default for the built-in test hypervisor).")
@click.option("--listen", default="amqp://127.0.0.1:5672", show_default=True,
              help="Direct mode: be an AMQP 1.0 endpoint at this address (no broker).")
@click.option("--broker", "brokers", multiple=True, envvar="VIRTQ_AGENT_BROKER",
              help="Go through a broker instead of listening: amqp://[user:pass@]host:port. Repeat for a "
                   "failover list (or separate them with spaces in the config file / VIRTQ_AGENT_BROKER).")
@click.option("--addressing", type=click.Choice(sorted(PROFILES)), default="rabbitmq", show_default=True,
              help="Broker address profile: rabbitmq (RabbitMQ's AMQP 1.0 plugin, tested) or qmf (QMF's own "
                   "addresses; see docs/DEPLOYMENT.md for what a router or qpidd still needs).")
@click.option("--broker-user", default=None, help="Broker user, when not in the URL.")
@click.option("--broker-password", default=None,
              help="Broker password, when not in the URL; better set VIRTQ_AGENT_BROKER_PASSWORD or the config "
                   "file than the command line.")
@click.option("--heartbeat", type=click.FloatRange(min=0.05), default=10.0, show_default=True,
              help="Seconds between heartbeats.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=10.0, show_default=True,
              help="Seconds between domain statistics passes (virDomainGetInfo fields, pushed when changed).")
@click.option("--slow-interval", type=click.FloatRange(min=0.05), default=60.0, show_default=True,
              help="Seconds between pool, volume and node statistics passes.")
@click.option("--reconcile", type=click.FloatRange(min=1.0), default=300.0, show_default=True,
              help="Seconds between full re-lists that repair anything events missed.")
@click.option("--instance", default=None, help="Agent instance name (default: the host UUID).")
@click.option("--workers", type=click.IntRange(min=1), default=8, show_default=True,
              help="Threads that decode requests and answer locate and queries (libvirt is called elsewhere).")
@click.option("--call-timeout", type=click.FloatRange(min=0.1), default=CALL_TIMEOUT, show_default=True,
              help="Seconds a method call may wait for libvirt before it is answered with libvirt's "
                   "operation-timeout error (0x10044); the call itself goes on.")
@click.option("--lookup-timeout", type=click.FloatRange(min=0.1), default=LOOKUP_TIMEOUT, show_default=True,
              help="Seconds a query for an object the agent does not know yet may wait for libvirt's look-up.")
@click.option("--object-queue", type=click.IntRange(min=0), default=OBJECT_QUEUE, show_default=True,
              help="Calls that may wait behind an object's running libvirt call; more are refused at once "
                   "(object busy, code 8).")
@click.option("--max-calls", type=click.IntRange(min=1), default=MAX_THREADS, show_default=True,
              help="Objects with libvirt calls in flight at once (a thread each); calls to further objects are "
                   "refused (code 8).")
@click.option("--stream-idle", type=click.FloatRange(min=0.1), default=IDLE_TIMEOUT, show_default=True,
              help="Seconds a stream (a volume transfer, a screenshot, a serial console) may wait on its console "
                   "without progress before the agent aborts it, libvirt's stream with it (docs/PROTOCOL.md §14).")
@click.option("--max-streams", type=click.IntRange(min=1), default=MAX_AGENT_STREAMS, show_default=True,
              help="Streams open at once; the call that would open another is refused (object busy, code 8).")
@click.option("--stuck-after", type=click.FloatRange(min=0.01), default=None,
              help="Seconds after which a running libvirt call counts as stuck in heartbeats (libvirt: "
                   "unresponsive). [default: 0.8 x --heartbeat]")
@click.option("--migration-uri", default=None,
              help="The libvirt URI peers' libvirtds reach this host's at to migrate a domain here, e.g. "
                   "qemu+tls://hv02/system, advertised to consoles. [default: --libvirt's URI, with this host's "
                   "name when it names none]")
@click.option("--migration-address", default=None,
              help="The address migrations into this host send the guest's memory to (advertised; QEMU listens "
                   "on it). [default: none, libvirt's default: the host's name]")
@click.option("--state-dir", type=click.Path(file_okay=False), default=None,
              help="Directory for persistent state (the epoch counter).")
@click.option("--tls-cert", type=click.Path(dir_okay=False), default=None,
              help="This agent's certificate (PEM): presented to consoles (amqps:// listen) and to the broker.")
@click.option("--tls-key", type=click.Path(dir_okay=False), default=None, help="The certificate's private key (PEM).")
@click.option("--tls-ca", type=click.Path(dir_okay=False), default=None,
              help="CA (PEM) that signs the consoles' client certificates (listen) or the broker's certificate.")
@click.option("--insecure-listen", is_flag=True, default=False,
              help="Allow a plain amqp:// listener on a non-loopback address (anyone who reaches it is "
                   "anonymous; a warning at every start).")
@click.option("--policy", type=click.Path(dir_okay=False), default=None,
              help="Access policy (INI): principals, roles, scopes (docs/SECURITY.md). Without it: everything on "
                   "the test driver on loopback, read-only on a real hypervisor on loopback, nothing otherwise.")
@click.option("--metrics-listen", default=None, metavar="HOST:PORT", callback=_metrics_address,
              help="Serve Prometheus metrics on http://HOST:PORT/metrics (port 0: any free port; off by default). "
                   "Unauthenticated: keep it on loopback or a management network (docs/OPERATIONS.md).")
@click.option("--log-level", type=click.Choice(LEVELS), default="info", show_default=True,
              help="trace adds proton's own debug logging to debug.")
@click.option("--log-format", type=click.Choice(FORMATS), default="auto", show_default=True,
              help="text; journal (syslog priority prefixes); json (one object per line, for log shippers); "
                   "auto: journal when stderr is systemd's journal, else text.")
@click.option("-V", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              allow_from_autoenv=False, help="Print the virtq version and the schema's hash, and exit.")
def main(libvirt_uri: str, listen: str, brokers: Sequence[str], addressing: str, broker_user: Optional[str],
         broker_password: Optional[str], heartbeat: float, interval: float, slow_interval: float,
         reconcile: float, instance: Optional[str], workers: int, call_timeout: float, lookup_timeout: float,
         object_queue: int, max_calls: int, stream_idle: float, max_streams: int, stuck_after: Optional[float], migration_uri: Optional[str],
         migration_address: Optional[str], state_dir: Optional[str],
         tls_cert: Optional[str], tls_key: Optional[str], tls_ca: Optional[str], insecure_listen: bool,
         policy: Optional[str], metrics_listen: Optional[Tuple[str, int]], log_level: str, log_format: str) -> None:
    """Serve the local libvirt's Node, Domains, Pools and Volumes over AMQP 1.0 (QMFv2 maps).

    Each option comes from the command line, else from VIRTQ_AGENT_<OPTION> (VIRTQ_AGENT_SLOW_INTERVAL …), else
    from --config's file."""
    handler = setup_logging(log_level, log_format)
    tls = TlsConfig(tls_cert, tls_key, tls_ca)
    urls = [with_credentials(u, broker_user, broker_password) for b in brokers for u in b.split()]
    if not urls and listen.startswith("amqp://") and not is_loopback(listen):
        if not insecure_listen:
            raise click.UsageError(f"refusing to listen on {listen}: plain AMQP on a non-loopback address lets "
                                   "anyone who reaches it in. Use amqps:// with --tls-cert/--tls-key/--tls-ca "
                                   "(docs/SECURITY.md), or --insecure-listen if you really mean it")
        log.warning("INSECURE: plain AMQP on %s (--insecure-listen): connections are not authenticated", listen)
    access_policy = None
    if policy:
        try:
            access_policy = Policy.from_file(Path(policy), default_schema())
        except PolicyError as exc:
            raise click.BadParameter(str(exc), param_hint="--policy") from exc
    try:
        listener = None if urls else DirectListener(listen, tls=tls or None)
        if urls and tls:
            tls.check_files()
    except TlsError as exc:
        raise click.UsageError(str(exc)) from exc
    from .libvirt_adapter import LibvirtHypervisor  # the daemon alone pulls in libvirt

    try:
        hypervisor = LibvirtHypervisor(libvirt_uri)
    except HypervisorError as exc:
        raise click.ClickException(f"cannot open libvirt {libvirt_uri}: {exc.message}") from exc
    transport: Union[Transport, Callable[[str], Transport]]
    if listener is not None:
        transport = listener
    else:
        def transport(name: str) -> Transport:  # the agent's name picks its broker address
            return Connection(urls, profile(addressing), role="agent", agent_name=name,
                              require_connection=False, tls=tls)
    agent = Agent(default_schema(), hypervisor, transport, instance=instance,
                  heartbeat=heartbeat, workers=workers, state_dir=Path(state_dir) if state_dir else None,
                  interval=interval, slow_interval=slow_interval, reconcile=reconcile, policy=access_policy,
                  call_timeout=call_timeout, lookup_timeout=lookup_timeout, object_queue=object_queue,
                  max_calls=max_calls, stuck_after=stuck_after, migration_uri=migration_uri,
                  migration_address=migration_address)
    agent.streams.idle, agent.streams.max_streams = stream_idle, max_streams
    if metrics_listen is not None:
        try:
            agent.metrics.serve(*metrics_listen)
        except OSError as exc:
            hypervisor.close()
            raise click.ClickException(f"cannot serve metrics on {':'.join(map(str, metrics_listen))}: {exc}") from exc
    if listener is not None:
        log.info("security: %s", f"mutual TLS on {listen} (certificate {tls_cert}, client CA {tls_ca}); principals "
                 "are client certificate CNs" if listener.tls else f"plain AMQP on {listen}: every console is "
                 "anonymous")
    else:
        users = sorted({split_credentials(u)[1] or tls.common_name() or "(none)" for u in urls})
        log.info("security: through %s as broker user %s; principals are the broker-validated user-ids of requests",
                 " ".join(redact(u) for u in urls), ", ".join(users))
        if addressing == "rabbitmq" and users != [agent.instance]:
            log.warning("broker user %s is not this agent's instance name %s: with the documented permissions "
                        "(docs/DEPLOYMENT.md) its request binding is refused", ", ".join(users), agent.instance)

    def on_signal(signum: int, frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        agent.request_stop()

    notifier = Notifier.from_environment()
    serving = threading.Event()  # READY was said: a reload says RELOADING, then READY again
    reloader = Reloader(click.get_current_context(), agent, handler)
    watchdog_every = watchdog_interval()
    watchdog = Watchdog(notifier, lambda: agent_status(agent), agent_checks(agent, probe_limit=watchdog_every or 0.0),
                        interval=watchdog_every, status_period=heartbeat)

    def on_hangup(signum: int, frame: Any) -> None:
        """SIGHUP (systemctl reload): agent/reload.py. (Python's default for SIGHUP ended the agent with a
        status that systemd counts as a clean exit, so Restart=on-failure never brought it back.)"""
        if serving.is_set():
            notifier.reloading()
        try:
            reloader.reload()
        except Exception:  # noqa: BLE001 - a reload never ends the daemon
            log.exception("SIGHUP: reload failed; what is in force stays")
        if serving.is_set():
            notifier.ready(agent_status(agent))

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_hangup)
    try:
        agent.start()
    except NotConnectedError as exc:
        agent.metrics.close()
        hypervisor.close()
        raise click.ClickException(str(exc)) from exc
    where = f"through {' '.join(redact(u) for u in urls)} ({addressing})" if urls else f"listening on {listen}"
    click.echo(f"virtq-agent {agent.name} {where}", err=True)
    notifier.ready(agent_status(agent))
    serving.set()
    watchdog.start()
    agent.wait()
    notifier.stopping()
    watchdog.stop()
    agent.stop()


if __name__ == "__main__":
    main()
