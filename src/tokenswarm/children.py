"""The child processes tokenswarm starts (the Locust master and local workers, the embedded simulated engine)
end with the tokenswarm process that started them, however it ended.

Each child runs in a session of its own (``start_new_session``: a Ctrl-C at the terminal reaches tokenswarm
alone, which passes it on in order). So a tokenswarm killed outright (SIGKILL, the OOM killer) used to leave
them running: the Locust master went on sending the whole plan to the target with no client in sight, and the
simulated engine lived on under init. On Linux each child now asks the kernel for SIGTERM when its parent
dies (``prctl(PR_SET_PDEATHSIG)``, prctl(2)); Locust takes that SIGTERM as a stop and writes what it measured.
Elsewhere the children start as before.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def popen_kwargs() -> dict[str, Any]:
    """Keyword arguments for :class:`subprocess.Popen` of a child that must end with this process: its own
    session and, on Linux, SIGTERM at this process's death. The child is started from the main thread (the
    kernel sends the signal when the thread that forked it exits)."""
    if not sys.platform.startswith("linux"):
        return {"start_new_session": True}
    parent = os.getpid()
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here: the child between fork and exec only calls it

    def end_with_parent() -> None:  # runs in the child between fork and exec
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the request took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return {"start_new_session": True, "preexec_fn": end_with_parent}
