#!/usr/bin/env python3
"""sim_controller.py: a robot controller in Python, driven by the vlad daemon.

A simple kinematic robot (each joint moves a fixed fraction of the way toward its
target every tick: a first-order lag, as robot_io/fakebot.c) publishes its joint
state and a synthetic camera image every tick and follows the daemon's Actions,
for N ticks, in wall clock or lockstep. It prints a summary (ticks, actions,
policy actions, holds) and, with --ask, asks a question while it acts and prints
the answer as it streams in.

After ``make`` (in one shell, the daemon with the default model; in another, this
controller)::

    build/bin/vlad --profile configs/sim-arm.yaml
    PYTHONPATH=build/python python3 robot_io/python/examples/sim_controller.py \\
        --profile configs/sim-arm.yaml --ticks 250 --ask "which colour is the target?"

    build/bin/vlad --profile configs/sim-arm.yaml --set clock=lockstep
    PYTHONPATH=build/python python3 robot_io/python/examples/sim_controller.py \\
        --profile configs/sim-arm.yaml --set clock=lockstep --ticks 250

Give the controller the same ``--set`` overrides as the daemon (endpoints, clock).
The functions here (KinematicRobot, synthetic_image, run_controller) are also used
by robot_io/python/tests/test_client.py.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field

import numpy as np

import vlad


class KinematicRobot:
    """Joints that move `lag` of the way toward their target each tick (0 < lag <= 1),
    starting at the profile's home pose."""

    def __init__(self, profile: vlad.Profile, lag: float = 0.5):
        if not 0 < lag <= 1:
            raise ValueError(f"lag: {lag} is not in (0, 1]")
        self.lag = lag
        self.hz = profile.control_hz
        self.lo = np.array([j.min for j in profile.joints])
        self.hi = np.array([j.max for j in profile.joints])
        self.pos = np.array(profile.home, dtype=np.float64)
        self.vel = np.zeros_like(self.pos)
        self.target = self.pos.copy()

    def command(self, targets: np.ndarray) -> None:
        """Track new joint targets (clipped to the joint limits)."""
        self.target = np.clip(np.asarray(targets, dtype=np.float64), self.lo, self.hi)

    def step(self) -> None:
        """Advance one control tick."""
        prev = self.pos.copy()
        self.pos += self.lag * (self.target - self.pos)
        self.vel = (self.pos - prev) * self.hz


