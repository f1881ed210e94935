"""vlad: a Python client for the vlad robot control daemon.

Speaks vlad's wire protocol (``proto/vlad.proto``: one ZeroMQ frame per message,
the topic, one space, the packed protobuf) with stock libraries: pyzmq, the
protobuf runtime and numpy. ``vlad_pb2`` is generated from ``proto/vlad.proto``
by ``protoc --python_out`` when the project is built; after ``make``::

    PYTHONPATH=build/python python3 -c 'import vlad'

A robot controller::

    import vlad
    with vlad.Client("configs/sim-arm.yaml", publish=True, latest=True) as c:
        c.publish_observation(tick, joint_pos, images={"front": rgb})
        a = c.recv_action(timeout_ms=20)
        if a is not None:
            command_robot(vlad.targets(a))

An operator::

    with vlad.Client("configs/sim-arm.yaml", subscribe=("lang",)) as c:
        print(c.status().mode)
        print(c.ask_and_wait("which colour is the target?").text)

See ``robot_io/python/README.md``.
"""

__version__ = "0.1.0"  # the project's version (CMakeLists.txt)

try:
    from . import vlad_pb2 as pb
except ImportError as e:  # pragma: no cover - a source tree that was not built
    raise ImportError(
        "vlad: vlad_pb2 is generated at build time from proto/vlad.proto (protoc "
        "--python_out); build the project (cmake --build build) and use "
        "PYTHONPATH=build/python, or install python3-protobuf if that is what is "
        f"missing ({e})") from e

from .recording import RecordError, read_recording
from .client import (RESEND_MS, Answer, Client, KeyFileError, NoReply, Refused, VladError,
                     chunk_values, load_client_key, targets)
from .profile import Camera, Endpoints, Joint, Profile, ProfileError

# The messages of proto/vlad.proto (package vlad).
Action = pb.Action
ActionChunk = pb.ActionChunk
LanguageToken = pb.LanguageToken
Event = pb.Event
Observation = pb.Observation
CameraImage = pb.CameraImage
TaskEvent = pb.TaskEvent
Command = pb.Command
Reply = pb.Reply
Status = pb.Status
RecordEntry = pb.RecordEntry      # one entry of a recording (vlad --record; read_recording)

# Action.source
POLICY = pb.ACTION_SOURCE_POLICY
HOLD = pb.ACTION_SOURCE_HOLD
ESTOP = pb.ACTION_SOURCE_ESTOP
WATCHDOG = pb.ACTION_SOURCE_WATCHDOG


def source_name(source: int) -> str:
    """``"POLICY"``, ``"HOLD"``, ``"ESTOP"``, ``"WATCHDOG"`` ... for an Action.source."""
    try:
        return pb.ActionSource.Name(source).removeprefix("ACTION_SOURCE_")
    except ValueError:
        return str(source)


def mode_name(mode: int) -> str:
    """``"WAITING"``, ``"RUNNING"``, ``"STALE"``, ``"ESTOP"`` for a Status.mode."""
    try:
        return pb.Mode.Name(mode).removeprefix("MODE_")
    except ValueError:
        return str(mode)


def event_name(kind: int) -> str:
    """``"STARTED"``, ``"ESTOP"``, ``"BAD_MESSAGE"`` ... for an Event.kind."""
    try:
        return pb.Event.Kind.Name(kind)
    except ValueError:
        return str(kind)


__all__ = [
    "Action", "ActionChunk", "Answer", "Camera", "CameraImage", "Client", "Command",
    "Endpoints", "ESTOP", "Event", "HOLD", "Joint", "KeyFileError", "LanguageToken",
    "NoReply", "Observation", "POLICY", "Profile", "ProfileError", "RESEND_MS", "RecordEntry",
    "RecordError", "Refused",
    "Reply", "Status", "TaskEvent", "VladError", "WATCHDOG", "chunk_values", "event_name",
    "load_client_key", "mode_name", "pb", "read_recording", "source_name", "targets",
    "__version__",
]
