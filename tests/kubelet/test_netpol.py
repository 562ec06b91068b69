"""The NetworkPolicy reading of netpol.py against the rules of the API reference."""

from __future__ import annotations

from .netpol import Source, admits, selects

POD = {"app": "web"}


def policy(ingress, selector=None, namespace="ns", types=("Ingress",)):
    return {
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {
            "podSelector": selector if selector is not None else {},
            "policyTypes": list(types),
            "ingress": ingress,
        },
    }


SAME_NS = Source("10.1.0.2", "ns", {"team": "a"}, {"role": "client"})
OTHER_NS = Source("10.1.0.3", "other", {"team": "b"}, {"role": "client"})


def test_selectors():
    assert selects({}, {"a": "1"})
    assert selects({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"})
    assert not selects({"matchLabels": {"a": "1"}}, {"a": "2"})
    assert selects(
        {"matchExpressions": [{"key": "a", "operator": "In", "values": ["1"]}]}, {"a": "1"}
    )
    assert selects({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {})
    assert not selects(
        {"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {"a": "1"}
    )


def test_unselected_pods_admit_everything_and_selected_ones_only_their_rules():
    assert admits([policy([], selector={"matchLabels": {"app": "db"}})], "ns", POD, OTHER_NS, 80)
    assert not admits([policy([])], "ns", POD, SAME_NS, 80)  # deny all
    assert admits([policy([{}])], "ns", POD, OTHER_NS, 80)  # allow all
    assert admits([policy([], types=("Egress",))], "ns", POD, OTHER_NS, 80)


def test_ports_and_peers():
    only_443 = policy([{"ports": [{"port": 443, "protocol": "TCP"}]}])
    assert admits([only_443], "ns", POD, OTHER_NS, 443)
    assert not admits([only_443], "ns", POD, OTHER_NS, 80)
    assert not admits([only_443], "ns", POD, OTHER_NS, 443, "UDP")
    same_ns = policy([{"from": [{"podSelector": {}}]}])
    assert admits([same_ns], "ns", POD, SAME_NS, 80)
    assert not admits([same_ns], "ns", POD, OTHER_NS, 80)
    team_b = policy(
        [
            {
                "from": [
                    {
                        "namespaceSelector": {"matchLabels": {"team": "b"}},
                        "podSelector": {"matchLabels": {"role": "client"}},
                    }
                ]
            }
        ]
    )
    assert admits([team_b], "ns", POD, OTHER_NS, 80)
    assert not admits([team_b], "ns", POD, SAME_NS, 80)


def test_ip_blocks_and_the_own_node():
    block = policy(
        [{"from": [{"ipBlock": {"cidr": "172.16.0.0/24", "except": ["172.16.0.128/25"]}}]}]
    )
    assert admits([block], "ns", POD, Source("172.16.0.5"), 80)
    assert not admits([block], "ns", POD, Source("172.16.0.200"), 80)
    assert not admits([block], "ns", POD, Source("10.0.0.1"), 80)
    assert admits([policy([])], "ns", POD, Source("10.0.0.1", own_node=True), 80)
