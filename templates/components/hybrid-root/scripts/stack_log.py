"""supervisord event listener of `make run`: every program's output with its name in front, one
line per restart.

supervisord (the process manager behind `make run`, see scripts/dev_stack.py) hands each chunk
a program writes to this listener as a PROCESS_LOG event, and each state change as a
PROCESS_STATE event; the listener prints them on supervisord's stdout (its stderr is routed
there). Chunks are cut into whole lines per program, so two processes never share a line.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType

from supervisor import childutils  # type: ignore[import-untyped]


def say(name: str, line: str) -> None:
    sys.stderr.write(f"{name:<12}| {line}\n")


def state(event: str, headers: dict[str, str]) -> None:
    name = headers["processname"]
    if event == "PROCESS_STATE_EXITED":  # autorestart=true: whatever its status
        how = "exited" if headers["expected"] == "1" else "exited unexpectedly"
        say(name, f"[supervisord] pid {headers['pid']} {how}; restart now")
    elif event == "PROCESS_STATE_BACKOFF":
        tries = int(headers["tries"])
        say(name, f"[supervisord] exited before it was up; restart in {tries}s (attempt {tries})")
    elif event == "PROCESS_STATE_FATAL":
        say(name, "[supervisord] gave up: it kept exiting while starting (see its lines above)")


def wait() -> tuple[dict[str, str], str]:
    """The next event. supervisord counts `len` in characters of the text it sends as UTF-8, not
    in bytes (`len(payload)` of a str): read characters, or a line with a non-ASCII character in
    it (an error message's "…") would cut the next event in two."""
    childutils.listener.ready(sys.stdout)
    headers: dict[str, str] = childutils.get_headers(sys.stdin.readline())
    return headers, sys.stdin.read(int(headers["len"]))


def main() -> None:
    partial: dict[str, str] = {}  # unfinished last line of each program and channel

    def stop(_signum: int, _frame: FrameType | None) -> None:  # supervisord stops it last
        for key, line in partial.items():
            if line:
                say(key.partition(":")[0], line)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    # What supervisord sends is UTF-8 whatever the locale (as_bytes), and valid (as_string decoded it).
    sys.stdin.reconfigure(encoding="utf-8", newline="\n")  # type: ignore[union-attr]
    while True:
        headers, payload = wait()
        event = headers["eventname"]
        if event.startswith("PROCESS_LOG"):
            head, _, data = payload.partition("\n")
            fields = childutils.get_headers(head)
            key = f"{fields['processname']}:{fields['channel']}"
            *lines, partial[key] = (partial.get(key, "") + data).split("\n")
            for line in lines:
                say(fields["processname"], line)
        elif event.startswith("PROCESS_STATE"):
            state(event, childutils.get_headers(payload))
        sys.stderr.flush()
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
