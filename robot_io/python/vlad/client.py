"""The controller-side client of a vlad daemon, in Python.

This mirrors the C library ``robot_io/client.h`` (``vlad_client_*``): one
:class:`Client` is used by one thread; its subscriptions are chosen when it is
made; every received message is checked against the profile and bad ones are
counted (:attr:`Client.bad_messages`) and skipped, never raised; a command
waits for the reply carrying its own ``request_id`` and discards late replies
to earlier requests.

The wire (``proto/vlad.proto``): every message is ONE ZeroMQ frame holding the
topic bytes, one space (0x20), then the packed protobuf. The daemon binds and
peers connect:

* ``endpoints.observations``: daemon SUB; ``obs.<robot>`` Observation (robot to vlad);
* ``endpoints.actions``: daemon PUB; ``action.<robot>`` Action, ``chunk.<robot>``
  ActionChunk, ``lang.<robot>`` LanguageToken, ``event.<robot>`` Event;
* ``endpoints.control``: daemon ROUTER; ``cmd`` Command / ``reply`` Reply.

Two things differ from the C library, both additions:

* Messages received while the client waits for something else (chunks or
  events while :meth:`Client.recv_action` waits for an Action, actions while
  :meth:`Client.answers` waits for language) are kept, in arrival order, up to
  ``backlog`` of them, and :meth:`Client.recv` returns them first (the C
  library drops them). When the backlog is full the oldest message is dropped
  and counted in :attr:`Client.dropped_messages`.
* :meth:`Client.step_lockstep` is the lockstep handshake as a single call, with the
  rules of the C library's ``vlad_client_lockstep`` (``robot_io/client.h``), which
  vlad-sim and the C tests use: the project has one lockstep protocol.
"""

from __future__ import annotations

import collections
import math
import os
import socket as _socket
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import zmq

from . import vlad_pb2 as pb
from .profile import Profile, ProfileError, valid_z85_key

__all__ = [
    "Answer", "Client", "KeyFileError", "NoReply", "Refused", "VladError",
    "chunk_values", "load_client_key", "targets", "RESEND_MS",
]

# vlad_client_lockstep (robot_io/client.h): while a lockstep robot waits for the answer to
# its observation it resends the observation every this long (the first one may meet a
# ZeroMQ slow joiner; the daemon answers a resend of the same robot tick with the same Action).
RESEND_MS = 100
TOPIC_MAX = 96                 # VLAD_TOPIC_MAX: the separator is within the first 96 bytes
SUB_MAX_MSG = 16 << 20         # the C client's ZMQ_MAXMSGSIZE on its SUB
DEALER_MAX_MSG = 1 << 20       # ... and on its DEALER
ROBOT_TICK_MAX = 1 << 53       # observations with a tick at or above it are absurd
DETAIL_MAX = 1024              # TaskEvent.detail, bytes
KINDS = ("action", "chunk", "lang", "event")
_TYPES = {"action": pb.Action, "chunk": pb.ActionChunk, "lang": pb.LanguageToken,
          "event": pb.Event}
# Subscriptions are sent in this order, actions last: the daemon applies a peer's
# subscriptions in the order they arrive, so an Action received proves that the language
# subscription before it is live (see Client.ask).
_SUB_ORDER = ("lang", "chunk", "event", "action")


class VladError(Exception):
    """Base class of the errors this package raises."""


class NoReply(VladError, TimeoutError):
    """The daemon did not answer within the timeout (is it running with this profile?)."""


class Refused(VladError):
    """The daemon answered ``ok = false``; :attr:`reason` says why, :attr:`reply` is the
    whole Reply (with the daemon's Status)."""

    def __init__(self, reason: str, reply: Any = None):
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


class KeyFileError(VladError):
    """A CURVE key file that cannot be used (missing, readable by others, malformed)."""


# ---- numpy helpers ---------------------------------------------------------------------

def targets(action: pb.Action) -> np.ndarray:
    """An Action's joint targets as a float64 vector (profile joint order)."""
    return np.fromiter(action.joint_targets, dtype=np.float64, count=len(action.joint_targets))


def chunk_values(chunk: pb.ActionChunk) -> np.ndarray:
    """An ActionChunk's values as a ``(horizon, dim)`` float32 array; row i is the target
    for tick ``chunk.start_tick + i``."""
    v = np.fromiter(chunk.values, dtype=np.float32, count=len(chunk.values))
    return v.reshape(chunk.horizon, chunk.dim)


# ---- CURVE keys ------------------------------------------------------------------------

