"""The part of a vlad robot profile (YAML) that a controller client needs.

The daemon's own loader is ``common/profile.c``; every key is documented in
``configs/README.md``. A client needs only what names the wire and checks the
messages on it:

* ``robot`` (topics ``obs.<robot>``, ``action.<robot>``, ...; checked in every
  message),
* ``joints`` (names, limits: the length of ``joint_pos`` and of every target),
* ``cameras`` (name, width, height: the images an observation may carry),
* ``endpoints.observations``, ``endpoints.actions``, ``endpoints.control``,
* ``control_hz``, ``clock`` and ``lockstep_timeout_ms`` (how to step),
* ``security.curve_server_public_key`` and ``security.client_key_file``
  (CURVE).

Every other key belongs to the daemon and is read but ignored here, so one
profile file serves the daemon and all of its clients. The three keys that the
daemon refuses because they would put a secret into a file every client reads
are refused here too.

Reading a YAML file needs PyYAML (Debian: ``python3-yaml``). Without it,
build a :class:`Profile` in code (``Profile(robot=..., joints=[...], ...)``) or
pass the same values to :class:`vlad.Client`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Any, Mapping

__all__ = ["Camera", "Endpoints", "Joint", "Profile", "ProfileError"]

MAX_JOINTS = 32   # VLAD_MAX_JOINTS (common/profile.h)
MAX_CAMERAS = 8   # VLAD_MAX_CAMERAS
NAME_MAX = 63     # VLAD_NAME_MAX - 1 bytes
KEY_LEN = 40      # a CURVE key in Z85
_Z85 = ("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        ".-:+=^!/*?&<>()[]{}@%$#")
_ROBOT_RE = re.compile(r"^[A-Za-z0-9_-]+$")

# Keys of the C loader's table whose values are paths: a relative path is resolved
# against the profile's folder (only security.client_key_file is used here).
_PATH_KEYS = {"security.client_key_file"}
# A secret key in a profile is readable by every client: refused (as by the daemon).
_REFUSED = {
    "security.curve_server_secret_key":
        "a secret key does not belong in a profile (every client reads it); keep it in "
        "a key file (vladctl keygen) named by security.server_key_file",
    "security.curve_client_secret_key":
        "a secret key does not belong in a profile (every client reads it); keep it in "
        "a key file named by security.client_key_file or $VLAD_CLIENT_KEY",
    "security.curve_client_public_key":
        "clients are listed, each with its own key and rights, in "
        "security.client_keys_dir",
}


class ProfileError(ValueError):
    """A profile that cannot be read or is not valid; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Joint:
    """One joint of the robot, in profile order."""

    name: str
    min: float = -math.inf
    max: float = math.inf
    max_velocity: float = math.inf
    home: float = 0.0


@dataclasses.dataclass(frozen=True)
class Camera:
    """One camera: the images an Observation may carry (RGB8, height x width x 3)."""

    name: str
    width: int
    height: int
    rate_hz: float = 10.0


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """The daemon's three sockets (it binds, clients connect)."""

    observations: str = "tcp://127.0.0.1:5550"  # daemon SUB, the robot publishes obs.<robot>
    actions: str = "tcp://127.0.0.1:5551"       # daemon PUB: action., chunk., lang., event.
    control: str = "tcp://127.0.0.1:5552"       # daemon ROUTER: Command / Reply


def _check_endpoint(key: str, text: str) -> None:
    if not isinstance(text, str) or not text:
        raise ProfileError(f"{key}: empty endpoint")
    if ";" in text:
        raise ProfileError(f"{key}: endpoint '{text}': the 'source;destination' form is "
                           "refused (one address per endpoint)")
    for prefix in ("ipc://", "inproc://"):
        if text.startswith(prefix):
            if len(text) == len(prefix):
                raise ProfileError(f"{key}: endpoint '{text}': no path")
            return
    if not text.startswith("tcp://"):
        raise ProfileError(f"{key}: endpoint '{text}': not tcp://, ipc:// or inproc://")
    host, sep, port = text[6:].rpartition(":")
    if not sep or not host:
        raise ProfileError(f"{key}: endpoint '{text}': expected tcp://HOST:PORT")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ProfileError(f"{key}: endpoint '{text}': port '{port}' is not in 1..65535")
    if host.startswith("[") != host.endswith("]"):
        raise ProfileError(f"{key}: endpoint '{text}': unterminated [IPv6] host")
    if not host.startswith("[") and ":" in host:
        raise ProfileError(f"{key}: endpoint '{text}': an IPv6 host goes in brackets ([::1])")


