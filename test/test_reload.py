"""~/reload_model on a running perception_node: output goes on during it, and SIGINT or SIGTERM
during it ends the node cleanly.

Output: the new networks are built (export, compile, parity check) before the pipeline lock is
taken, and swapped in under it at once; building them under the lock stopped output for 1.8-2.2 s
with the default backend. Signals: before, 10 of 16 such signals within 0.6 s of the call aborted the process (SIGABRT, "terminate
called without an active exception"): the interpreter finalised while the loader's daemon thread
was inside torch. Each trial is a node process of its own, signalled at a different moment of
the reload; every one must exit 0 and log its frame counts without errors.
"""
import os
import signal
import subprocess
import sys
import time

import pytest
from std_srvs.srv import Trigger

from sa4depth_ros.frame_client import FrameClient
from test_perception_node import REPO, TIMEOUT, running_node

# moments after the call: before, inside and after the load of the untrained 64x128 model
DELAYS = ((signal.SIGINT, 0.05), (signal.SIGTERM, 0.15), (signal.SIGINT, 0.3), (signal.SIGTERM, 0.45))


def start_node(tmp_path, k: int) -> tuple[subprocess.Popen, object]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    log = tmp_path / f"node{k}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sa4depth_ros.perception_node", "--ros-args",
                                 "-p", "input_width:=128", "-p", "input_height:=64", "-p", "backend:=torch",
                                 "-p", "precision:=fp32", "-p", "threads:=1"],
                                env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return proc, log


@pytest.mark.parametrize("signum, delay", DELAYS, ids=[f"{s.name}-{d}s" for s, d in DELAYS])
def test_a_signal_during_a_reload_ends_the_node_cleanly(ros_domain, tmp_path, signum, delay):
    client = FrameClient(ros_domain, topics=(), tf=False, diagnostics=False)
    proc, log = start_node(tmp_path, 0)
    try:
        reload = client.node.create_client(Trigger, "/perception_node/reload_model")
        assert reload.wait_for_service(timeout_sec=60), log.read_text()
        reload.call_async(Trigger.Request())
        time.sleep(delay)  # the moment of the signal, not a wait for an outcome
        proc.send_signal(signum)
        status = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        client.close()
    output = log.read_text(errors="replace")
    assert status == 0, f"exit {status}:\n{output[-3000:]}"
    assert "frame counts at shutdown:" in output and "terminate called" not in output, output[-3000:]
    assert "[ERROR]" not in output and "Failed to publish log message to rosout" not in output, output[-3000:]


def test_a_reload_during_a_10_hz_stream_loses_at_most_one_frame(ros_domain, synth_root, tmp_path):
    """OpenVINO builds its networks from an ONNX export and a compile: the slow swap of before."""
    with running_node(ros_domain, synth_root, tmp_path, ["input_width:=128", "input_height:=64"],
                      backend="openvino") as node:
        c = node.client
        reload = c.node.create_client(Trigger, "/perception_node/reload_model")
        assert reload.wait_for_service(timeout_sec=TIMEOUT)
        stamps, answer, answered = [], None, None
        started = time.monotonic()
        # a frame every 0.1 s from 1 s before the call until 1 s after its answer
        while answered is None or time.monotonic() < answered + 1.0:
            node.t += 0.1
            stamps.append(c.send(node.images[len(stamps) % len(node.images)], node.K, node.t))
            if answer is None and time.monotonic() - started >= 1.0:
                answer = reload.call_async(Trigger.Request())
            elif answer is not None and answered is None and answer.done():
                answered = time.monotonic()
            assert time.monotonic() - started < 120, "the reload did not answer within 2 minutes"
            time.sleep(0.1)  # a 10 Hz camera's pace
        assert answer.result().success, answer.result().message
        assert c.with_stamp("depth/image", stamps[-1], TIMEOUT) is not None, node.output()
        back = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in c.messages("depth/image")}
        lost = [s for s in stamps if (s.sec, s.nanosec) not in back]
        assert len(lost) <= 1, f"{len(lost)} of {len(stamps)} frames lost during the reload:\n{node.output()}"
