#!/usr/bin/env python3
"""test_client: the Python client (`vlad` package) against the REAL daemon on loopback.

`$VLAD_BIN/vlad --profile configs/sim-arm.yaml` (the default model) runs with its endpoints
moved to ipc:// in a private folder, `realtime=false` and its e-stop latch file there too,
as tests/test_lang_daemon.c sets it up. Checked:

* wall clock, the example controller's loop (examples/sim_controller.py): an Action for
  every daemon tick (none skipped, ticks increasing), POLICY actions after the first chunk,
  each the chunk's value for its tick;
* lockstep (`clock=lockstep`) with Client.step_lockstep: exactly the Action for each robot
  tick, and a second daemon run of the same ticks is bit-identical;
* status / estop / release / reset / set_instruction: replies, the e-stop hold, the
  INSTRUCTION event, refusals with reasons;
* ask: the answer streams in order (piece 0 carries the question, the last one `done`); a
  question longer than the model reads is Refused with the reason;
* CURVE: with keys from `vladctl keygen` only the installed client key gets in;
* ValueErrors for observations that do not match the profile; garbage frames on raw
  sockets are counted and skipped; late replies to earlier requests are discarded;
* one message of each kind decoded by the generated vlad_pb2 alone (no vlad package) in a
  separate interpreter: the wire is plain protobuf.

Every wait is bounded; each daemon is stopped with SIGTERM in tearDown (exit 0 checked),
on failure too. Run by ctest (test_python_client), which sets PYTHONPATH=build/python,
VLAD_BIN and VLAD_SRC.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import numpy as np
import zmq

import vlad
from vlad import vlad_pb2 as pb

SRC = os.environ.get("VLAD_SRC") or os.getcwd()
BIN = os.environ.get("VLAD_BIN") or os.path.join(SRC, "build", "bin")
PROFILE = os.path.join(SRC, "configs", "sim-arm.yaml")
sys.path.insert(0, os.path.join(SRC, "robot_io", "python", "examples"))
import sim_controller  # noqa: E402  (the example is part of what is tested)

INSTRUCTION = "touch the red ball"
QUESTION = "which colour is the target?"
TOO_LONG = "which colour is the target? and where is it?"   # > the 32 bytes the model reads


def wait_until(pred, timeout_s: float, step_s: float = 0.02):
    """Poll `pred` until it is truthy or `timeout_s` passes; returns its last value."""
    end = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v or time.monotonic() >= end:
            return v
        time.sleep(step_s)


class Daemon:
    """One `vlad` process with ipc:// endpoints in `folder`."""

    def __init__(self, folder: str, extra: dict[str, str] | None = None):
        self.folder = folder
        self.sets = {
            "endpoints.observations": f"ipc://{folder}/obs",
            "endpoints.actions": f"ipc://{folder}/act",
            "endpoints.control": f"ipc://{folder}/ctl",
            "realtime": "false",
            "safety.estop_file": f"{folder}/estop",
        }
        self.sets.update(extra or {})
        self.log_path = os.path.join(folder, "vlad.log")
        argv = [os.path.join(BIN, "vlad"), "--profile", PROFILE]
        for k, v in self.sets.items():
            argv += ["--set", f"{k}={v}"]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=SRC)
        self.rc: int | None = None

    def log_tail(self, n: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-n:]).decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, client: vlad.Client, timeout_s: float = 20) -> vlad.Status:
        """The daemon answers status (its model is loaded)."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"vlad exited with {self.proc.returncode}:\n"
                                     + self.log_tail())
            try:
                return client.status(timeout_ms=200)
            except vlad.NoReply:
                continue
        raise AssertionError("vlad did not answer status within "
                             f"{timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> int | None:
        """SIGTERM, then wait (bounded); SIGKILL if it hangs. Returns the exit status."""
        if self.rc is not None:
            return self.rc
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
            self.rc = None
        self._log.close()
        return self.rc


class RobotThread(threading.Thread):
    """A kinematic robot at control_hz in its own thread with its own Client (a Client is
    used by one thread), while the test thread plays the operator."""

    def __init__(self, sets: dict[str, str]):
        super().__init__(daemon=True)
        self.sets = sets
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.lock = threading.Lock()
        self.actions: list[tuple[int, int, tuple]] = []   # (daemon tick, source, targets)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with vlad.Client(PROFILE, overrides=self.sets, publish=True, control=False,
                             subscribe=("action",), latest=True) as c:
                robot = sim_controller.KinematicRobot(c.profile, 0.5)
                cam = c.profile.cameras[0]
                images = {cam.name: sim_controller.synthetic_image(cam.width, cam.height)}
                period = 1.0 / c.profile.control_hz
                deadline = time.monotonic()
                tick = 0
                self.ready.set()
                while not self.stop_flag.is_set():
                    c.publish_observation(tick, robot.pos, robot.vel, images=images)
                    tick += 1
                    deadline += period
                    left = max(0.0, deadline - time.monotonic())
                    a = c.recv_action(int(left * 1000))
                    if a is not None:
                        robot.command(vlad.targets(a))
                        with self.lock:
                            self.actions.append((a.tick, a.source, tuple(a.joint_targets)))
                    left = deadline - time.monotonic()
                    if left > 0:
                        time.sleep(left)
                    robot.step()
        except BaseException as e:  # reported by the test
            self.error = e
            self.ready.set()

    def snapshot(self) -> list[tuple[int, int, tuple]]:
        with self.lock:
            return list(self.actions)

    def finish(self) -> None:
        self.stop_flag.set()
        self.join(timeout=10)


class DaemonTestCase(unittest.TestCase):
    """Each test gets a private folder; daemons, clients and robot threads it starts are
    stopped in tearDown, on failure too, and every daemon must exit 0 on SIGTERM."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vlad-py-")
        self.daemons: list[Daemon] = []
        self.clients: list[vlad.Client] = []
        self.robots: list[RobotThread] = []

    def tearDown(self) -> None:
        for r in self.robots:
            r.finish()
        for c in self.clients:
            c.close()
        rcs = [(d, d.stop()) for d in self.daemons]
        shutil.rmtree(self.folder, ignore_errors=True)
        for d, rc in rcs:
            self.assertEqual(rc, 0, f"vlad did not exit 0 on SIGTERM (rc {rc}):\n"
                             + d.log_tail())
        for r in self.robots:
            self.assertFalse(r.is_alive(), "the robot thread did not stop")

    def start_daemon(self, **extra: str) -> Daemon:
        sub = tempfile.mkdtemp(dir=self.folder)
        d = Daemon(sub, {k.replace("__", "."): v for k, v in extra.items()})
        self.daemons.append(d)
        return d

    def client(self, d: Daemon, **kw) -> vlad.Client:
        c = vlad.Client(PROFILE, overrides=d.sets, **kw)
        self.clients.append(c)
        return c

    def start_robot(self, d: Daemon) -> RobotThread:
        r = RobotThread(d.sets)
        self.robots.append(r)
        r.start()
        self.assertTrue(r.ready.wait(10))
        if r.error:
            raise r.error
        # bounded: the daemon answers the robot (the first Actions arrive)
        self.assertTrue(wait_until(lambda: len(r.snapshot()) >= 5 or r.error, 10),
                        "no actions reached the robot thread:\n" + d.log_tail())
        if r.error:
            raise r.error
        return r


