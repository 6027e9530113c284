"""An in-process libtorrent peer confined to 127.0.0.1 and to the tracker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .procs import LOOPBACK


def libtorrent_version() -> str | None:
    """The libtorrent binding version, or None when it cannot be imported."""
    try:
        import libtorrent as lt
    except ImportError:
        return None
    return str(lt.__version__)


def peer_settings(name: str, listen_port: int, proxy_port: int | None = None) -> dict[str, Any]:
    """Session settings: loopback only, TCP only, tracker as the sole peer source."""
    import libtorrent as lt

    alerts = lt.alert.category_t
    settings: dict[str, Any] = {
        "user_agent": f"realclient-test-{name}",
        "listen_interfaces": f"{LOOPBACK}:{listen_port}",
        "outgoing_interfaces": LOOPBACK,
        "enable_dht": False,
        "enable_lsd": False,
        "enable_upnp": False,
        "enable_natpmp": False,
        # uTP would be a second transport with its own quirks; the tests are
        # about the tracker, so keep to plain TCP.
        "enable_outgoing_utp": False,
        "enable_incoming_utp": False,
        # Every peer of the swarm shares 127.0.0.1 and differs only by port.
        "allow_multiple_connections_per_ip": True,
        "announce_to_all_trackers": True,
        "announce_to_all_tiers": True,
        # The defaults (60 s, 15 s) are tuned for the internet and would eat
        # most of a test's time budget after one refused connection.
        "min_reconnect_time": 1,
        "peer_connect_timeout": 5,
        "stop_tracker_timeout": 2,
        "alert_mask": (
            alerts.error_notification
            | alerts.tracker_notification
            | alerts.status_notification
            | alerts.connect_notification
            | alerts.peer_notification
        ),
    }
    if proxy_port is not None:
        settings.update(
            {
                "proxy_type": lt.proxy_type_t.http,
                "proxy_hostname": LOOPBACK,
                "proxy_port": proxy_port,
                "proxy_tracker_connections": True,
                "proxy_peer_connections": False,
            }
        )
    return settings


class LibtorrentPeer:
    """One libtorrent session holding one torrent, either seeding or leeching."""

    def __init__(self, name: str, listen_port: int, proxy_port: int | None = None) -> None:
        import libtorrent as lt

        self.name = name
        self.listen_port = listen_port
        # Without add_default_plugins the session has no ut_pex (nor
        # ut_metadata / smart_ban): peers cannot trade peer lists at all.
        # (flags=0 instead of the default session_flags_t.add_default_plugins).
        settings: Any = peer_settings(name, listen_port, proxy_port)
        self.session = lt.session(settings, 0)
        self.handle: Any = None
        self.events: list[str] = []
        self._started = time.monotonic()

    def add_torrent(self, torrent: Path, save_path: Path) -> None:
        """Add the torrent; existing complete data in ``save_path`` makes it a seed."""
        import libtorrent as lt

        save_path.mkdir(parents=True, exist_ok=True)
        params = lt.add_torrent_params()
        params.ti = lt.torrent_info(str(torrent))
        params.save_path = str(save_path)
        flags = params.flags
        flags |= lt.torrent_flags.disable_dht | lt.torrent_flags.disable_lsd
        flags |= lt.torrent_flags.disable_pex
        # Start at once instead of waiting in the session's queue.
        flags &= ~lt.torrent_flags.auto_managed
        flags &= ~lt.torrent_flags.paused
        params.flags = flags
        self.handle = self.session.add_torrent(params)

    def status(self) -> Any:
        self.poll_alerts()
        return self.handle.status()

    def is_seeding(self) -> bool:
        return bool(self.status().is_seeding)

    def reannounce(self) -> None:
        """Announce now, so the peer learns of peers that joined since."""
        import libtorrent as lt

        if self.handle is not None:
            self.handle.force_reannounce(0, -1, lt.reannounce_flags_t.ignore_min_interval)
        self.poll_alerts()

    def poll_alerts(self) -> None:
        """Keep the session's alerts as text, for failure diagnostics."""
        for alert in self.session.pop_alerts():
            elapsed = time.monotonic() - self._started
            self.events.append(f"{elapsed:7.2f}s {type(alert).__name__}: {alert.message()}")

    def report(self, max_lines: int = 60) -> str:
        """Recent alerts and current status, for assertion messages."""
        self.poll_alerts()
        lines = [f"--- libtorrent {self.name} (port {self.listen_port}) ---"]
        if self.handle is not None:
            st = self.handle.status()
            lines.append(
                f"state={st.state} progress={st.progress:.3f} peers={st.num_peers} "
                f"seeding={st.is_seeding} error={st.errc.message() if st.errc.value() else ''}"
            )
        lines.extend(self.events[-max_lines:])
        return "\n".join(lines)

    def close(self) -> None:
        """Remove the torrent (sending 'stopped') and drop the session."""
        if self.handle is not None and self.handle.is_valid():
            self.session.remove_torrent(self.handle)
        self.handle = None
        self.session.pause()
        # Dropping the last reference shuts the session down; the
        # stop_tracker_timeout setting bounds how long that may block.
        del self.session