def load_client_key(path: str | os.PathLike) -> tuple[str, str]:
    """Read a ZeroMQ secret certificate (``vladctl keygen NAME`` writes
    ``NAME.key_secret``) and return ``(public_key, secret_key)`` in Z85.

    The rules are those of ``robot_io/keys.c``: the file is a regular file, not a
    symbolic link, readable and writable by its owner only (mode 0600 or stricter); its
    ``curve`` section holds ``public-key`` and ``secret-key``, and the public key belongs
    to the secret key. Raises :class:`KeyFileError` saying what is wrong.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as e:
        raise KeyFileError(f"key file {path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise KeyFileError(f"key file {path}: not a regular file")
        if st.st_mode & 0o077:
            raise KeyFileError(
                f"key file {path}: a secret key readable or writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}) is refused: chmod 600 {path}")
        raw = f.read(1 << 16)
    section, pub, sec = "", "", ""
    for line in raw.decode("utf-8", "replace").splitlines()[:1000]:
        if not line or line.startswith("#"):
            continue
        if line[0] not in " \t":      # a section name is not indented
            section = line.strip()
            continue
        key, eq, value = line.strip().partition("=")
        if not eq:
            continue
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if section == "curve" and key == "public-key":
            pub = value
        elif section == "curve" and key == "secret-key":
            sec = value
    if not valid_z85_key(pub):
        raise KeyFileError(f"key file {path}: no valid curve public-key")
    if not valid_z85_key(sec):
        raise KeyFileError(f"key file {path}: no valid curve secret-key")
    try:
        derived = zmq.curve_public(sec.encode()).decode()
    except zmq.ZMQError as e:  # libzmq without CURVE
        raise KeyFileError(f"key file {path}: {e}") from None
    if derived != pub:
        raise KeyFileError(f"key file {path}: the public-key does not belong to the secret-key")
    return pub, sec


# ---- language --------------------------------------------------------------------------

@dataclass
class Answer:
    """A language stream put together from its LanguageToken pieces."""

    stream_id: int
    question: str = ""
    pieces: list = field(default_factory=list)   # the LanguageToken messages, in order
    done: bool = False
    error: str = ""          # why the stream ended early ("" if it did not)

    @property
    def data(self) -> bytes:
        """The answer's bytes (UTF-8 may be split across pieces; this joins them)."""
        return b"".join(p.text for p in self.pieces)

    @property
    def text(self) -> str:
        """The answer as text (invalid UTF-8 replaced)."""
        return self.data.decode("utf-8", "replace")

    @property
    def frame(self) -> int:
        """The frame (prefill) the stream is conditioned on (0 before the first piece)."""
        return self.pieces[0].frame if self.pieces else 0

    @property
    def obs_robot_tick(self) -> int:
        """Robot tick of that frame's observation (-1: none or no piece yet)."""
        return self.pieces[0].obs_robot_tick if self.pieces else -1

    def add(self, token: pb.LanguageToken) -> bool:
        """Append one piece of this stream; True once the stream is done.

        Raises ValueError for a piece of another stream, a piece after the last one or
        a piece out of order (the daemon sends index 0, 1, ... on one socket)."""
        if token.stream_id != self.stream_id:
            raise ValueError(f"piece of stream {token.stream_id} added to stream "
                             f"{self.stream_id}")
        if self.done:
            raise ValueError(f"stream {self.stream_id}: piece {token.index} after the last one")
        if token.index != len(self.pieces):
            raise ValueError(f"stream {self.stream_id}: piece {token.index} where piece "
                             f"{len(self.pieces)} was due")
        if token.index == 0:
            self.question = token.question
        self.pieces.append(token)
        self.done = token.done
        if token.done:
            self.error = token.error
        return self.done


# ---- the client ------------------------------------------------------------------------

def _now_ns() -> int:
    return time.monotonic_ns()  # CLOCK_MONOTONIC on Linux, as the daemon's stamps


def _left_ms(deadline: int | None) -> int | None:
    """Milliseconds to `deadline` (rounded up, >= 0), or None for no deadline."""
    if deadline is None:
        return None
    left = deadline - _now_ns()
    return 0 if left <= 0 else (left + 999_999) // 1_000_000


def _deadline(timeout_ms: float | None) -> int | None:
    if timeout_ms is None or timeout_ms < 0:
        return None
    return _now_ns() + int(timeout_ms * 1_000_000)


def _connect_address(endpoint: str) -> tuple[str, bool]:
    """The address to hand to zmq connect and whether ZMQ_IPV6 is needed, as
    ``common/endpoint.c`` decides: names resolve to their first address, IPv4 first."""
    if not endpoint.startswith("tcp://"):
        return endpoint, False
    host, _, port = endpoint[6:].rpartition(":")
    if host.startswith("["):
        return endpoint, True
    if host == "*":
        return endpoint, False
    try:
        infos = _socket.getaddrinfo(host, None, type=_socket.SOCK_STREAM)
    except OSError as e:
        raise ProfileError(f"endpoint '{endpoint}': host '{host}' does not resolve ({e})") \
            from None
    v4 = [i for i in infos if i[0] == _socket.AF_INET]
    pick = (v4 or infos)[0]
    if pick[0] == _socket.AF_INET:
        return f"tcp://{pick[4][0]}:{port}", False
    return f"tcp://[{pick[4][0]}]:{port}", True


