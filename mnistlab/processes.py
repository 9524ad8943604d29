"""Steps run side by side, each in a child process of its own: one line per failure, Ctrl-C passed on.

experiment.py runs the two classical families and the CNN this way, one thread each, since libsvm fits on one
thread and the CNN at batch 30 gains little from a second (docs/speed.md).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import os
import queue
import signal
import threading
import time
import traceback

from mnistlab.errors import ProjectError, one_line

GRACE = 5.0  # seconds a child has to stop after a Ctrl-C (to remove its temporary files) before it is terminated


def _child(lane: int, steps: list, results, ready) -> None:
    """In the child: run each (title, step) in order, putting (lane, title, seconds, outcome, message) on
    ``results`` after each; the first failure ends the lane."""
    # The parent stops a lane with SIGINT, so it must arrive whatever this process inherited (a child inherits
    # ignored signals: a shell starts a background job with SIGINT ignored); it was blocked while this process started.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    orphaned = _follow_parent()
    ready.set()
    for title, step in steps:
        start = time.perf_counter()
        try:
            _sigint_blocked(False)  # a Ctrl-C that came during start-up arrives here, as an interrupt of this step
            step()
            outcome, message = "ok", ""
        except ProjectError as exc:
            outcome, message = "error", one_line(exc)
        except KeyboardInterrupt:
            outcome, message = "interrupted", ""
        except BaseException:  # noqa: BLE001 (a fault of ours: its traceback travels to the parent, which shows it)
            outcome, message = "bug", traceback.format_exc()
        if orphaned.is_set():  # no one is left to read a result
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the report short
        results.put((lane, title, time.perf_counter() - start, outcome, message))
        if outcome != "ok":
            return
        signal.signal(signal.SIGINT, previous)


def _follow_parent() -> threading.Event:
    """In a child: an event set once the parent process is gone (killed, so its clean-up never ran). The child then
    stops as the parent would have stopped it, so that no lane goes on writing records: a Ctrl-C, then after GRACE
    at once."""
    orphaned, parent = threading.Event(), multiprocessing.parent_process()

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])  # readable once the parent has exited
        orphaned.set()
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(GRACE)
        os._exit(1)  # still inside a long C call (a libsvm fit): its temporary files go with the next run

    if parent is not None:
        threading.Thread(target=watch, name="follow-parent", daemon=True).start()
    return orphaned


def run_side_by_side(lanes: list[list[tuple[str, object]]], poll: float = 0.5) -> dict[str, float]:
    """Run the lanes at once, each in a fresh child process that runs its (title, step) pairs in order;
    {title: seconds of its step}.

    A step must pickle (a module-level function, or a functools.partial of one): the children are spawned, not
    forked copies of a process whose thread pools may already run. The first failure stops the others and is
    raised here: a ProjectError as one ProjectError naming its step, a Ctrl-C as KeyboardInterrupt, a child that
    died (killed, out of memory) as a ProjectError with its exit code, a bug as RuntimeError with its traceback.
    """
    context = multiprocessing.get_context("spawn")
    results, ready = context.Queue(), [context.Event() for _ in lanes]
    children = [
        context.Process(target=_child, args=(n, steps, results, ready[n]), name=steps[0][0])
        for n, steps in enumerate(lanes)
    ]
    timings: dict[str, float] = {}
    left = [len(steps) for steps in lanes]  # results still to come from each child; at 0 it exits by itself
    interrupted = False
    try:
        _sigint_blocked(True)  # until each child's handler is set: a Ctrl-C then is no traceback of its start-up
        try:
            for child in children:
                child.start()
        finally:
            _sigint_blocked(False)
        while any(left):
            lane, title, seconds, outcome, message = _next_result(results, children, left, lanes, poll)
            left[lane] = left[lane] - 1 if outcome == "ok" else 0
            if outcome == "interrupted":
                raise KeyboardInterrupt
            if outcome == "error":
                raise ProjectError(f"{title}: {message}")
            if outcome == "bug":
                raise RuntimeError(f"{title} failed in its process:\n{message}")
            timings[title] = seconds
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        unfinished = [c for c, n in zip(children, left, strict=True) if n]
        started = [child for child, event in zip(children, ready, strict=True) if event.is_set()]
        _stop(unfinished, [c for c in children if c not in unfinished], started, interrupted)
    return timings


def _sigint_blocked(blocked: bool) -> None:
    """Block or unblock SIGINT in this thread (a child process starts with its parent's mask); no-op on Windows."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK if blocked else signal.SIG_UNBLOCK, {signal.SIGINT})


def _next_result(results, children: list, left: list, lanes: list, poll: float) -> tuple:
    """The next result on the queue; a child that has exited before putting all of its results is a ProjectError."""
    while True:
        try:
            return results.get(timeout=poll)
        except queue.Empty:
            dead = [n for n, child in enumerate(children) if left[n] and child.exitcode is not None]
        if dead:  # a child's results are in the pipe before it exits, but may have come after the wait above
            try:
                return results.get(timeout=0.5)
            except queue.Empty:
                code, step = children[dead[0]].exitcode, lanes[dead[0]][-left[dead[0]]][0]
                how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
                raise ProjectError(
                    f"{step}: its process ended without a result ({how}; out of memory?); "
                    "run that step alone (ml_main.py or dl_main.py with its flags) to see why"
                ) from None


def _stop(unfinished: list, finished: list, started: list, interrupted: bool = False) -> None:
    """Let the children whose lane finished exit; stop the others: one still starting (not in ``started``) at once,
    as it has begun no step; the rest with a Ctrl-C first (it removes their temporary files), then SIGTERM.
    ``interrupted``: a terminal's Ctrl-C reached them too, so they get a moment to stop by themselves (a second one
    could cut their clean-up short)."""
    for child in unfinished:
        if child not in started and child.pid is not None and child.exitcode is None:
            child.kill()
            child.join()
    running = [c for c in unfinished if c in started and c.exitcode is None]
    deadline = time.monotonic() + (1.0 if interrupted else 0.0)
    for child in running if interrupted else ():
        child.join(max(0.0, deadline - time.monotonic()))
    running = [c for c in running if c.exitcode is None]
    for child in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGINT)
    deadline = time.monotonic() + GRACE
    for child in running + [c for c in finished if c.pid is not None]:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.exitcode is None:  # inside a long C call (a libsvm fit) a Ctrl-C waits for it to return
            child.terminate()
            child.join(GRACE)
        if child.exitcode is None:  # SIGTERM ignored, as the parent's was
            child.kill()
            child.join()
