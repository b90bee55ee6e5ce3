"""Where frames go between a sender (bag player, benchmark), the perception node and a client.

The node reports its side in /diagnostics (perception_node.frame_counts): `frames_received`
(image + CameraInfo pairs handed over by the synchroniser) = `frames_dropped_stale` (replaced in
the one-slot mailbox) + `frames_rejected` + `frames_failed` + `frames_processed` (+ the frame in
progress), `frames_published` <= `frames_processed`, and `frames_unpaired` (messages the
synchroniser discarded without a partner); `images_arrived` and `camera_infos_arrived` count what
reached it per stream. A count the node does not report reads 'n/a'. The node also logs them in
one line when it shuts down (`shutdown_counts` reads it back).
"""
from __future__ import annotations

NODE_STAGES = (
    ("images_arrived", "node: images arrived"),
    ("camera_infos_arrived", "node: CameraInfos arrived"),
    ("frames_unpaired", "node: unpaired image/CameraInfo messages"),
    ("frames_received", "node: frames received (paired)"),
    ("frames_dropped_stale", "node: dropped stale (mailbox)"),
    ("frames_rejected", "node: rejected (bad input)"),
    ("frames_failed", "node: failed"),
    ("frames_processed", "node: processed"),
    ("frames_published", "node: published"),
)
SETTLED_KEYS = ("frames_received", "frames_dropped_stale", "frames_rejected", "frames_failed", "frames_processed")


def count(values: dict, key: str) -> int | None:
    """values[key] as an int (diagnostics carry strings), None when absent or not a number."""
    try:
        return int(values[key])
    except (KeyError, TypeError, ValueError):
        return None


def counts_since(values: dict, before: dict) -> dict:
    """The node's frame counts in `values` minus those in an earlier `before` ('n/a' where either
    lacks one), for a run that starts on a node that has already seen frames."""
    out = {}
    for key, _ in NODE_STAGES:
        now, then = count(values, key), count(before, key)
        out[key] = "n/a" if now is None or then is None else now - then
    return out


def node_settled(values: dict) -> bool:
    """Whether every frame the node received has met its fate (none in the mailbox or in progress).
    True when the node does not report the counts, so that callers waiting on it go on."""
    counts = [count(values, key) for key in SETTLED_KEYS]
    if None in counts:
        return True
    received, *fates = counts
    return sum(fates) >= received


def frame_ranges(indices) -> str:
    """'0-4, 17, 30-31' for sorted frame indices; 'none' for none."""
    indices = sorted(indices)
    if not indices:
        return "none"
    runs, start = [], indices[0]
    for prev, cur in zip(indices, indices[1:] + [None]):
        if cur != prev + 1:
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = cur
    return ", ".join(runs)


def account_frames(sent: int, node: dict, client: dict[str, int], output: str = "depth") -> tuple[dict, list[str]]:
    """The frame counts along the way, and a sentence for each stage that lost frames.

    Args:
        sent: images the sender published.
        node: the node's diagnostics values (see the module docstring).
        client: messages the client received per output topic, e.g. {"depth": 148, "odom": 148}.
        output: the topic of `client` that the node's `frames_published` counts.
    Returns:
        ({stage: count or 'n/a'} in stream order, [findings]); no findings when nothing was lost.
    """
    n = {key: count(node, key) for key, _ in NODE_STAGES}
    rows = {"sent: images": sent}
    rows.update({label: "n/a" if n[key] is None else n[key] for key, label in NODE_STAGES})
    rows.update({f"client: {topic} received": value for topic, value in client.items()})
    findings = []
    received, arrived = n["frames_received"], n["images_arrived"]
    never = ("they never reached the node's callbacks (DDS/QoS: a best-effort subscription loses what arrives "
             "before it matched the sender, or while its history is full, and frames larger than the sender's "
             "shared-memory segment)")
    if arrived is not None and received is not None:  # the node tells transport losses from unpaired images
        if arrived < sent:
            findings.append(f"{sent - arrived} of {sent} images lost between the sender and the node: {never}")
        if received < arrived:
            findings.append(f"{arrived - received} of {arrived} images that arrived did not pair with a CameraInfo "
                            f"(the synchroniser discarded {n['frames_unpaired']} unpaired message(s))")
    elif received is not None and received < sent:
        where = (f"the synchroniser discarded {n['frames_unpaired']} unpaired message(s)" if n["frames_unpaired"]
                 else never)
        findings.append(f"{sent - received} of {sent} frames lost between the sender and the node: {where}")
    for key, what in (("frames_dropped_stale", "replaced in the node's mailbox before processing (the node was "
                                                "slower than the input)"),
                      ("frames_rejected", "rejected by the node as bad input"),
                      ("frames_failed", "failed in the node's pipeline")):
        if n[key]:
            findings.append(f"{n[key]} frames {what}")
    if received is not None and not node_settled(node):
        fates = sum(n[key] for key in SETTLED_KEYS[1:])
        findings.append(f"{received - fates} frames still in the node (mailbox or in progress) when counted")
    if n["frames_processed"] is not None and n["frames_published"] is not None \
            and n["frames_published"] < n["frames_processed"]:
        findings.append(f"{n['frames_processed'] - n['frames_published']} processed frames were not published")
    if n["frames_published"] is not None and output in client and client[output] < n["frames_published"]:
        findings.append(f"{n['frames_published'] - client[output]} of {n['frames_published']} published {output} "
                        "messages did not reach the client")
    return rows, findings


def shutdown_counts(output: str) -> dict:
    """The node's 'frame counts at shutdown:' line in a log as {name: int or str}; {} without one."""
    line = next((line for line in output.splitlines() if "frame counts at shutdown:" in line), None)
    if line is None:
        return {}
    pairs = (item.split("=", 1) for item in line.split("frame counts at shutdown:", 1)[1].split() if "=" in item)
    return {key: int(value) if value.isdigit() else value for key, value in pairs}
