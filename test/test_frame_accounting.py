"""Frame accounting between a sender, the perception node and a client: every loss is named at the
stage where it happened, and counts the node does not report read 'n/a'."""
from sa4depth_ros.frame_accounting import account_frames, counts_since, frame_ranges, node_settled


def _node(received=10, unpaired=0, stale=0, rejected=0, failed=0, processed=None, published=None, arrived=None):
    processed = received - stale - rejected - failed if processed is None else processed
    values = {"frames_received": received, "frames_unpaired": unpaired, "frames_dropped_stale": stale,
              "frames_rejected": rejected, "frames_failed": failed, "frames_processed": processed,
              "frames_published": processed if published is None else published}
    if arrived is not None:  # a node that counts what arrived per stream
        values.update(images_arrived=arrived, camera_infos_arrived=arrived)
    return {k: str(v) for k, v in values.items()}  # diagnostics carry strings


def test_nothing_lost_means_no_findings_and_the_rows_in_stream_order():
    rows, findings = account_frames(10, _node(), {"depth": 10, "odom": 10})
    assert findings == []
    assert list(rows) == ["sent: images", "node: images arrived", "node: CameraInfos arrived",
                          "node: unpaired image/CameraInfo messages", "node: frames received (paired)",
                          "node: dropped stale (mailbox)", "node: rejected (bad input)", "node: failed",
                          "node: processed", "node: published", "client: depth received", "client: odom received"]
    assert rows["node: published"] == 10 and rows["client: odom received"] == 10


def test_each_loss_is_named_where_it_happened():
    _, findings = account_frames(12, _node(received=10), {"depth": 10})
    assert findings == ["2 of 12 frames lost between the sender and the node: they never reached the node's callbacks "
                        "(DDS/QoS: a best-effort subscription loses what arrives before it matched the sender, or "
                        "while its history is full, and frames larger than the sender's shared-memory segment)"]
    _, findings = account_frames(12, _node(received=10, unpaired=2), {"depth": 10})
    assert findings == ["2 of 12 frames lost between the sender and the node: the synchroniser discarded 2 unpaired "
                        "message(s)"]
    _, findings = account_frames(10, _node(stale=3, rejected=1, failed=1), {"depth": 5})
    assert findings == ["3 frames replaced in the node's mailbox before processing (the node was slower than the input)",
                        "1 frames rejected by the node as bad input", "1 frames failed in the node's pipeline"]
    _, findings = account_frames(10, _node(published=9), {"depth": 8})
    assert findings == ["1 processed frames were not published", "1 of 9 published depth messages did not reach the client"]
    _, findings = account_frames(10, _node(processed=8), {"depth": 8})
    assert findings == ["2 frames still in the node (mailbox or in progress) when counted"]


def test_images_lost_in_transport_are_told_from_images_that_did_not_pair():
    _, findings = account_frames(12, _node(received=8, unpaired=2, arrived=10), {"depth": 8})
    assert findings[0].startswith("2 of 12 images lost between the sender and the node: they never reached")
    assert findings[1] == ("2 of 10 images that arrived did not pair with a CameraInfo (the synchroniser discarded 2 "
                           "unpaired message(s))")
    assert account_frames(10, _node(arrived=10), {"depth": 10})[1] == []


def test_counts_a_node_does_not_report_read_na_and_do_not_block_waiting():
    rows, findings = account_frames(10, {"frames_received": "10"}, {"depth": 10})
    assert rows["node: processed"] == "n/a" and rows["node: frames received (paired)"] == 10 and findings == []
    assert node_settled({}) and node_settled(_node()) and not node_settled(_node(processed=9))


def test_counts_since_an_earlier_status():
    later = counts_since(_node(received=15, stale=2), _node(received=5))
    assert later["frames_received"] == 10 and later["frames_dropped_stale"] == 2 and later["frames_processed"] == 8
    assert counts_since(_node(), {})["frames_received"] == "n/a"


def test_frame_ranges():
    assert frame_ranges([]) == "none"
    assert frame_ranges([7, 0, 1, 2, 9, 10]) == "0-2, 7, 9-10"