def valid_z85_key(key: str) -> bool:
    """True if `key` is a 40-character Z85 CURVE key."""
    return isinstance(key, str) and len(key) == KEY_LEN and all(c in _Z85 for c in key)


def _number(key: str, value: Any, lo: float, hi: float, integer: bool = False) -> float:
    if isinstance(value, bool):
        raise ProfileError(f"{key}: expected a number, got {value!r}")
    try:
        v = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        kind = "an integer" if integer else "a finite number"
        raise ProfileError(f"{key}: expected {kind}, got {value!r}") from None
    if integer and isinstance(v, float):
        if not v.is_integer():
            raise ProfileError(f"{key}: expected an integer, got {value!r}")
        v = int(v)
    if not math.isfinite(v):
        raise ProfileError(f"{key}: expected a finite number, got {value!r}")
    if not lo <= v <= hi:
        raise ProfileError(f"{key}: value {v:g} out of range [{lo:g}, {hi:g}]")
    return v


def _string(key: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise ProfileError(f"{key}: expected a scalar value, got a "
                           f"{'mapping' if isinstance(value, dict) else 'sequence'}")
    return str(value)


def _joint(i: int, item: Any) -> Joint:
    if isinstance(item, Joint):
        return item
    if isinstance(item, str):
        return Joint(name=item)
    if not isinstance(item, Mapping):
        raise ProfileError(f"joints: entry {i}: expected a mapping (or a name), got {item!r}")
    known = {"name", "min", "max", "max_velocity", "home"}
    for k in item:
        if k not in known:
            raise ProfileError(f"joints[{i}].{k}: unknown key")
    if "name" not in item:
        raise ProfileError(f"joints[{i}].name: missing required key")
    args = {"name": _string(f"joints[{i}].name", item["name"])}
    for k in ("min", "max", "max_velocity", "home"):
        if k in item:
            lo = 1e-6 if k == "max_velocity" else -1e6
            args[k] = _number(f"joints[{i}].{k}", item[k], lo, 1e6)
    return Joint(**args)


def _camera(i: int, item: Any) -> Camera:
    if isinstance(item, Camera):
        return item
    if isinstance(item, (tuple, list)) and len(item) == 3:
        item = {"name": item[0], "width": item[1], "height": item[2]}
    if not isinstance(item, Mapping):
        raise ProfileError(f"cameras: entry {i}: expected a mapping or (name, width, height), "
                           f"got {item!r}")
    known = {"name", "width", "height", "rate_hz"}
    for k in item:
        if k not in known:
            raise ProfileError(f"cameras[{i}].{k}: unknown key")
    for k in ("name", "width", "height"):
        if k not in item:
            raise ProfileError(f"cameras[{i}].{k}: missing required key")
    args = {
        "name": _string(f"cameras[{i}].name", item["name"]),
        "width": int(_number(f"cameras[{i}].width", item["width"], 1, 4096, True)),
        "height": int(_number(f"cameras[{i}].height", item["height"], 1, 4096, True)),
    }
    if "rate_hz" in item:
        args["rate_hz"] = _number(f"cameras[{i}].rate_hz", item["rate_hz"], 0.1, 1000)
    return Camera(**args)


def _flatten(m: Mapping, prefix: str, out: dict, where: str) -> None:
    """Nested sections to dotted keys: {security: {a: 1}} -> {"security.a": 1}."""
    for k, v in m.items():
        if not isinstance(k, str):
            raise ProfileError(f"{where}: {prefix or '(top)'}: keys must be plain strings")
        full = prefix + k
        if full in ("joints", "cameras"):
            out[full] = v
        elif isinstance(v, Mapping):
            _flatten(v, full + ".", out, where)
        else:
            if full in out:
                raise ProfileError(f"{where}: {full}: duplicate key (given twice, dotted and "
                                   "nested)")
            out[full] = v


@dataclasses.dataclass(frozen=True)
class Profile:
    """What a client knows of the robot and the daemon (see the module docstring).

    Build one with :meth:`Profile.load` from the daemon's YAML profile, or directly.
    """

    robot: str
    joints: tuple[Joint, ...]
    cameras: tuple[Camera, ...] = ()
    endpoints: Endpoints = Endpoints()
    control_hz: float = 50.0
    clock: str = "wall"                 # "wall" or "lockstep"
    lockstep_timeout_ms: float = 2000.0
    curve_server_public_key: str = ""   # set: CURVE on every socket
    client_key_file: str = ""           # this client's secret certificate (resolved path)
    path: str | None = None             # the file it was read from, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "joints",
                           tuple(_joint(i, j) for i, j in enumerate(self.joints)))
        object.__setattr__(self, "cameras",
                           tuple(_camera(i, c) for i, c in enumerate(self.cameras)))
        if isinstance(self.endpoints, Mapping):
            extra = set(self.endpoints) - {"observations", "actions", "control"}
            if extra:
                raise ProfileError(f"endpoints.{sorted(extra)[0]}: unknown key")
            object.__setattr__(self, "endpoints", Endpoints(**self.endpoints))
        self.validate()

    # ---- reading -------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: Mapping[str, Any] | None = None
             ) -> "Profile":
        """Read the YAML profile at `path`.

        `overrides` maps dotted keys to values, like the daemon's ``--set KEY=VALUE``
        (values may be the same strings): ``{"endpoints.actions": "ipc:///tmp/a",
        "clock": "lockstep"}``. Keys this client does not use are accepted and
        ignored, so the same list can be handed to the daemon.

        Raises :class:`ProfileError` naming the file and the key.
        """
        try:
            import yaml  # Debian: python3-yaml
        except ImportError:
            raise ProfileError(
                f"{path}: reading a YAML profile needs PyYAML (Debian: apt-get install "
                "python3-yaml); or give robot=, joints=, cameras=, endpoints= to "
                "vlad.Client / vlad.Profile directly") from None
        path = os.fspath(path)
        try:
            with open(path, "rb") as f:
                text = f.read(1 << 20 | 1)
        except OSError as e:
            raise ProfileError(f"{path}: {e.strerror}") from None
        if len(text) > 1 << 20:
            raise ProfileError(f"{path}: larger than 1 MiB")
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ProfileError(f"{path}: YAML syntax error: {e}") from None
        if doc is None:
            raise ProfileError(f"{path}: empty profile")
        if not isinstance(doc, Mapping):
            raise ProfileError(f"{path}: (top): expected a mapping")
        flat: dict[str, Any] = {}
        _flatten(doc, "", flat, path)
        return cls.from_keys(flat, base_dir=os.path.dirname(os.path.abspath(path)),
                             overrides=overrides, path=path)

    @classmethod
    def from_keys(cls, keys: Mapping[str, Any], *, base_dir: str = "",
                  overrides: Mapping[str, Any] | None = None, path: str | None = None
                  ) -> "Profile":
        """Build a profile from dotted keys (``{"robot": "arm", "joints": [...],
        "endpoints.actions": "..."}``); relative paths resolve against `base_dir`."""
        keys = dict(keys)
        for k, v in (overrides or {}).items():
            if k in ("joints", "cameras") or k.startswith(("joints[", "cameras[")):
                raise ProfileError(f"--set {k}: unknown key (joints and cameras cannot be set)")
            keys[k] = v
        where = f"{path}: " if path else ""
        try:
            for k, why in _REFUSED.items():
                if keys.get(k):
                    raise ProfileError(f"{k}: {why}")
            if "robot" not in keys:
                raise ProfileError("robot: missing required key")
            joints = keys.get("joints")
            if joints is None:
                raise ProfileError("joints: at least one joint is required")
            if not isinstance(joints, (list, tuple)):
                raise ProfileError("joints: expected a list")
            cameras = keys.get("cameras") or []
            if not isinstance(cameras, (list, tuple)):
                raise ProfileError("cameras: expected a list")
            d = Endpoints()
            endpoints = Endpoints(
                observations=_string("endpoints.observations",
                                     keys.get("endpoints.observations", d.observations)),
                actions=_string("endpoints.actions", keys.get("endpoints.actions", d.actions)),
                control=_string("endpoints.control", keys.get("endpoints.control", d.control)))
            key_file = _string("security.client_key_file",
                               keys.get("security.client_key_file", ""))
            if key_file and not os.path.isabs(key_file) and base_dir and key_file != "none":
                key_file = os.path.join(base_dir, key_file)
            return cls(
                robot=_string("robot", keys["robot"]),
                joints=tuple(joints),
                cameras=tuple(cameras),
                endpoints=endpoints,
                control_hz=_number("control_hz", keys.get("control_hz", 50), 1, 1000),
                clock=_string("clock", keys.get("clock", "wall")),
                lockstep_timeout_ms=_number("lockstep_timeout_ms",
                                            keys.get("lockstep_timeout_ms", 2000), 1, 600000),
                curve_server_public_key=_string(
                    "security.curve_server_public_key",
                    keys.get("security.curve_server_public_key", "")),
                client_key_file=key_file,
                path=path)
        except ProfileError as e:
            if where and not str(e).startswith(where):
                raise ProfileError(where + str(e)) from None
            raise

    def replace(self, **changes: Any) -> "Profile":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    # ---- checks ---------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ProfileError` if the profile is not one the daemon accepts
        (the client-side part of ``vlad_profile_validate``)."""
        if not self.robot:
            raise ProfileError("robot: must not be empty")
        if len(self.robot.encode()) > NAME_MAX or not _ROBOT_RE.match(self.robot):
            raise ProfileError(f"robot: '{self.robot}' may only hold letters, digits, '-' and "
                               f"'_' (at most {NAME_MAX})")
        if not 1 <= len(self.joints) <= MAX_JOINTS:
            raise ProfileError(f"joints: need 1..{MAX_JOINTS} joints, got {len(self.joints)}")
        seen: dict[str, int] = {}
        for i, j in enumerate(self.joints):
            if not j.name:
                raise ProfileError(f"joints[{i}].name: must not be empty")
            if not j.min < j.max:
                raise ProfileError(f"joints[{i}] ({j.name}): min {j.min:g} must be below max "
                                   f"{j.max:g}")
            if j.name in seen:
                raise ProfileError(f"joints[{i}]: name '{j.name}' already used by "
                                   f"joints[{seen[j.name]}]")
            seen[j.name] = i
        if len(self.cameras) > MAX_CAMERAS:
            raise ProfileError(f"cameras: too many entries (at most {MAX_CAMERAS})")
        seen = {}
        for i, c in enumerate(self.cameras):
            if not c.name:
                raise ProfileError(f"cameras[{i}].name: must not be empty")
            if c.name in seen:
                raise ProfileError(f"cameras[{i}]: name '{c.name}' already used by "
                                   f"cameras[{seen[c.name]}]")
            seen[c.name] = i
        eps = dataclasses.asdict(self.endpoints)
        for name, text in eps.items():
            _check_endpoint(f"endpoints.{name}", text)
        if len(set(eps.values())) != 3:
            raise ProfileError("endpoints: the three endpoints must differ")
        if not 1 <= self.control_hz <= 1000:
            raise ProfileError(f"control_hz: value {self.control_hz:g} out of range [1, 1000]")
        if self.clock not in ("wall", "lockstep"):
            raise ProfileError(f"clock: '{self.clock}' is not one of wall|lockstep")
        if self.curve_server_public_key and not valid_z85_key(self.curve_server_public_key):
            raise ProfileError("security.curve_server_public_key: not a valid Z85 key "
                               f"({KEY_LEN} characters)")

    # ---- conveniences -----------------------------------------------------------------

    @property
    def n_joints(self) -> int:
        """Number of joints (the length of every joint vector on the wire)."""
        return len(self.joints)

    @property
    def joint_names(self) -> tuple[str, ...]:
        """Joint names in profile order."""
        return tuple(j.name for j in self.joints)

    @property
    def home(self) -> tuple[float, ...]:
        """Home positions in profile order."""
        return tuple(j.home for j in self.joints)

    def camera(self, name: str) -> Camera | None:
        """The camera called `name`, or None."""
        for c in self.cameras:
            if c.name == name:
                return c
        return None

    @property
    def curve(self) -> bool:
        """True when the daemon runs CURVE (the profile names its public key)."""
        return bool(self.curve_server_public_key)

    def topic(self, kind: str) -> str:
        """``"<kind>.<robot>"``, e.g. ``topic("action") == "action.sim-arm"``."""
        return f"{kind}.{self.robot}"

