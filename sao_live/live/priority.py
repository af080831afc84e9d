"""Asking the OS for a higher CPU priority for the threads that serve the audio graph.

On Linux the nice value belongs to a thread and the threads it creates inherit it, so the
audio process sets it before its stream starts, and the MIDI port is opened from a thread
that set it first (libjack and rtmidi start their threads from the thread that opens).
Lowering nice below 0 needs permission (root, CAP_SYS_NICE, or a nice limit such as
`@audio - nice -10` in /etc/security/limits.d); without it the threads keep normal priority.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def raise_priority(nice: int, what: str) -> bool:
    """Sets the calling thread's nice value (best effort); False, logged, when not permitted."""
    if not nice or not hasattr(os, "setpriority"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
        return True
    except OSError as err:
        log.info("%s stays at normal priority (nice %d: %s); see docs/player.md", what, nice, err.strerror)
        return False
