"""Who may talk to the daemon, and how much it sends back to any one place.

OSC runs over UDP, where a sender's address is only a claim: a forged source makes the daemon
answer a victim. Two limits keep that from becoming an attack:

- `AllowList`: datagrams from anywhere else are dropped without a reply. Loopback is always
  allowed; `allow` adds hosts and networks. A daemon listening beyond loopback with no `allow`
  accepts the subnet of the address it listens on (of every interface for 0.0.0.0 or ::).
- `ReplyBudget`: a token bucket of reply bytes per destination host. A reply that does not fit
  is dropped and counted, so one host can be sent at most `rate` bytes a second (after a burst
  of `burst` bytes) however many forged requests name it.
- `RateLimitedLog`: what a sender's bad messages write to the log, so they cannot fill the disk.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


class AllowError(ValueError):
    pass


def parse_allow(item: str) -> list[Network]:
    """`10.0.0.0/24`, `192.168.1.7`, `fe80::/10` or a host name (every address it resolves to)."""
    item = item.strip()
    try:
        return [ipaddress.ip_network(item, strict=False)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(item, None, proto=socket.IPPROTO_UDP)
    except (socket.gaierror, UnicodeError) as err:
        raise AllowError(
            f"allow: {item!r} is neither an address, a network (a.b.c.d/n) nor a known host: {err}"
        ) from None
    return sorted({ipaddress.ip_network(info[4][0]) for info in infos}, key=str)


def local_subnets(host: str) -> list[Network]:
    """The subnets of this machine's addresses that `host` listens on: the subnet of `host`
    itself, or of every interface's addresses for 0.0.0.0 and ::."""
    import psutil

    wildcard = host in ("0.0.0.0", "::", "")
    nets = []
    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family not in (socket.AF_INET, socket.AF_INET6) or not a.netmask:
                continue
            address = a.address.split("%")[0]
            try:
                net = ipaddress.ip_network(f"{address}/{a.netmask}", strict=False)
            except ValueError:
                continue  # a netmask that is not a prefix
            if wildcard or address == host:
                nets.append(net)
    return nets


class AllowList:
    def __init__(self, networks: list[Network]):
        self.networks = [*LOOPBACK, *networks]
        self._seen: dict[str, bool] = {}  # the answer per host, as senders repeat

    @classmethod
    def for_settings(cls, host: str, allow: tuple[str, ...]) -> AllowList:
        if allow:
            return cls([net for item in allow for net in parse_allow(item)])
        if ipaddress.ip_address(host if host not in ("", "localhost") else "127.0.0.1").is_loopback:
            return cls([])
        return cls(local_subnets(host))

    def allows(self, host: str) -> bool:
        known = self._seen.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host.split("%")[0])
            except ValueError:
                return False
            if ip.version == 6 and ip.ipv4_mapped is not None:
                ip = ip.ipv4_mapped
            known = any(ip in net for net in self.networks)
            if len(self._seen) > 4096:
                self._seen.clear()  # forged sources must not grow it without bound
            self._seen[host] = known
        return known

    def describe(self) -> str:
        return ", ".join(str(n) for n in self.networks)


class ReplyBudget:
    """Bytes each destination host may still be sent; refilled at `rate` a second up to `burst`."""

    def __init__(self, rate: float, burst: float, clock=time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._hosts: dict[str, tuple[float, float]] = {}  # host -> (bytes left, when)
        self.dropped = 0  # replies not sent

    def take(self, host: str, size: int) -> bool:
        now = self.clock()
        left, when = self._hosts.get(host, (self.burst, now))
        left = min(self.burst, left + (now - when) * self.rate)
        if size > left:
            self._hosts[host] = (left, now)
            self.dropped += 1
            return False
        if len(self._hosts) > 4096:  # many destinations (forged ones?): forget those refilled to the brim
            self._hosts = {h: (b, t) for h, (b, t) in self._hosts.items() if b + (now - t) * self.rate < self.burst}
            if len(self._hosts) > 4096:
                self._hosts.clear()
        self._hosts[host] = (left - size, now)
        return True


class RateLimitedLog:
    """At most `burst` log lines per `window` seconds; the rest are counted and summarised."""

    def __init__(self, log: logging.Logger, burst: int = 20, window: float = 10.0):
        self.log, self.burst, self.window = log, burst, window
        self._start, self._count, self._dropped = 0.0, 0, 0

    def warning(self, msg: str, *args, exc_info: bool = False) -> None:
        now = time.monotonic()
        if now - self._start > self.window:
            if self._dropped:
                self.log.warning("... and %d more bad messages in %.0f s", self._dropped, self.window)
            self._start, self._count, self._dropped = now, 0, 0
        self._count += 1
        if self._count <= self.burst:
            self.log.log(logging.ERROR if exc_info else logging.WARNING, msg, *args, exc_info=exc_info)
        else:
            self._dropped += 1
