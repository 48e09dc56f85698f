"""``/api/cluster/nodes``: the configured nodes, or in cluster mode the nodes that joined."""

from __future__ import annotations

import uuid

from service import free_port

NODES = "/api/cluster/nodes"


def test_the_configured_nodes_are_listed_as_ontap_lists_them(api, swdepot):
    listed = api.get(NODES).json()
    assert listed["num_records"] == 2
    first = listed["records"][0]
    assert set(first) == {"uuid", "name", "_links"}  # ONTAP's default fields
    assert [r["name"] for r in listed["records"]] == ["swdepot-01", "swdepot-02"]
    uuid.UUID(first["uuid"])
    assert first["_links"]["self"]["href"] == f"{NODES}/{first['uuid']}"
    node = api.get(f"{NODES}/{first['uuid']}").json()
    assert node["state"] == "up" and node["membership"] == "member"
    assert node["version"] == {"full": "NetApp Release 9.16.1: swdepot", "generation": 9,
                               "major": 16, "minor": 1}
    assert node["uptime"] >= 0
    # the same uuid on every start: derived from the cluster's uuid and the name
    assert api.get(NODES).json()["records"][0]["uuid"] == first["uuid"]
    assert api.get(f"{NODES}?name=swdepot-02&fields=state").json()["records"] == [
        {"uuid": listed["records"][1]["uuid"], "name": "swdepot-02", "state": "up",
         "_links": listed["records"][1]["_links"]}]
    assert api.get(f"{NODES}?return_records=false").json()["num_records"] == 2
    missing = api.get(f"{NODES}/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "entry doesn't exist"


def test_netapp_ontap_reads_the_nodes(ontap):
    from netapp_ontap.resources import Node

    nodes = list(Node.get_collection(fields="name,state,version"))
    assert [n.name for n in nodes] == ["swdepot-01", "swdepot-02"]
    assert all(n.state == "up" and n.version.generation == 9 for n in nodes)
    one = Node(uuid=nodes[1].uuid)
    one.get()
    assert one.name == "swdepot-02" and one.version.full.startswith("NetApp Release 9.16.1")


def test_in_cluster_mode_the_nodes_are_those_that_joined(settings, start_service, pg_url):
    first = start_service(settings, database=pg_url, job_lease_seconds=3.0)
    second = start_service(settings, database=pg_url, job_lease_seconds=3.0,
                           port=free_port(), node_name="swdepot-09")
    listed = first.api.get(f"{NODES}?fields=name,state").json()["records"]
    assert [(r["name"], r["state"]) for r in listed] == [("swdepot-01", "up"),
                                                         ("swdepot-09", "up")]
    assert listed == second.api.get(f"{NODES}?fields=name,state").json()["records"]
    software = first.api.get("/api/cluster/software?fields=nodes").json()
    assert [n["name"] for n in software["nodes"]] == ["swdepot-01", "swdepot-09"]
    joined_as = listed[1]["uuid"]
    second.stop()  # it leaves: listed, down
    after = {r["name"]: r for r in first.api.get(f"{NODES}?fields=state,uptime").json()[
        "records"]}
    assert after["swdepot-09"]["state"] == "down" and after["swdepot-09"]["uptime"] == 0
    assert after["swdepot-01"]["state"] == "up"
    again = start_service(settings, database=pg_url, job_lease_seconds=3.0,
                          port=free_port(), node_name="swdepot-09")
    back = again.api.get(f"{NODES}/{joined_as}?fields=state").json()
    assert back["state"] == "up"  # the same node, the same uuid
