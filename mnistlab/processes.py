"""Steps run side by side, each in a child process of its own: one line per failure, Ctrl-C passed on.

experiment.py runs the two classical families this way: libsvm fits on one thread, so one family after the other
left a core idle for most of their 527 s (a 2-core Intel Xeon); side by side they took 370 s (docs/speed.md).
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
import traceback

from mnistlab.errors import ProjectError, one_line

GRACE = 5.0  # seconds a child has to stop after a Ctrl-C (to remove its temporary files) before it is terminated


def _child(title: str, step, results) -> None:
    """In the child: run ``step()`` and put (title, seconds, outcome, message) on ``results``."""
    start = time.perf_counter()
    try:
        step()
        outcome, message = "ok", ""
    except ProjectError as exc:
        outcome, message = "error", one_line(exc)
    except KeyboardInterrupt:
        outcome, message = "interrupted", ""
    except BaseException:  # noqa: BLE001 (a fault of ours: its traceback travels to the parent, which shows it)
        outcome, message = "bug", traceback.format_exc()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C (the parent passes one on) must not cut the report
    results.put((title, time.perf_counter() - start, outcome, message))


def run_side_by_side(steps: list[tuple[str, object]], poll: float = 0.5) -> dict[str, float]:
    """Run every (title, step) at once, each in a fresh child process; {title: seconds of its step}.

    A step must pickle (a module-level function, or a functools.partial of one): the children are spawned, not
    forked copies of a process whose thread pools may already run. The first failure stops the others and is
    raised here: a ProjectError as one ProjectError naming its step, a Ctrl-C as KeyboardInterrupt, a child that
    died (killed, out of memory) as a ProjectError with its exit code, a bug as RuntimeError with its traceback.
    """
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    children = {title: context.Process(target=_child, args=(title, step, results), name=title) for title, step in steps}
    timings: dict[str, float] = {}
    reported: set[str] = set()  # the children that put their result: they exit by themselves
    try:
        for child in children.values():
            child.start()
        while len(timings) < len(children):
            title, seconds, outcome, message = _next_result(results, children, reported, poll)
            reported.add(title)
            if outcome == "interrupted":
                raise KeyboardInterrupt
            if outcome == "error":
                raise ProjectError(f"{title}: {message}")
            if outcome == "bug":
                raise RuntimeError(f"{title} failed in its process:\n{message}")
            timings[title] = seconds
    except KeyboardInterrupt:
        _stop([c for t, c in children.items() if t not in reported], [], interrupted=True)
        raise
    finally:
        _stop([c for t, c in children.items() if t not in reported], [c for t, c in children.items() if t in reported])
    return timings


def _next_result(results, children: dict, reported: set, poll: float) -> tuple:
    """The next result on the queue; a child that has exited without putting one is a ProjectError."""
    while True:
        try:
            return results.get(timeout=poll)
        except queue.Empty:
            dead = [t for t, c in children.items() if t not in reported and c.exitcode is not None]
        if dead:  # a child's result is in the pipe before it exits, but may have come after the wait above
            try:
                return results.get(timeout=0.5)
            except queue.Empty:
                code = children[dead[0]].exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                raise ProjectError(
                    f"{dead[0]}: its process ended without a result ({how}; out of memory?); "
                    "run that step alone (ml_main.py with its flags) to see why"
                ) from None


def _stop(unfinished: list, finished: list, interrupted: bool = False) -> None:
    """Let the children whose step finished exit; stop the others: a Ctrl-C first (it removes their temporary files),
    then SIGTERM. ``interrupted``: a terminal's Ctrl-C reached them too, so they get a moment to stop by themselves
    (a second one could cut their clean-up short)."""
    running = [c for c in unfinished if c.pid is not None and c.exitcode is None]
    deadline = time.monotonic() + (1.0 if interrupted else 0.0)
    for child in running if interrupted else ():
        child.join(max(0.0, deadline - time.monotonic()))
    running = [c for c in running if c.exitcode is None]
    for child in running:
        try:
            os.kill(child.pid, signal.SIGINT)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + GRACE
    for child in running + finished:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.exitcode is None:  # inside a long C call (a libsvm fit) a Ctrl-C waits for it to return
            child.terminate()
            child.join()