class TestWallClock(DaemonTestCase):
    def test_example_loop_gets_an_action_every_tick(self):
        d = self.start_daemon(policy__instruction=INSTRUCTION)
        c = self.client(d, publish=True, subscribe=("action", "chunk", "event"))
        d.wait_ready(c)
        chunks: dict[int, vlad.ActionChunk] = {}
        real_recv = c.recv

        def recv(timeout_ms):   # keep the chunks the loop sees, to check actions against
            m = real_recv(timeout_ms)
            if isinstance(m, vlad.ActionChunk):
                chunks[m.chunk_id] = m
            return m
        c.recv = recv
        ticks = 150
        overruns0 = c.status().overruns
        s = sim_controller.run_controller(c, ticks, lockstep=False)
        overruns = c.status().overruns - overruns0
        print(f"\nwall: {s.ticks} ticks, {s.actions} actions {s.by_source}, {s.chunks} "
              f"chunks, {s.holds} holds after the first chunk, {s.skipped} skipped, "
              f"{overruns} daemon overruns")
        self.assertEqual(s.ticks, ticks)
        self.assertGreater(s.actions, ticks // 2)
        daemon_ticks = [a.tick for _, a in s.records]
        # an Action for every daemon tick from the first one on: increasing, none twice,
        # and a tick number missing only where the daemon itself jumped over it (it woke
        # more than a period late and counted an overrun: control.c keeps ticks tied to
        # wall time)
        self.assertTrue(all(b > a for a, b in zip(daemon_ticks, daemon_ticks[1:])))
        missing = daemon_ticks[-1] - daemon_ticks[0] + 1 - len(daemon_ticks)
        self.assertEqual(missing, s.skipped)
        self.assertLessEqual(s.skipped, overruns)
        self.assertEqual(s.bad_messages, 0)
        # policy actions after the first chunk, each the value of its chunk for its tick
        self.assertGreater(s.policy_actions, 0)
        self.assertGreater(len(chunks), 0)
        checked = 0
        prev = None
        for robot_tick, a in s.records:
            self.assertEqual(a.robot, "sim-arm")
            self.assertTrue(0 <= a.robot_tick <= robot_tick,
                            f"action for robot tick {a.robot_tick} seen at {robot_tick}")
            if prev is not None and a.robot_tick < prev.robot_tick:
                self.fail("robot_tick went back")
            prev = a
            if a.source != vlad.POLICY:
                continue
            self.assertGreater(a.chunk_id, 0)
            self.assertTrue(0 <= a.obs_tick <= a.tick)
            if a.chunk_id < min(chunks):
                continue  # published before this client's subscription was live
            ch = chunks.get(a.chunk_id)
            self.assertIsNotNone(ch, f"action of tick {a.tick}: chunk {a.chunk_id} was not "
                                 "published before it")
            i = a.tick - ch.start_tick
            self.assertTrue(0 <= i < ch.horizon)
            want = vlad.chunk_values(ch)[i]
            np.testing.assert_allclose(vlad.targets(a), want.astype(np.float64), rtol=0,
                                       atol=1e-6)
            checked += 1
        self.assertGreater(checked, 0)
        # the policy keeps acting after its first chunk (POLICY actions in the last third
        # of the run too), and nothing e-stopped it
        late = [a.source for t, a in s.records if t >= 2 * ticks // 3]
        self.assertIn(vlad.POLICY, late)
        self.assertNotIn(vlad.ESTOP, [a.source for _, a in s.records])


class TestLockstep(DaemonTestCase):
    TICKS = 120

    def run_once(self) -> list[vlad.Action]:
        d = self.start_daemon(clock="lockstep", policy__instruction=INSTRUCTION)
        c = self.client(d, publish=True, subscribe=("action", "chunk", "event"))
        self.assertEqual(c.profile.clock, "lockstep")
        d.wait_ready(c)
        s = sim_controller.run_controller(c, self.TICKS, lockstep=True)
        print(f"\nlockstep: {s.ticks} ticks, {s.actions} actions {s.by_source}, "
              f"{s.chunks} chunks, {s.holds} holds after the first chunk")
        self.assertEqual(s.no_answer, 0)
        # exactly the Action for each robot tick, in order
        self.assertEqual([t for t, _ in s.records], list(range(self.TICKS)))
        self.assertEqual([a.robot_tick for _, a in s.records], list(range(self.TICKS)))
        self.assertGreater(s.policy_actions, self.TICKS // 2)
        self.assertGreater(s.chunks, 0)
        self.assertEqual(s.bad_messages, 0)
        self.clients.remove(c)
        c.close()
        self.daemons.remove(d)
        self.assertEqual(d.stop(), 0, d.log_tail())
        return [a for _, a in s.records]

    def test_step_lockstep_deterministic(self):
        first = self.run_once()
        second = self.run_once()

        def wire(a: vlad.Action) -> bytes:
            b = vlad.Action()
            b.CopyFrom(a)
            b.stamp_ns = 0          # the publication time is the only field that may differ
            return b.SerializeToString()
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(first, second)) if wire(a) != wire(b)]
        if diff:
            i, a, b = diff[0]
            self.fail(f"a second lockstep run of the same ticks differs at {len(diff)} of "
                      f"{len(first)} ticks; the first, robot tick {i}:\n{a}\nvs\n{b}")
        t1 = np.array([vlad.targets(a) for a in first])
        t2 = np.array([vlad.targets(a) for a in second])
        self.assertTrue(np.array_equal(t1.view(np.uint64), t2.view(np.uint64)))

    def test_example_script_lockstep_with_a_question(self):
        d = self.start_daemon(clock="lockstep")
        argv = [sys.executable, os.path.join(SRC, "robot_io", "python", "examples",
                                             "sim_controller.py"),
                "--profile", PROFILE, "--ticks", "80", "--instruction", INSTRUCTION,
                "--ask", QUESTION, "--ask-at", "30", "--json"]
        for k, v in d.sets.items():
            argv += ["--set", f"{k}={v}"]
        # the daemon answers first (model loaded)
        d.wait_ready(self.client(d, subscribe=()))
        out = subprocess.run(argv, capture_output=True, timeout=120, cwd=SRC,
                             env={**os.environ})
        self.assertEqual(out.returncode, 0, out.stderr.decode(errors="replace"))
        s = json.loads(out.stdout.decode().strip().splitlines()[-1])
        print(f"\nexample: {s['ticks']} ticks, {s['by_source']}, answer {s['answer']}")
        self.assertEqual(s["clock"], "lockstep")
        self.assertGreaterEqual(s["ticks"], 80)
        self.assertEqual(s["actions"], s["ticks"])
        self.assertTrue(s["answer"]["done"])
        self.assertEqual(s["answer"]["question"], QUESTION)
        self.assertEqual(s["answer"]["error"], "")
        self.assertGreater(len(s["answer"]["text"]), 0)


class TestCommands(DaemonTestCase):
    def test_status_estop_release_reset_instruction(self):
        d = self.start_daemon()
        op = self.client(d, subscribe=("event", "action"))
        st = d.wait_ready(op)
        self.assertEqual(st.robot, "sim-arm")
        self.assertEqual(st.control_hz, 50)
        self.assertEqual(st.estop_file, os.path.join(d.folder, "estop"))
        self.assertFalse(st.curve)
        robot = self.start_robot(d)
        # an Action on the operator's socket: its event subscription (sent before) is live
        self.assertIsNotNone(op.recv_action(5000))
        self.assertTrue(wait_until(lambda: op.status().mode == pb.MODE_RUNNING, 10))

        # set_instruction: reply, status, the INSTRUCTION event
        r = op.set_instruction(INSTRUCTION)
        self.assertTrue(r.ok)
        self.assertEqual(r.status.instruction, INSTRUCTION)
        ev = self.next_event(op, pb.Event.INSTRUCTION)
        self.assertEqual(ev.message, INSTRUCTION)
        with self.assertRaises(vlad.Refused) as cm:
            op.set_instruction("x" * 300)
        self.assertIn("at most 255", cm.exception.reason)
        self.assertFalse(cm.exception.reply.ok)

        # estop: the daemon holds the last target; only ESTOP actions until the release
        r = op.estop("python test")
        self.assertTrue(r.ok)
        self.next_event(op, pb.Event.ESTOP)
        self.assertTrue(wait_until(lambda: op.status().mode == pb.MODE_ESTOP, 5))
        self.assertTrue(os.path.exists(os.path.join(d.folder, "estop")))
        n0 = len(robot.snapshot())
        self.assertTrue(wait_until(lambda: len(robot.snapshot()) >= n0 + 10, 10))
        acts = robot.snapshot()
        first_estop = next(i for i, a in enumerate(acts) if a[1] == vlad.ESTOP)
        held = acts[first_estop:]
        self.assertTrue(all(a[1] == vlad.ESTOP for a in held), "a non-ESTOP action while "
                        "e-stopped")
        self.assertTrue(all(a[2] == held[0][2] for a in held), "the e-stop moved the target")
        op.release()
        self.next_event(op, pb.Event.ESTOP_RELEASED)
        self.assertTrue(wait_until(lambda: op.status().mode == pb.MODE_RUNNING, 5))

        # reset: a new episode
        ep = op.status().episode
        r = op.reset()
        self.assertTrue(r.ok)
        self.next_event(op, pb.Event.RESET)
        self.assertTrue(wait_until(lambda: op.status().episode == ep + 1, 5))

        # request ids: each reply answers its own request
        a, b = vlad.Command(status=pb.StatusRequest()), vlad.Command(status=pb.StatusRequest())
        ra, rb = op.command(a), op.command(b)
        self.assertEqual((ra.request_id, rb.request_id), (a.request_id, b.request_id))
        self.assertEqual(rb.request_id, ra.request_id + 1)
        st = op.status()
        self.assertGreater(st.observations_received, 0)
        self.assertGreater(st.actions_published, 0)
        self.assertEqual(st.bad_observations, 0)
        self.assertEqual(st.bad_commands, 1)     # the instruction of 300 bytes
        self.assertEqual(st.subscriptions_refused, 0)
        self.assertEqual(op.bad_messages, 0)
        robot.finish()
        self.assertIsNone(robot.error)

    def next_event(self, c: vlad.Client, kind: int, timeout_s: float = 5) -> vlad.Event:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            m = c.recv(100)
            if isinstance(m, vlad.Event) and m.kind == kind:
                return m
        self.fail(f"no {vlad.event_name(kind)} event within {timeout_s} s")


class TestLanguage(DaemonTestCase):
    def test_ask_streams_the_answer(self):
        d = self.start_daemon(policy__instruction=INSTRUCTION)
        # an operator subscribed to language only: ask() probes with a temporary action
        # subscription, then unsubscribes
        op = self.client(d, subscribe=("lang",))
        d.wait_ready(op)
        self.start_robot(d)
        ans = op.ask_and_wait(QUESTION, timeout_ms=10000)
        print(f"\nask: {ans.question!r} -> {ans.text!r} in {len(ans.pieces)} pieces "
              f"(frame {ans.frame}, robot tick {ans.obs_robot_tick})")
        self.assertTrue(ans.done)
        self.assertEqual(ans.error, "")
        self.assertGreater(len(ans.data), 0)
        self.assertEqual([p.index for p in ans.pieces], list(range(len(ans.pieces))))
        self.assertEqual(ans.pieces[0].question, QUESTION)
        self.assertTrue(all(p.question == "" for p in ans.pieces[1:]))
        self.assertTrue(ans.pieces[-1].done)
        self.assertTrue(all(not p.done for p in ans.pieces[:-1]))
        self.assertTrue(all(p.frame == ans.frame and p.obs_tick == ans.pieces[0].obs_tick
                            for p in ans.pieces))
        self.assertGreaterEqual(ans.obs_robot_tick, 0)
        self.assertNotIn("action", op.subscriptions)

        # ask + answers: the same stream by id; the commentary (empty question) too
        sid = op.ask("")
        pieces = list(op.answers(sid, timeout_ms=10000))
        self.assertTrue(pieces[-1].done)
        self.assertEqual([p.stream_id for p in pieces], [sid] * len(pieces))
        self.assertNotEqual(sid, ans.stream_id)

        with self.assertRaises(vlad.Refused) as cm:
            op.ask(TOO_LONG)
        self.assertIn("at most", cm.exception.reason)
        self.assertIn(str(len(TOO_LONG)), cm.exception.reason)
        st = op.status()
        self.assertEqual(st.lang_refused, 1)
        self.assertEqual(st.lang_requests, 2)
        self.assertEqual(st.subscriptions_refused, 0)   # the unsubscribe matched exactly
        self.assertEqual(op.bad_messages, 0)


class TestCurve(DaemonTestCase):
    def keygen(self, base: str, rights: str) -> tuple[str, str]:
        subprocess.run([os.path.join(BIN, "vladctl"), "keygen", base, "--rights", rights],
                       check=True, capture_output=True, timeout=30)
        return base + ".key", base + ".key_secret"

    def test_only_the_installed_key_gets_in(self):
        keys = os.path.join(self.folder, "keys")
        os.makedirs(os.path.join(keys, "clients"))
        dpub, dsec = self.keygen(os.path.join(keys, "daemon"), "all")
        cpub, csec = self.keygen(os.path.join(keys, "robot"), "observe,publish,command")
        _, osec = self.keygen(os.path.join(keys, "other"), "all")   # never installed
        shutil.copy(cpub, os.path.join(keys, "clients"))
        server_pub, _ = vlad.load_client_key(dsec)
        d = self.start_daemon(security__curve_server_public_key=server_pub,
                              security__server_key_file=dsec,
                              security__client_keys_dir=os.path.join(keys, "clients"))
        c = self.client(d, key_file=csec)
        self.assertTrue(c.profile.curve)
        st = d.wait_ready(c)
        self.assertTrue(st.curve)
        self.assertEqual(st.client_keys, 1)
        # the key from the profile's security.client_key_file works the same
        sets = dict(d.sets, **{"security.client_key_file": csec})
        c2 = vlad.Client(PROFILE, overrides=sets)
        self.clients.append(c2)
        self.assertTrue(c2.status().curve)
        # an unknown key is refused at the handshake: no reply
        c3 = self.client(d, key_file=osec)
        with self.assertRaises(vlad.NoReply):
            c3.status(timeout_ms=500)
        self.assertTrue(wait_until(lambda: c.status().handshakes_refused >= 1, 5))
        # no key at all, or a secret key others can read: refused before connecting
        env = os.environ.pop("VLAD_CLIENT_KEY", None)
        try:
            with self.assertRaises(vlad.KeyFileError) as cm:
                vlad.Client(PROFILE, overrides=d.sets)
            self.assertIn("give this client its secret key", str(cm.exception))
        finally:
            if env is not None:
                os.environ["VLAD_CLIENT_KEY"] = env
        loose = os.path.join(keys, "loose.key_secret")
        shutil.copy(csec, loose)
        os.chmod(loose, 0o644)
        with self.assertRaises(vlad.KeyFileError) as cm:
            vlad.Client(PROFILE, overrides=d.sets, key_file=loose)
        self.assertIn("chmod 600", str(cm.exception))
        with self.assertRaises(vlad.KeyFileError):
            vlad.load_client_key(cpub)          # a public certificate has no secret key
        self.assertEqual(stat.S_IMODE(os.stat(csec).st_mode), 0o600)



class TestRecording(DaemonTestCase):
    def test_a_lockstep_recording_reads_with_stock_protobuf(self):
        """vlad --record, read back with vlad.read_recording (the stock protobuf runtime):
        the header first, every observation sent and every Action received, in order, with
        times that never go back; a file cut in the middle of an entry reads up to it."""
        rec = os.path.join(self.folder, "rec")
        d = self.start_daemon(clock="lockstep", record__dir=rec)
        c = self.client(d, publish=True, subscribe=("action",))
        d.wait_ready(c)
        pos = np.array(c.profile.home)
        got = []
        for tick in range(30):
            a = c.step_lockstep(tick, pos)
            self.assertIsNotNone(a, d.log_tail())
            got.append(a)
        c.estop("recorded")
        self.clients.remove(c)
        c.close()
        self.daemons.remove(d)
        self.assertEqual(d.stop(), 0, d.log_tail())
        files = [f for f in os.listdir(rec) if f.endswith(".vrec")]
        self.assertEqual(len(files), 1, files)
        path = os.path.join(rec, files[0])
        entries = list(vlad.read_recording(path, strict=True))
        self.assertEqual(entries[0].kind, vlad.RecordEntry.HEADER)
        self.assertEqual(entries[0].header.robot, c.profile.robot)
        self.assertEqual([e.seq for e in entries], list(range(entries[0].seq, entries[0].seq + len(entries))))
        self.assertTrue(all(b.t_ns >= a.t_ns for a, b in zip(entries, entries[1:])))
        obs = [e.observation.tick for e in entries if e.kind == vlad.RecordEntry.OBSERVATION]
        self.assertEqual(sorted(set(obs)), list(range(30)))   # resends repeat a tick
        acts = [e.action for e in entries if e.kind == vlad.RecordEntry.ACTION]
        # every Action this client received is in the file, byte for byte (a lockstep resend
        # answered again is a second entry for its robot tick, with its own stamp_ns)
        answers = {a.SerializeToString() for a in acts}
        for a in got:
            self.assertIn(a.SerializeToString(), answers)
        cmds = [e.command for e in entries if e.kind == vlad.RecordEntry.COMMAND]
        self.assertTrue(any(cm.WhichOneof("body") == "estop" for cm in cmds))
        # a recording cut short (a daemon killed) reads up to its last whole entry
        with open(path, "rb") as f:
            data = f.read()
        cut = os.path.join(self.folder, "cut.vrec")
        with open(cut, "wb") as f:
            f.write(data[:len(data) - 3])
        self.assertEqual(len(list(vlad.read_recording(cut))), len(entries) - 1)
        with self.assertRaises(vlad.RecordError):
            list(vlad.read_recording(cut, strict=True))
        with open(cut, "wb") as f:
            f.write(bytes([2, 0x18, 5]))   # one whole entry (field 3, kind = 5): not a HEADER
        with self.assertRaises(vlad.RecordError):
            list(vlad.read_recording(cut))


class TestValidation(unittest.TestCase):
    """No daemon: the checks happen before anything is sent."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vlad-py-")
        self.sets = {f"endpoints.{k}": f"ipc://{self.folder}/{k}"
                     for k in ("observations", "actions", "control")}
        self.c = vlad.Client(PROFILE, overrides=self.sets, publish=True)

    def tearDown(self) -> None:
        self.c.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def raises(self, fragment: str, *args, **kw) -> None:
        with self.assertRaises(ValueError) as cm:
            self.c.publish_observation(*args, **kw)
        self.assertIn(fragment, str(cm.exception))

    def test_observation_errors_name_what_is_wrong(self):
        img = np.zeros((64, 64, 3), np.uint8)
        self.raises("joint_pos: 3 values, the profile has 4 joints", 0, [0.0, 0.5, 1.5])
        self.raises("joint_pos: 5 values", 0, np.zeros(5))
        self.raises("joint_pos[2] (elbow_pitch): not a finite number", 0,
                    [0, 0.5, math.nan, 1.0])
        self.raises("joint_vel: 2 values", 0, np.zeros(4), joint_vel=[0, 0])
        self.raises("images['front']: shape (32, 64, 3)", 0, np.zeros(4),
                    images={"front": np.zeros((32, 64, 3), np.uint8)})
        self.raises("expected (height, width, 3) = (64, 64, 3)", 0, np.zeros(4),
                    images={"front": np.zeros((64, 64), np.uint8)})
        self.raises("dtype float64, expected uint8", 0, np.zeros(4),
                    images={"front": np.zeros((64, 64, 3))})
        self.raises("unknown camera 'back'", 0, np.zeros(4), images={"back": img})
        self.raises("tick: -1 is not in [0, 2^53)", -1, np.zeros(4))
        self.raises("tick: 9007199254740992", 1 << 53, np.zeros(4))
        self.raises("unknown kind 'START'", 0, np.zeros(4), events=[("START", "")])
        self.raises("at most 1024", 0, np.zeros(4), events=[("EPISODE_START", "x" * 2000)])
        # nothing was sent: the first good observation is seq 1
        o = self.c.publish_observation(3, np.zeros(4), np.zeros(4), images={"front": img},
                                       events=[("EPISODE_START", INSTRUCTION)])
        self.assertEqual((o.seq, o.tick, o.robot), (1, 3, "sim-arm"))
        self.assertEqual(len(o.images[0].data), 64 * 64 * 3)
        self.assertEqual(o.images[0].encoding, pb.IMAGE_ENCODING_RGB8)
        self.assertEqual(o.events[0].kind, pb.TaskEvent.EPISODE_START)
        self.assertEqual(self.c.publish_observation(4, np.zeros(4)).seq, 2)

    def test_profile_errors(self):
        with self.assertRaises(vlad.ProfileError) as cm:
            vlad.Profile.load(PROFILE, {"clock": "sometimes"})
        self.assertIn("clock", str(cm.exception))
        with self.assertRaises(vlad.ProfileError) as cm:
            vlad.Profile.load(PROFILE, {"endpoints.actions": "udp://x:1"})
        self.assertIn("endpoints.actions", str(cm.exception))
        with self.assertRaises(vlad.ProfileError) as cm:
            vlad.Profile.load(PROFILE, {"security.curve_client_secret_key": "x" * 40})
        self.assertIn("does not belong in a profile", str(cm.exception))
        p = vlad.Profile.load(PROFILE)
        self.assertEqual(p.joint_names, ("base_yaw", "shoulder_pitch", "elbow_pitch",
                                         "wrist_pitch"))
        self.assertEqual((p.cameras[0].width, p.cameras[0].height), (64, 64))
        # the same profile without a file
        q = vlad.Profile(robot="sim-arm", joints=p.joint_names,
                         cameras=[("front", 64, 64)],
                         endpoints={k.split(".")[1]: v for k, v in self.sets.items()})
        self.assertEqual(q.n_joints, 4)
        with vlad.Client(profile=q, publish=True, subscribe=()) as c:
            self.assertEqual(c.publish_observation(0, np.zeros(4)).seq, 1)
        with vlad.Client(profile=q, subscribe=(), control=False) as c:
            with self.assertRaises(vlad.VladError):
                c.recv(0)            # no subscriptions
            with self.assertRaises(vlad.VladError):
                c.status()           # no control socket


class TestGarbage(unittest.TestCase):
    """A fake daemon on raw sockets sends frames the client must count and skip."""

    def setUp(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="vlad-py-")
        self.ctx = zmq.Context()
        self.xpub = self.ctx.socket(zmq.XPUB)
        self.router = self.ctx.socket(zmq.ROUTER)
        for s in (self.xpub, self.router):
            s.setsockopt(zmq.LINGER, 0)
        self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)   # every subscription, each client's
        self.xpub.bind(f"ipc://{self.folder}/act")
        self.router.bind(f"ipc://{self.folder}/ctl")
        self.sets = {"endpoints.observations": f"ipc://{self.folder}/obs",
                     "endpoints.actions": f"ipc://{self.folder}/act",
                     "endpoints.control": f"ipc://{self.folder}/ctl"}
        self.c = vlad.Client(PROFILE, overrides=self.sets, subscribe=("action", "event"))

    def tearDown(self) -> None:
        self.c.close()
        self.xpub.close()
        self.router.close()
        self.ctx.term()
        shutil.rmtree(self.folder, ignore_errors=True)

    @staticmethod
    def action(**kw) -> bytes:
        a = pb.Action(robot="sim-arm", tick=7, joint_targets=[0.0, 0.5, 1.5, 1.0],
                      source=pb.ACTION_SOURCE_POLICY, chunk_id=1)
        for k, v in kw.items():
            if k == "joint_targets":
                del a.joint_targets[:]
                a.joint_targets.extend(v)
            else:
                setattr(a, k, v)
        return b"action.sim-arm " + a.SerializeToString()

    def test_bad_frames_are_counted_and_skipped(self):
        # the subscriptions arrive (XPUB shows them): no slow joiner below
        subs = set()
        end = time.monotonic() + 10
        while len(subs) < 2 and time.monotonic() < end:
            if self.xpub.poll(100):
                subs.add(self.xpub.recv())
        self.assertEqual(subs, {b"\x01action.sim-arm ", b"\x01event.sim-arm "})
        bad = [
            b"action.sim-arm \xff\xff\xff\xff",                   # not a protobuf
            b"action.sim-arm \x0a\x05",                           # truncated
            self.action(robot="other-arm"),                       # another robot
            self.action(joint_targets=[0.0, 0.5, 1.5]),           # 3 of 4 joints
            self.action(joint_targets=[0.0, math.nan, 1.5, 1.0]),  # NaN
            self.action(joint_targets=[0.0, 0.5, 9.0, 1.0]),      # outside the limits
            b"event.sim-arm \x20\x80",                            # bad varint
        ]
        for f in bad:
            self.xpub.send(f)
        self.xpub.send_multipart([b"action.sim-arm ", self.action()[15:]])  # two frames
        self.xpub.send(self.action(tick=8))
        m = self.c.recv(5000)
        self.assertIsInstance(m, vlad.Action)
        self.assertEqual(m.tick, 8)
        self.assertEqual(list(m.joint_targets), [0.0, 0.5, 1.5, 1.0])
        self.assertEqual(self.c.bad_messages, len(bad) + 1)
        self.assertIn("frames", self.c.last_bad)   # the last bad one: two frames
        self.assertIsNone(self.c.recv(0))
        # the client still works: an event, then a latest-only action receive
        ev = pb.Event(robot="sim-arm", kind=pb.Event.STARTED, message="hi")
        self.xpub.send(b"event.sim-arm " + ev.SerializeToString())
        self.assertEqual(self.c.recv(5000).message, "hi")
        # frames a subscription filters away never reach the client; its decoder is
        # checked directly on them
        n = self.c.bad_messages
        for f in (b"no separator at all", b" empty topic", b"other.sim-arm x",
                  b"x" * 200 + b" late separator"):
            self.assertIsNone(self.c._decode([f]))
        self.assertEqual(self.c.bad_messages, n + 4)
        self.assertIsNone(self.c._decode([b"y" * 200]))
        self.assertIn("no topic separator", self.c.last_bad)

    def test_latest_drains_and_other_kinds_are_kept(self):
        with vlad.Client(PROFILE, overrides=self.sets, subscribe=("action", "event"),
                         control=False, latest=True) as c:
            end = time.monotonic() + 10
            n = 0
            while n < 4 and time.monotonic() < end:   # self.c's two, then c's two
                if self.xpub.poll(100):
                    self.xpub.recv()
                    n += 1
            ev = pb.Event(robot="sim-arm", kind=pb.Event.STALL, message="e")
            for t in range(5):
                self.xpub.send(self.action(tick=t))
                if t == 2:
                    self.xpub.send(b"event.sim-arm " + ev.SerializeToString())
            # wait until all 6 are queued, then one latest receive returns the newest
            self.assertTrue(wait_until(lambda: c.sub_socket.poll(0), 5))
            time.sleep(0.5)   # let the rest of the burst arrive (a precondition, not a check)
            a = c.recv_action(1000)
            self.assertEqual(a.tick, 4)
            # the event that came meanwhile was kept for recv()
            self.assertEqual(c.recv(0).message, "e")
            self.assertIsNone(c.recv(0))

    def test_stale_and_bad_replies_are_discarded(self):
        got = {}

        def fake_daemon():
            # answer the first request with garbage, a late reply to an earlier request,
            # a reply in two frames, then the right one
            if not self.router.poll(10000):
                return
            peer, frame = self.router.recv_multipart()
            cmd = pb.Command()
            cmd.ParseFromString(frame[4:])
            got["cmd"] = cmd
            late = pb.Reply(request_id=cmd.request_id - 1 if cmd.request_id > 1 else 999,
                            ok=True)
            right = pb.Reply(request_id=cmd.request_id, ok=False, error="nope")
            self.router.send_multipart([peer, b"garbage"])
            self.router.send_multipart([peer, b"reply " + late.SerializeToString()])
            self.router.send_multipart([peer, b"reply ", right.SerializeToString()])
            self.router.send_multipart([peer, b"reply \xff\xff"])
            self.router.send_multipart([peer, b"reply " + right.SerializeToString()])

        t = threading.Thread(target=fake_daemon, daemon=True)
        t.start()
        with self.assertRaises(vlad.Refused) as cm:
            self.c.estop("why")
        t.join(10)
        self.assertEqual(cm.exception.reason, "nope")
        self.assertTrue(got["cmd"].HasField("estop"))
        self.assertEqual(got["cmd"].estop.reason, "why")
        self.assertEqual(self.c.bad_messages, 3)
        # nobody answers: NoReply within the timeout
        with self.assertRaises(vlad.NoReply):
            self.c.status(timeout_ms=200)


class TestPlainProtobuf(DaemonTestCase):
    """One message of each kind, decoded by the generated module alone in a separate
    interpreter that has no vlad package: pyzmq + protobuf only."""

    SCRIPT = r'''
import json, sys, time
sys.path.insert(0, sys.argv[1])
import zmq
import vlad_pb2 as pb
assert "vlad" not in sys.modules
robot, act_ep, ctl_ep = sys.argv[2:5]
ctx = zmq.Context()
sub = ctx.socket(zmq.SUB)
for k in ("lang", "chunk", "event", "action"):
    sub.setsockopt(zmq.SUBSCRIBE, f"{k}.{robot} ".encode())
sub.connect(act_ep)
dealer = ctx.socket(zmq.DEALER)
dealer.connect(ctl_ep)
types = {"action": pb.Action, "chunk": pb.ActionChunk, "lang": pb.LanguageToken,
         "event": pb.Event}
seen, out, sent, rid = {}, {}, [], 0
def command(**body):
    global rid
    rid += 1
    c = pb.Command(request_id=rid, **body)
    dealer.send(b"cmd " + c.SerializeToString())
    if not dealer.poll(5000):
        raise SystemExit("no reply")
    data = dealer.recv()
    assert data.startswith(b"reply ")
    r = pb.Reply()
    r.ParseFromString(data[6:])
    assert r.request_id == rid
    return r
end = time.monotonic() + 20
stream = None
while time.monotonic() < end:
    if sub.poll(100):
        data = sub.recv()
        topic, _, payload = data.partition(b" ")
        kind = topic.decode().split(".")[0]
        m = types[kind]()
        m.ParseFromString(payload)
        if kind == "lang" and m.stream_id != stream:
            continue
        if kind == "event" and m.kind != pb.Event.INSTRUCTION:
            continue
        seen.setdefault(kind, m)
        if kind == "lang" and m.done:
            out["lang_done"] = True
    if "action" in seen and not sent:
        r = command(set_instruction=pb.SetInstruction(text="touch the red ball"))
        out["reply_ok"] = r.ok
        out["reply_robot"] = r.status.robot
        r = command(ask=pb.Ask(question="which colour is the target?"))
        stream = r.stream_id
        out["ask_ok"] = r.ok
        sent.append(1)
    if len(seen) == 4 and out.get("lang_done"):
        break
a, c, l, e = (seen.get(k) for k in ("action", "chunk", "lang", "event"))
out.update({
    "kinds": sorted(seen),
    "action": a and [a.robot, len(a.joint_targets), pb.ActionSource.Name(a.source)],
    "chunk": c and [c.robot, c.dim, c.horizon, len(c.values)],
    "lang": l and [l.stream_id == stream, l.index, l.question],
    "event": e and [pb.Event.Kind.Name(e.kind), e.message],
})
print(json.dumps(out))
'''

    def test_generated_module_alone_decodes_every_kind(self):
        d = self.start_daemon()
        c = self.client(d, subscribe=())
        d.wait_ready(c)
        self.start_robot(d)
        pbdir = os.path.dirname(pb.__file__)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        out = subprocess.run([sys.executable, "-c", self.SCRIPT, pbdir, "sim-arm",
                              d.sets["endpoints.actions"], d.sets["endpoints.control"]],
                             capture_output=True, timeout=60, env=env)
        self.assertEqual(out.returncode, 0, out.stderr.decode(errors="replace"))
        r = json.loads(out.stdout)
        print(f"\nplain protobuf: {r}")
        self.assertEqual(r["kinds"], ["action", "chunk", "event", "lang"])
        self.assertTrue(r["reply_ok"] and r["ask_ok"] and r["lang_done"])
        self.assertEqual(r["reply_robot"], "sim-arm")
        self.assertEqual(r["action"][:2], ["sim-arm", 4])
        self.assertEqual(r["chunk"][:2], ["sim-arm", 4])
        self.assertEqual(r["chunk"][3], r["chunk"][1] * r["chunk"][2])
        self.assertEqual(r["lang"], [True, 0, "which colour is the target?"])
        self.assertEqual(r["event"], ["INSTRUCTION", "touch the red ball"])


if __name__ == "__main__":
    unittest.main()
