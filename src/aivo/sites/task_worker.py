"""A site's long-lived ClientApp worker: the SuperNode runs with `--isolation process`.

With Flower 1.42's default (`--isolation subprocess`) the SuperNode starts a SuperExec that
launches one `flwr-clientapp` *process per message*; each imports Flower and the site's code
(PyTorch, SQLAlchemy, pandas) and opens the site's registry again: 2.5 to 6.5 s of CPU per
message and site, a dozen messages per round. With `--isolation process` the SuperNode only
queues tasks on its loopback Runtime API and waits for an executor it did not start: this one.
It imports everything once, keeps the site's registry and training stack loaded, and runs each
task through the same calls `flwr-clientapp` makes (`pull_task_input`, the ClientApp with its
mods, `push_message`, `push_task_output`), so what crosses the wire, SecAgg+'s per-run state
(kept by the SuperNode in the run's context) and the SuperLink side are unchanged.

The worker runs the site's own installed ClientApp, not code from the run's FAB: a site decides
what code touches its learners' data. It serves only runs of `fab_id` (the AIVO federation app);
a task of any other app gets an error reply. Tasks run one after another (a site answers one
message per stage).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import httpx
from flwr.app import Context, Message
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode, SubStatus
from flwr.common.serde import context_from_proto, run_from_proto
from flwr.proto.node_pb2 import Node  # pylint: disable=E0611
from flwr.proto.runtime_pb2 import (  # pylint: disable=E0611
    AcquireTaskRequest,
    PullAppMessagesRequest,
    PullTaskInputRequest,
    SendTaskHeartbeatRequest,
)
from flwr.supercore.constant import TaskType
from flwr.supercore.heartbeat import HeartbeatSender
from flwr.supercore.inflatable.inflatable_protobuf_utils import (
    make_confirm_message_received_fn_protobuf,
    make_pull_object_fn_protobuf,
)
from flwr.supercore.inflatable.inflatable_utils import pull_and_inflate_object_from_tree
from flwr.supercore.interceptors import RuntimeTokenHttpInterceptor, RuntimeVersionHttpInterceptor
from flwr.supercore.run import Run
from flwr.supercore.runtime import RuntimeHttpClient
from flwr.supercore.task_identity import TaskIdentity
from flwr.supernode.runtime.run_clientapp import push_message, push_task_output

log = logging.getLogger(__name__)

# Seconds between two "any task for me?" requests to the SuperNode on loopback. The SuperNode
# itself asks the SuperLink every 3 s when idle (Flower 1.42, fixed), so a shorter wait here gains
# little and costs CPU on a small host.
POLL_INTERVAL = 0.2


# The SuperNode offers a task as soon as the message arrives, while it is still downloading the
# message's objects (the parameters) from the SuperLink. Flower's object pull retries a missing
# object after 1, 2, 4, 8, 10 s: right for a process that took seconds to start, but a warm worker
# asks at once and would sleep through most of a stage. It retries after 0.05 s, doubling up to 0.5.
OBJECT_RETRY, OBJECT_RETRY_CAP = 0.05, 0.5


class ForeignApp(Exception):
    """A task of a run whose app is not the one this site serves."""


@dataclass(frozen=True)
class RuntimeApi:
    """Where the SuperNode's Runtime API listens (loopback; plain HTTP as Flower's own
    subprocess mode uses it, or TLS with the CA certificate that signed it)."""

    address: str
    root_certificates: bytes | None = None

    def client(self, *interceptors) -> RuntimeHttpClient:
        return RuntimeHttpClient.from_server_address(server_address=self.address,
                                                     insecure=self.root_certificates is None,
                                                     root_certificates=self.root_certificates,
                                                     interceptors=list(interceptors))


def pull_task_input(client: RuntimeHttpClient) -> tuple[Message, Context, Run]:
    """`flwr-clientapp`'s pull of its task (the message, the run's context and run), with the
    short retry above and without the FAB (the worker runs the site's installed app)."""
    response = client.PullTaskInput(PullTaskInputRequest())
    TaskIdentity.task_id = response.task_id  # replies take their ids from it
    TaskIdentity.run_id = response.run.run_id
    TaskIdentity.node_id = response.context.node_id
    context, run = context_from_proto(response.context), run_from_proto(response.run)
    pulled = client.PullMessages(PullAppMessagesRequest())
    if not pulled.messages_list:
        raise RuntimeError("the SuperNode offered a task without a message")
    node = Node(node_id=context.node_id)
    tree = pulled.message_object_trees[0]
    message = pull_and_inflate_object_from_tree(
        tree, make_pull_object_fn_protobuf(client.PullObject, node, context.run_id),
        make_confirm_message_received_fn_protobuf(client.ConfirmMessageReceived, node, context.run_id),
        return_type=Message, initial_backoff=OBJECT_RETRY, backoff_cap=OBJECT_RETRY_CAP)
    message.metadata.__dict__["_message_id"] = tree.object_id  # as flwr-clientapp sets it
    return message, context, run


def _heartbeat(client: RuntimeHttpClient):
    """Flower's task heartbeat, except that a task the SuperNode no longer knows (its run was
    stopped) ends the heartbeat, not this process."""
    request = SendTaskHeartbeatRequest()

    def beat() -> bool:
        try:
            client.SendTaskHeartbeat(request)  # success False: cancelled; pushing the reply then fails (logged)
        except (httpx.TransportError, httpx.HTTPStatusError):
            return False
        return True

    return beat


class TaskWorker:
    """Runs the SuperNode's ClientApp tasks in this process with `app` (see the module doc)."""

    def __init__(self, *, runtime: RuntimeApi, app: ClientApp, fab_id: str, poll_interval: float = POLL_INTERVAL):
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be > 0, got {poll_interval}")
        self.runtime = runtime
        self.app = app
        self.fab_id = fab_id
        self.poll_interval = poll_interval
        self.tasks_done = 0

    def serve(self, stop: threading.Event | None = None) -> None:
        """Take and run tasks until `stop` is set (or forever). Waits for the SuperNode while its
        Runtime API is not up yet (it starts after this worker) or restarts."""
        stop = stop or threading.Event()
        client = self.runtime.client(RuntimeVersionHttpInterceptor(component_name="SuperExec"))
        request = AcquireTaskRequest(supported_task_types=[TaskType.CLIENT_APP])
        connected = False
        try:
            while not stop.is_set():
                try:
                    response = client.AcquireTask(request)
                except (httpx.TransportError, httpx.HTTPStatusError) as exc:
                    if connected:
                        log.warning("the SuperNode's Runtime API at %s is unreachable: %s", self.runtime.address, exc)
                    connected = False
                    stop.wait(1.0)
                    continue
                if not connected:
                    log.info("taking ClientApp tasks from the SuperNode at %s", self.runtime.address)
                    connected = True
                if response.HasField("task") and response.token:
                    self.run_task(response.token)
                    continue  # the next stage's message may already be waiting
                stop.wait(self.poll_interval)
        finally:
            client.close()

    def run_task(self, token: str) -> None:
        """One task, as `flwr-clientapp` runs it: pull the message and the run's context, call the
        ClientApp, push the reply, then the task's status and the updated context (SecAgg+ keeps
        its state between stages there)."""
        started, cpu = time.perf_counter(), time.process_time()
        client = self.runtime.client(RuntimeVersionHttpInterceptor(component_name="flwr-clientapp"),
                                     RuntimeTokenHttpInterceptor(token))
        heartbeat = HeartbeatSender(_heartbeat(client))
        heartbeat.start()
        message = context = reply = None
        sub_status, details = SubStatus.FAILED, "ClientApp task failed due to unknown reason"
        pulled = ran = started
        try:
            message, context, run = pull_task_input(client)
            pulled = time.perf_counter()
            if run.fab_id != self.fab_id:
                raise ForeignApp(f"this site runs only the {self.fab_id} app, not {run.fab_id or 'an unnamed app'}")
            reply = self.app(message=message, context=context)
            ran = time.perf_counter()
            sub_status, details = SubStatus.COMPLETED, ""
        except Exception as exc:  # noqa: BLE001 - reported to the coordinator as the reply's error, as Flower does
            # Flower's reason format, "<class 'X'>:<'text'>", which the coordinator parses.
            details = f"{type(exc)}:<'{exc}'>"
            log.warning("ClientApp task failed: %s", details, exc_info=not isinstance(exc, ForeignApp))
            if message is not None:
                reply = Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=details), reply_to=message)
        finally:
            try:
                if reply is not None and context is not None:
                    push_message(client, reply, context)
            except Exception:  # noqa: BLE001 - the task's status below still tells the SuperNode
                log.exception("could not push the reply to the SuperNode")
                sub_status, details = SubStatus.FAILED, "could not push the reply"
            finally:
                heartbeat.stop()
                push_task_output(client=client, context=context, sub_status=sub_status, details=details)
                client.close()
        self.tasks_done += 1
        done = time.perf_counter()
        log.info("task %s %s in %.2f s (pull %.2f, app %.2f, push %.2f; cpu %.2f s)",
                 message.metadata.message_type if message else "?", sub_status, done - started, pulled - started,
                 max(0.0, ran - pulled), done - max(ran, pulled), time.process_time() - cpu)