def synthetic_image(width: int, height: int, ball=(0.31, 0.62), colour=(220, 30, 30)
                    ) -> np.ndarray:
    """A grey table with one coloured ball, uint8 (height, width, 3): what the bundled
    simulator's camera roughly shows (ball centre as fractions of width, height)."""
    img = np.full((height, width, 3), 128, dtype=np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = ball[0] * width, ball[1] * height
    r = max(2.0, 0.094 * min(width, height))
    img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = colour
    return img


@dataclass
class Summary:
    """What one run saw."""

    clock: str
    ticks: int = 0                  # robot ticks run
    actions: int = 0                # Actions taken (wall: every one received)
    by_source: dict = field(default_factory=dict)
    policy_actions: int = 0
    holds: int = 0                  # non-policy Actions after the first policy one
    no_answer: int = 0              # lockstep: ticks whose observation got no Action in time
    first_policy_tick: int = -1     # robot tick of the first policy Action
    skipped: int = 0                # wall: daemon ticks without an Action between two
    chunks: int = 0
    events: list = field(default_factory=list)
    records: list = field(default_factory=list)   # (robot tick, Action) per Action taken
    answer: vlad.Answer | None = None
    seconds: float = 0.0
    bad_messages: int = 0

    def as_dict(self) -> dict:
        """The summary as plain data (no messages)."""
        return {
            "clock": self.clock, "ticks": self.ticks, "actions": self.actions,
            "by_source": self.by_source, "policy_actions": self.policy_actions,
            "holds": self.holds, "no_answer": self.no_answer,
            "first_policy_tick": self.first_policy_tick, "skipped": self.skipped,
            "chunks": self.chunks, "events": self.events, "seconds": round(self.seconds, 3),
            "bad_messages": self.bad_messages,
            "answer": None if self.answer is None else {
                "stream_id": self.answer.stream_id, "question": self.answer.question,
                "text": self.answer.text, "pieces": len(self.answer.pieces),
                "done": self.answer.done, "error": self.answer.error,
                "frame": self.answer.frame, "obs_robot_tick": self.answer.obs_robot_tick},
        }


def run_controller(c: vlad.Client, ticks: int, *, lockstep: bool, lag: float = 0.5,
                   start_tick: int = 0, question: str | None = None, ask_at: int = 50,
                   answer_ticks: int = 300, log=None) -> Summary:
    """Drive a KinematicRobot through the daemon for `ticks` robot ticks.

    `c` needs publish=True, control=True and subscribes to actions (and lang for a
    question). Wall clock: publish every 1/control_hz on absolute deadlines and take
    every message that arrives until the next deadline (the newest Action is the
    target). Lockstep: Client.step_lockstep per tick. With `question`, it is asked at
    tick `ask_at` and the run goes on (up to `answer_ticks` more) until its answer is
    complete. `log` (a callable) gets progress lines.
    """
    p = c.profile
    robot = KinematicRobot(p, lag)
    images = {cam.name: synthetic_image(cam.width, cam.height) for cam in p.cameras}
    s = Summary(clock="lockstep" if lockstep else "wall")
    last_daemon_tick = None
    pending_q = question

    def take(a: vlad.Action, tick: int) -> None:
        nonlocal last_daemon_tick
        s.actions += 1
        src = vlad.source_name(a.source)
        s.by_source[src] = s.by_source.get(src, 0) + 1
        if a.source == vlad.POLICY:
            s.policy_actions += 1
            if s.first_policy_tick < 0:
                s.first_policy_tick = tick
        elif s.first_policy_tick >= 0:
            s.holds += 1
        if not lockstep and last_daemon_tick is not None and a.tick > last_daemon_tick + 1:
            s.skipped += a.tick - last_daemon_tick - 1
        last_daemon_tick = a.tick
        s.records.append((tick, a))
        robot.command(vlad.targets(a))

    def other(m) -> None:
        if isinstance(m, vlad.ActionChunk):
            s.chunks += 1
        elif isinstance(m, vlad.Event):
            s.events.append(vlad.event_name(m.kind))
            if log:
                log(f"event @tick {m.tick}: {vlad.event_name(m.kind)} {m.message}")
        elif isinstance(m, vlad.LanguageToken) and s.answer and m.stream_id == s.answer.stream_id:
            s.answer.add(m)
            if log:
                log(f"stream {m.stream_id} piece {m.index}: {m.text.decode(errors='replace')!r}"
                    + (" (done)" if m.done else ""))

    if question is not None and "lang" not in c.subscriptions:
        raise ValueError("a question needs a client subscribed to 'lang'")
    c.reset(from_robot_tick=start_tick)   # a new episode from this robot's first tick
    period = 1e9 / p.control_hz
    t0 = time.monotonic_ns()
    deadline = t0
    k = 0
    while True:
        done_answer = s.answer is None or s.answer.done
        if k >= ticks and (pending_q is None and done_answer or k >= ticks + answer_ticks):
            break
        tick = start_tick + k
        if pending_q is not None and k >= ask_at:
            sid = c.ask(pending_q)
            s.answer = vlad.Answer(stream_id=sid, question=pending_q)
            if log:
                log(f"asked {pending_q!r} at robot tick {tick}: stream {sid}")
            pending_q = None
        if lockstep:
            a = c.step_lockstep(tick, robot.pos, robot.vel, images=images)
            if a is None:
                s.no_answer += 1
            else:
                take(a, tick)
            while (m := c.recv(0)) is not None:   # kept while step_lockstep waited
                if isinstance(m, vlad.Action):
                    continue  # a stale answer to an earlier tick
                other(m)
        else:
            c.publish_observation(tick, robot.pos, robot.vel, images=images)
            deadline += period
            while True:
                left_ms = (deadline - time.monotonic_ns()) / 1e6
                m = c.recv(max(0, int(left_ms + 0.999)))
                if m is None:
                    break
                if isinstance(m, vlad.Action):
                    take(m, tick)
                else:
                    other(m)
                if time.monotonic_ns() >= deadline:
                    break
            if time.monotonic_ns() > deadline + 5 * period:   # far behind: do not burst
                deadline = time.monotonic_ns()
        robot.step()
        k += 1
    s.ticks = k
    s.seconds = (time.monotonic_ns() - t0) / 1e9
    s.bad_messages = c.bad_messages
    return s


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="configs/sim-arm.yaml", help="the daemon's profile")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a profile key, as for the daemon (repeatable)")
    ap.add_argument("--key", help="this client's secret key file (CURVE)")
    ap.add_argument("--ticks", type=int, default=250, help="robot ticks to run (default 250)")
    ap.add_argument("--start-tick", type=int, default=0, help="the robot's first tick")
    ap.add_argument("--lag", type=float, default=0.5,
                    help="fraction of the way to the target per tick (default 0.5)")
    ap.add_argument("--instruction", help="set the task instruction first")
    ap.add_argument("--ask", metavar="QUESTION", help="ask this while acting ('' = commentary)")
    ap.add_argument("--ask-at", type=int, default=50, help="tick of the question (default 50)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("-v", "--verbose", action="store_true", help="print events and pieces")
    args = ap.parse_args(argv)
    overrides = {}
    for kv in args.set:
        key, eq, value = kv.partition("=")
        if not eq:
            ap.error(f"--set {kv}: expected KEY=VALUE")
        overrides[key] = value
    if args.ticks < 1:
        ap.error("--ticks: at least 1")

    def log(line: str) -> None:
        print(f"  {line}", file=sys.stderr)

    try:
        with vlad.Client(args.profile, overrides=overrides, publish=True, key_file=args.key,
                         subscribe=("action", "chunk", "lang", "event")) as c:
            if args.instruction is not None:
                c.set_instruction(args.instruction)
            lock = c.profile.clock == "lockstep"
            s = run_controller(c, args.ticks, lockstep=lock, lag=args.lag,
                               start_tick=args.start_tick, question=args.ask,
                               ask_at=args.ask_at, log=log if args.verbose else None)
    except (vlad.VladError, vlad.ProfileError, ValueError) as e:
        print(f"sim_controller: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(s.as_dict()))
    else:
        srcs = ", ".join(f"{k.lower()} {v}" for k, v in sorted(s.by_source.items()))
        print(f"sim_controller: {s.ticks} ticks ({s.clock}, {c.profile.control_hz:g} Hz) in "
              f"{s.seconds:.2f} s: {s.actions} actions ({srcs or 'none'}), "
              f"{s.policy_actions} policy actions, {s.holds} holds after the first chunk, "
              f"{s.chunks} chunks, {s.bad_messages} bad messages")
        if s.clock == "wall":
            print(f"sim_controller: {s.skipped} daemon ticks without an Action")
        else:
            print(f"sim_controller: {s.no_answer} observations without an answer in time")
        if s.answer is not None:
            a = s.answer
            state = "done" if a.done else "incomplete"
            print(f"sim_controller: stream {a.stream_id} {a.question!r} -> {a.text!r} "
                  f"({len(a.pieces)} pieces, {state}{', ' + a.error if a.error else ''}; "
                  f"frame {a.frame}, robot tick {a.obs_robot_tick})")
    if s.actions == 0:
        print("sim_controller: no actions from the daemon (is vlad running with this profile"
              f"{' and clock: lockstep' if s.clock == 'lockstep' else ''}?)", file=sys.stderr)
        return 1
    return 0 if s.answer is None or s.answer.done else 1


if __name__ == "__main__":
    sys.exit(main())