class Client:
    """A connection to a vlad daemon, described by the same profile as the daemon.

    ``Client("configs/sim-arm.yaml", publish=True)`` reads the profile (YAML, needs
    python3-yaml); without a file give ``robot=``, ``joints=`` (names or
    :class:`vlad.Joint`), ``cameras=`` (``(name, width, height)`` or
    :class:`vlad.Camera`) and ``endpoints=`` (``{"observations": ..., "actions": ...,
    "control": ...}``), or a ready :class:`vlad.Profile` as ``profile=``. Arguments given
    explicitly override the file; ``overrides`` are dotted ``--set`` keys applied to it.

    Sockets, chosen here once:

    * ``subscribe``: any of ``"action"``, ``"chunk"``, ``"lang"``, ``"event"`` (SUB on
      ``endpoints.actions``);
    * ``control``: a DEALER on ``endpoints.control`` for commands;
    * ``publish``: a PUB on ``endpoints.observations`` for observations (a robot
      controller).

    ``latest=True`` makes :meth:`recv_action` drain the queue and return only the newest
    Action. With CURVE on (the profile has ``security.curve_server_public_key``) the
    client's secret key comes from `key_file`, else ``$VLAD_CLIENT_KEY``, else
    ``security.client_key_file``.

    Use it as a context manager (or call :meth:`close`). One Client per thread.
    """

    def __init__(self, profile_path: str | os.PathLike | None = None, *,
                 profile: Profile | None = None,
                 overrides: Mapping[str, Any] | None = None,
                 robot: str | None = None,
                 joints: Sequence[Any] | None = None,
                 cameras: Sequence[Any] | None = None,
                 endpoints: Mapping[str, str] | None = None,
                 control_hz: float | None = None,
                 clock: str | None = None,
                 lockstep_timeout_ms: float | None = None,
                 server_public_key: str | None = None,
                 subscribe: Iterable[str] = ("action", "chunk", "lang", "event"),
                 control: bool = True,
                 publish: bool = False,
                 latest: bool = False,
                 key_file: str | os.PathLike | None = None,
                 command_timeout_ms: int = 2000,
                 backlog: int = 256):
        self.profile = self._make_profile(profile_path, profile, overrides, robot, joints,
                                          cameras, endpoints, control_hz, clock,
                                          lockstep_timeout_ms, server_public_key)
        p = self.profile
        subs = (subscribe,) if isinstance(subscribe, str) else tuple(subscribe)
        for k in subs:
            if k not in KINDS:
                raise ValueError(f"subscribe: unknown kind {k!r} (one of {', '.join(KINDS)})")
        self.subscriptions = frozenset(subs)
        self.latest = bool(latest)
        self.command_timeout_ms = int(command_timeout_ms)
        self.bad_messages = 0        # frames dropped as invalid (counted, never raised)
        self.dropped_messages = 0    # backlog overflow (oldest dropped)
        self.last_bad = ""           # why the newest bad frame was dropped
        self._seq = 0
        self._next_request = 1
        self._backlog: collections.deque = collections.deque()
        self._backlog_max = max(0, int(backlog))
        self._lang_live = False
        self._probe: bytes | None = None            # a temporary subscription (ask)
        self._topics = {k: p.topic(k).encode() for k in KINDS}
        self._kind_of = {v: k for k, v in self._topics.items()}
        self._obs_topic = p.topic("obs").encode()
        self._ctx = zmq.Context()
        self._sub = self._dealer = self._pub = None
        try:
            curve = self._curve_keys(key_file)
            if subs:
                self._sub = self._open(zmq.SUB, p.endpoints.actions, SUB_MAX_MSG, curve)
                for k in _SUB_ORDER:
                    if k in self.subscriptions:
                        self._sub.setsockopt(zmq.SUBSCRIBE, self._filter(k))
                self._sub.connect(self._addr(p.endpoints.actions, self._sub))
            if control:
                self._dealer = self._open(zmq.DEALER, p.endpoints.control, DEALER_MAX_MSG,
                                          curve)
                # a command goes only over a completed connection: one sent while the daemon
                # is down must not reach a daemon started later (the C client does the same)
                self._dealer.setsockopt(zmq.IMMEDIATE, 1)
                self._dealer.connect(self._addr(p.endpoints.control, self._dealer))
            if publish:
                self._pub = self._open(zmq.PUB, p.endpoints.observations, -1, curve)
                # only to a connected daemon: a restarted one must not get (and anchor on)
                # the states queued while it was down (the C client does the same)
                self._pub.setsockopt(zmq.IMMEDIATE, 1)
                self._pub.connect(self._addr(p.endpoints.observations, self._pub))
        except BaseException:
            self.close()
            raise

    # ---- set-up ------------------------------------------------------------------------

    @staticmethod
    def _make_profile(path, profile, overrides, robot, joints, cameras, endpoints,
                      control_hz, clock, lockstep_timeout_ms, server_public_key) -> Profile:
        explicit: dict[str, Any] = {}
        if robot is not None:
            explicit["robot"] = robot
        if joints is not None:
            explicit["joints"] = tuple(joints)
        if cameras is not None:
            explicit["cameras"] = tuple(cameras)
        if control_hz is not None:
            explicit["control_hz"] = float(control_hz)
        if clock is not None:
            explicit["clock"] = clock
        if lockstep_timeout_ms is not None:
            explicit["lockstep_timeout_ms"] = float(lockstep_timeout_ms)
        if server_public_key is not None:
            explicit["curve_server_public_key"] = server_public_key
        if profile is not None and path is not None:
            raise ValueError("give profile_path or profile=, not both")
        if profile is None and path is not None:
            profile = Profile.load(path, overrides)
        elif profile is not None and overrides:
            raise ValueError("overrides apply to a profile file; use profile.replace() or "
                             "the keyword arguments")
        if profile is None:
            keys: dict[str, Any] = {k: v for k, v in explicit.items()
                                    if k not in ("curve_server_public_key",)}
            if server_public_key is not None:
                keys["security.curve_server_public_key"] = server_public_key
            for k, v in (endpoints or {}).items():
                keys[f"endpoints.{k}"] = v
            if "robot" not in keys or "joints" not in keys:
                raise ValueError("Client: give a profile file, profile=, or at least robot= "
                                 "and joints=")
            return Profile.from_keys(keys, overrides=overrides)
        if endpoints:
            ep = {**vars(profile.endpoints), **endpoints}
            explicit["endpoints"] = ep
        return profile.replace(**explicit) if explicit else profile

    def _curve_keys(self, key_file) -> tuple[str, str, str] | None:
        p = self.profile
        if not p.curve:
            return None
        path = key_file if key_file is not None else os.environ.get("VLAD_CLIENT_KEY")
        if not path:
            path = p.client_key_file
        if not path:
            raise KeyFileError("security: CURVE is on: give this client its secret key "
                               "(key_file=, $VLAD_CLIENT_KEY or security.client_key_file)")
        pub, sec = load_client_key(path)
        return p.curve_server_public_key, pub, sec

    def _open(self, kind: int, endpoint: str, max_msg: int, curve) -> zmq.Socket:
        s = self._ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        if max_msg > 0:
            s.setsockopt(zmq.MAXMSGSIZE, max_msg)
        if curve:
            server, pub, sec = curve
            s.setsockopt(zmq.CURVE_SERVERKEY, server.encode())
            s.setsockopt(zmq.CURVE_PUBLICKEY, pub.encode())
            s.setsockopt(zmq.CURVE_SECRETKEY, sec.encode())
        return s

    @staticmethod
    def _addr(endpoint: str, sock: zmq.Socket) -> str:
        addr, ipv6 = _connect_address(endpoint)
        if ipv6:
            sock.setsockopt(zmq.IPV6, 1)
        return addr

    def _filter(self, kind: str) -> bytes:
        return self._topics[kind] + b" "

    def close(self) -> None:
        """Close every socket (pending messages are dropped: linger 0). Idempotent."""
        for s in (self._sub, self._dealer, self._pub):
            if s is not None:
                s.close(linger=0)
        self._sub = self._dealer = self._pub = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def sub_socket(self) -> zmq.Socket | None:
        """The subscription socket, for callers that poll several sockets (or None)."""
        return self._sub

    # ---- observations --------------------------------------------------------------------

    def make_observation(self, tick: int, joint_pos, joint_vel=None,
                         images: Mapping[str, Any] | None = None,
                         events: Iterable[Any] | None = None,
                         stamp_ns: int | None = None) -> pb.Observation:
        """Build (and check) an Observation without sending it; see
        :meth:`publish_observation`. ``seq`` is left 0 (filled in when sent)."""
        p = self.profile
        if isinstance(tick, bool) or not isinstance(tick, (int, np.integer)):
            raise ValueError(f"tick: expected an integer, got {tick!r}")
        tick = int(tick)
        if not 0 <= tick < ROBOT_TICK_MAX:
            raise ValueError(f"tick: {tick} is not in [0, 2^53)")
        o = pb.Observation(robot=p.robot, tick=tick)
        o.stamp_ns = _now_ns() if stamp_ns is None else int(stamp_ns)
        if o.stamp_ns < 0:
            raise ValueError(f"stamp_ns: {o.stamp_ns} is negative")
        o.joint_pos.extend(self._vector("joint_pos", joint_pos))
        if joint_vel is not None:
            o.joint_vel.extend(self._vector("joint_vel", joint_vel))
        for name, img in self._images(images or {}):
            cam = p.camera(name)
            o.images.add(name=name, width=cam.width, height=cam.height,
                         encoding=pb.IMAGE_ENCODING_RGB8, data=img, tick=tick)
        for i, ev in enumerate(events or ()):
            o.events.append(self._event(i, ev, tick))
        return o

    def publish_observation(self, tick: int, joint_pos, joint_vel=None,
                            images: Mapping[str, Any] | None = None,
                            events: Iterable[Any] | None = None,
                            stamp_ns: int | None = None) -> pb.Observation:
        """Publish the robot's state for its own tick `tick` (``obs.<robot>``).

        * `joint_pos`: one position per profile joint, in profile order (finite);
        * `joint_vel`: None, or one velocity per joint;
        * `images`: ``{camera name: uint8 array of shape (height, width, 3)}`` (RGB,
          rows top to bottom), for any of the profile's cameras;
        * `events`: TaskEvent messages, or ``(kind, detail)`` / ``(kind, detail,
          episode)`` tuples with kind a name (``"EPISODE_START"``) or number;
        * `stamp_ns`: CLOCK_MONOTONIC time of the measurement (default: now).

        The robot name and ``seq`` (+1 per message) are filled in. Raises ValueError
        naming what does not match the profile. Returns the Observation sent.
        """
        if self._pub is None:
            raise VladError("client: not created with publish=True")
        o = self.make_observation(tick, joint_pos, joint_vel, images, events, stamp_ns)
        self._send_observation(o)
        return o

    def _send_observation(self, o: pb.Observation) -> None:
        self._seq += 1
        o.seq = self._seq
        self._send(self._pub, self._obs_topic, o)

    def _vector(self, what: str, values) -> list[float]:
        n = self.profile.n_joints
        try:
            a = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{what}: expected {n} numbers, got {values!r}") from None
        if a.ndim != 1 or a.shape[0] != n:
            raise ValueError(f"{what}: {a.shape[0] if a.ndim == 1 else a.shape} values, the "
                             f"profile has {n} joints ({', '.join(self.profile.joint_names)})")
        bad = np.flatnonzero(~np.isfinite(a))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{what}[{i}] ({self.profile.joints[i].name}): not a finite "
                             f"number ({a[i]})")
        return a.tolist()

    def _images(self, images: Mapping[str, Any]) -> list[tuple[str, bytes]]:
        p = self.profile
        if not isinstance(images, Mapping):
            raise ValueError("images: expected a dict {camera name: uint8 HxWx3 array}")
        out = []
        for name in images:
            if p.camera(name) is None:
                known = ", ".join(c.name for c in p.cameras) or "none"
                raise ValueError(f"images: unknown camera {name!r} (the profile's cameras: "
                                 f"{known})")
        for cam in p.cameras:  # profile order: the same bytes for the same images
            if cam.name not in images:
                continue
            img = np.asarray(images[cam.name])
            want = (cam.height, cam.width, 3)
            if img.dtype != np.uint8:
                raise ValueError(f"images[{cam.name!r}]: dtype {img.dtype}, expected uint8 "
                                 "(RGB8)")
            if img.shape != want:
                raise ValueError(f"images[{cam.name!r}]: shape {img.shape}, the profile says "
                                 f"{cam.width}x{cam.height}: expected (height, width, 3) = "
                                 f"{want}")
            out.append((cam.name, np.ascontiguousarray(img).tobytes()))
        return out

    @staticmethod
    def _event(i: int, ev: Any, tick: int) -> pb.TaskEvent:
        if isinstance(ev, pb.TaskEvent):
            te = pb.TaskEvent()
            te.CopyFrom(ev)
        else:
            if isinstance(ev, (str, int)):
                ev = (ev,)
            if not isinstance(ev, (tuple, list)) or not 1 <= len(ev) <= 3:
                raise ValueError(f"events[{i}]: expected a TaskEvent or (kind, detail[, "
                                 f"episode]), got {ev!r}")
            kind = ev[0]
            if isinstance(kind, str):
                try:
                    kind = pb.TaskEvent.Kind.Value(kind)
                except ValueError:
                    raise ValueError(f"events[{i}]: unknown kind {ev[0]!r} (EPISODE_START, "
                                     "WORLD_CHANGE, SUCCESS, EPISODE_END)") from None
            te = pb.TaskEvent(kind=int(kind), tick=tick)
            if len(ev) > 1:
                te.detail = str(ev[1])
            if len(ev) > 2:
                te.episode = int(ev[2])
        if not pb.TaskEvent.EPISODE_START <= te.kind <= pb.TaskEvent.EPISODE_END:
            raise ValueError(f"events[{i}]: unknown kind {te.kind}")
        if len(te.detail.encode()) > DETAIL_MAX:
            raise ValueError(f"events[{i}].detail: {len(te.detail.encode())} bytes, at most "
                             f"{DETAIL_MAX}")
        return te

    # ---- receiving -----------------------------------------------------------------------

    def recv(self, timeout_ms: float | None):
        """The next subscribed message within `timeout_ms` (None or < 0: wait forever;
        0: poll): an ``Action``, ``ActionChunk``, ``LanguageToken`` or ``Event`` message
        (``vlad.Action``...), or None if none came. Bad frames are counted
        (:attr:`bad_messages`) and skipped; this never raises for what arrives."""
        if self._sub is None:
            raise VladError("client: no subscriptions")
        if self._backlog:
            return self._backlog.popleft()
        return self._recv_wire(_deadline(timeout_ms))

    def recv_action(self, timeout_ms: float | None) -> pb.Action | None:
        """The next Action within `timeout_ms`, or None. Messages of other kinds are kept
        for :meth:`recv`. With ``latest=True`` every Action already queued is drained and
        only the newest is returned."""
        if self._sub is None:
            raise VladError("client: no subscriptions")
        got = self._take_backlog_action()
        if got is not None and not self.latest:
            return got
        deadline = _deadline(timeout_ms)
        while True:
            # once an Action is held in latest mode, only drain what is already queued
            m = self._recv_wire(_now_ns() if got is not None else deadline)
            if m is None:
                return got
            if isinstance(m, pb.Action):
                got = m
                if not self.latest:
                    return got
            else:
                self._keep(m)

    def _take_backlog_action(self) -> pb.Action | None:
        if not self._backlog:
            return None
        got, rest = None, collections.deque()
        for m in self._backlog:
            if isinstance(m, pb.Action) and (got is None or self.latest):
                got = m          # latest: a newer one replaces it
            else:
                rest.append(m)
        self._backlog = rest
        return got

    def _keep(self, m) -> None:
        if self._backlog_max == 0:
            self.dropped_messages += 1
            return
        if len(self._backlog) >= self._backlog_max:
            self._backlog.popleft()
            self.dropped_messages += 1
        self._backlog.append(m)

    def _recv_wire(self, deadline: int | None):
        """Read the SUB socket until a good message or the deadline (None: forever)."""
        while True:
            try:
                frames = self._sub.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                wait = _left_ms(deadline)
                if wait == 0:
                    return None
                self._sub.poll(wait if wait is not None else None, zmq.POLLIN)
                continue
            m = self._decode(frames)
            if m is not None:
                return m

    def _bad(self, why: str) -> None:
        self.bad_messages += 1
        self.last_bad = why

    def _decode(self, frames: list[bytes]):
        if len(frames) != 1:
            self._bad(f"a message of {len(frames)} frames (the wire has one frame per message)")
            return None
        data = frames[0]
        sp = data.find(b" ", 0, TOPIC_MAX)
        if sp < 0:
            self._bad(f"frame of {len(data)} bytes has no topic separator")
            return None
        if sp == 0:
            self._bad("frame has an empty topic")
            return None
        topic = data[:sp]
        kind = self._kind_of.get(topic)
        if kind is None:
            self._bad(f"unexpected topic {topic[:64]!r}")
            return None
        if kind not in self.subscriptions:
            return None  # still in flight after a temporary subscription ended: not ours
        msg = _TYPES[kind]()
        try:
            msg.ParseFromString(data[sp + 1:])
        except Exception:  # google.protobuf.message.DecodeError (and RuntimeWarning kin)
            self._bad(f"{topic.decode(errors='replace')}: malformed protobuf "
                      f"({len(data) - sp - 1} bytes)")
            return None
        why = self._check(kind, msg)
        if why:
            self._bad(f"{topic.decode(errors='replace')}: {why}")
            return None
        if kind == "action":
            # the action subscription is sent after the language one (_SUB_ORDER), and the
            # daemon applies a peer's subscriptions in order: language is live too
            self._lang_live = True
        return msg

    def _check(self, kind: str, m) -> str:
        """What is wrong with a received message ('' if nothing), as robot_io/validate.c."""
        p = self.profile
        if kind in ("action", "chunk") and m.robot != p.robot:
            return f"robot: '{m.robot[:64]}' is not this profile's '{p.robot}'"
        if kind == "action":
            n = len(m.joint_targets)
            if n != p.n_joints:
                return f"joint_targets: {n} values, the profile has {p.n_joints} joints"
            for i, (v, j) in enumerate(zip(m.joint_targets, p.joints)):
                if not math.isfinite(v):
                    return f"joint_targets[{i}]: not a finite number"
                if not j.min <= v <= j.max:
                    return (f"joint_targets[{i}] ({j.name}): {v:g} outside "
                            f"[{j.min:g}, {j.max:g}]")
        elif kind == "chunk":
            if m.dim != p.n_joints:
                return f"dim: {m.dim}, the profile has {p.n_joints} joints"
            if not 1 <= m.horizon <= 4096:
                return f"horizon: {m.horizon} not in [1, 4096]"
            if len(m.values) != m.horizon * m.dim:
                return f"values: {len(m.values)}, horizon*dim is {m.horizon * m.dim}"
            if not np.isfinite(np.fromiter(m.values, np.float32, len(m.values))).all():
                return "values: not all finite numbers"
        return ""

    # ---- lockstep ------------------------------------------------------------------------

    def step_lockstep(self, tick: int, joint_pos, joint_vel=None,
                      images: Mapping[str, Any] | None = None,
                      events: Iterable[Any] | None = None,
                      timeout_ms: float | None = None,
                      stamp_ns: int | None = None) -> pb.Action | None:
        """One lockstep tick (daemon ``clock: lockstep``): the rules of the C library's
        ``vlad_client_lockstep``, which vlad-sim uses.

        Publishes the observation for robot tick `tick` and waits for the Action that
        answers it, the one whose ``robot_tick == tick``:

        * an Action for any other robot tick is not the answer (a late answer to an
          earlier observation, or one from another run of this robot): dropped;
        * every :data:`RESEND_MS` (100 ms) without the answer, the same observation is
          sent again (same tick, same data, next ``seq``): the first observation may meet
          a ZeroMQ slow joiner, and the daemon answers a resend of the tick it has already
          stepped with the same Action, without a new tick;
        * other subscribed messages that arrive meanwhile are kept for :meth:`recv`.

        Returns the Action, or None if none came within `timeout_ms` (default: the
        profile's ``lockstep_timeout_ms``): hold the last target, as vlad-sim does.
        Publish every tick's observation and wait for its answer, the last one of an
        episode too, before a :meth:`reset`; otherwise the reset races the daemon's last
        tick. Needs ``publish=True`` and ``"action"`` in ``subscribe``.
        """
        if self._pub is None or "action" not in self.subscriptions:
            raise VladError("step_lockstep needs publish=True and 'action' in subscribe")
        o = self.make_observation(tick, joint_pos, joint_vel, images, events, stamp_ns)
        return self._await_lockstep(o, timeout_ms)

    def _await_lockstep(self, o: pb.Observation, timeout_ms: float | None):
        t = o.tick
        if timeout_ms is None:
            timeout_ms = self.profile.lockstep_timeout_ms
        now = _now_ns()
        deadline = now + int(timeout_ms * 1_000_000)
        resend = now                                # the first publish
        while True:
            now = _now_ns()
            if now >= resend:
                self._send_observation(o)           # a resend: the same tick and data
                resend = now + RESEND_MS * 1_000_000
            if now >= deadline:
                return None
            a = self.recv_action(max(1, (min(resend, deadline) - now + 999_999) // 1_000_000))
            if a is not None and a.robot_tick == t:
                return a

    # ---- commands ------------------------------------------------------------------------

    def command(self, cmd: pb.Command, timeout_ms: float | None = None) -> pb.Reply:
        """Send a Command (``request_id`` assigned if 0) and return its Reply, whether ok
        or not. Replies to earlier requests are discarded; bad frames are counted.
        Raises :class:`NoReply` if none came within `timeout_ms` (default
        ``command_timeout_ms``)."""
        if self._dealer is None:
            raise VladError("client: not created with control=True")
        if not cmd.request_id:
            cmd.request_id = self._next_request
            self._next_request += 1
        if timeout_ms is None:
            timeout_ms = self.command_timeout_ms
        deadline = _now_ns() + int(timeout_ms * 1_000_000)
        # writable once a connection is complete: wait for it within the timeout, never
        # queue the command for a daemon that is not there
        while not self._dealer.poll(_left_ms(deadline) or 0, zmq.POLLOUT):
            if _left_ms(deadline) == 0:
                raise NoReply(f"no reply from {self.profile.endpoints.control} within "
                              f"{timeout_ms:g} ms (no connection: the command was not sent; "
                              "is vlad running with this profile?)")
        self._send(self._dealer, b"cmd", cmd)
        while True:
            left = _left_ms(deadline)
            if left == 0:
                raise NoReply(f"no reply from {self.profile.endpoints.control} within "
                              f"{timeout_ms:g} ms (is vlad running with this profile?)")
            if not self._dealer.poll(left, zmq.POLLIN):
                continue
            try:
                frames = self._dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            data = frames[0] if len(frames) == 1 else b""
            r = None
            if data.startswith(b"reply "):
                r = pb.Reply()
                try:
                    r.ParseFromString(data[6:])
                except Exception:
                    r = None
            if r is None:
                self._bad("control: not a 'reply' frame with a Reply")
                continue
            if r.request_id != cmd.request_id:
                continue  # a late reply to an earlier request
            return r

    def _ok(self, cmd: pb.Command, timeout_ms: float | None) -> pb.Reply:
        r = self.command(cmd, timeout_ms)
        if not r.ok:
            raise Refused(r.error, r)
        return r

    def status(self, timeout_ms: float | None = None) -> pb.Status:
        """The daemon's Status (mode, tick, counters, jitter, language, ...)."""
        return self._ok(pb.Command(status=pb.StatusRequest()), timeout_ms).status

    def estop(self, reason: str = "", timeout_ms: float | None = None) -> pb.Reply:
        """Latch the e-stop: the daemon holds the last commanded target until
        :meth:`release`. Never refused by the daemon for its reason."""
        return self._ok(pb.Command(estop=pb.EStop(reason=reason)), timeout_ms)

    def release(self, timeout_ms: float | None = None) -> pb.Reply:
        """Release every e-stop the daemon received before this request."""
        return self._ok(pb.Command(release_estop=pb.ReleaseEStop()), timeout_ms)

    def reset(self, from_robot_tick: int = 0, timeout_ms: float | None = None) -> pb.Reply:
        """Clear the action queue and the episode counters; the daemon holds until an
        observation with robot tick >= `from_robot_tick` (0: any) received after it."""
        return self._ok(pb.Command(reset=pb.Reset(from_robot_tick=int(from_robot_tick))),
                        timeout_ms)

    def set_instruction(self, text: str, timeout_ms: float | None = None) -> pb.Reply:
        """Set the task instruction (the policy's prompt). Raises :class:`Refused` (with
        the reason) for text the daemon refuses (too long, not UTF-8)."""
        return self._ok(pb.Command(set_instruction=pb.SetInstruction(text=text)), timeout_ms)

    # ---- language ------------------------------------------------------------------------

    def ask(self, question: str = "", timeout_ms: float | None = None,
            probe_ms: float = 1000) -> int:
        """Ask a question (empty: the running commentary); returns the stream id whose
        LanguageToken pieces will carry the answer on ``lang.<robot>``.

        Raises :class:`Refused` with the daemon's reason (no free stream, a question
        longer than the model reads, no model, language off, e-stop with
        ``lang.during_estop`` false) or :class:`NoReply`.

        With ``"lang"`` subscribed, the first ask first makes sure that subscription is
        live, or the first pieces could be published before the daemon knows of it (as
        ``vladctl ask`` does): it waits up to `probe_ms` for one Action. An Action
        proves the subscriptions sent before it are applied; without ``"action"`` in
        ``subscribe`` it subscribes to actions for the probe and unsubscribes after.
        Actions arrive only while a robot publishes observations; without one the ask
        proceeds after `probe_ms` (and probes again next time).
        """
        if "lang" in self.subscriptions and not self._lang_live:
            self._await_subscription(probe_ms)
        r = self.command(pb.Command(ask=pb.Ask(question=question)), timeout_ms)
        if not r.ok:
            raise Refused(r.error, r)
        return r.stream_id

    def _await_subscription(self, probe_ms: float) -> None:
        probing = "action" not in self.subscriptions
        if probing:
            self._probe = self._filter("action")
            self._sub.setsockopt(zmq.SUBSCRIBE, self._probe)
            self.subscriptions = self.subscriptions | {"action"}
        try:
            deadline = _deadline(probe_ms)
            while True:
                m = self._recv_wire(deadline)
                if m is None:
                    return
                if isinstance(m, pb.Action):
                    self._lang_live = True
                    if not probing:
                        self._keep(m)
                    return
                self._keep(m)
        finally:
            if probing:
                self._sub.setsockopt(zmq.UNSUBSCRIBE, self._probe)  # the same filter
                self._probe = None
                self.subscriptions = self.subscriptions - {"action"}
                self._backlog = collections.deque(
                    m for m in self._backlog if not isinstance(m, pb.Action))

    def answers(self, stream_id: int, timeout_ms: float = 5000) -> Iterator[pb.LanguageToken]:
        """Yield the LanguageToken pieces of stream `stream_id` in order, up to and
        including the one with ``done``. Raises :class:`NoReply` if no piece of it comes
        for `timeout_ms`. Other messages meanwhile are kept for :meth:`recv`. Pieces come
        only while the daemon encodes frames, i.e. while a robot publishes observations
        (another process, or this client's own loop between calls)."""
        if "lang" not in self.subscriptions:
            raise VladError("answers needs 'lang' in subscribe")
        # pieces that arrived earlier (kept in the backlog) come first
        mine = [m for m in self._backlog
                if isinstance(m, pb.LanguageToken) and m.stream_id == stream_id]
        if mine:
            self._backlog = collections.deque(
                m for m in self._backlog
                if not (isinstance(m, pb.LanguageToken) and m.stream_id == stream_id))
        for t in mine:
            yield t
            if t.done:
                return
        while True:
            m = self._recv_wire(_deadline(timeout_ms))
            if m is None:
                raise NoReply(f"stream {stream_id}: no piece for {timeout_ms:g} ms")
            if isinstance(m, pb.LanguageToken) and m.stream_id == stream_id:
                yield m
                if m.done:
                    return
            else:
                self._keep(m)

    def ask_and_wait(self, question: str = "", timeout_ms: float = 5000) -> Answer:
        """:meth:`ask`, then collect the whole answer (:meth:`answers`) into an
        :class:`Answer`. `timeout_ms` bounds the reply and each wait for a piece. For an
        operator or a second process while something else drives the robot."""
        sid = self.ask(question, timeout_ms=timeout_ms)
        ans = Answer(stream_id=sid, question=question)
        for tok in self.answers(sid, timeout_ms):
            ans.add(tok)
        return ans

    # ---- low level -----------------------------------------------------------------------

    def _send(self, sock: zmq.Socket, topic: bytes, msg) -> None:
        try:
            sock.send(topic + b" " + msg.SerializeToString(), zmq.NOBLOCK)
        except zmq.Again:
            pass  # as the C client: a full queue drops the message (a PUB never blocks)
