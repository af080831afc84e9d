"""The model pool's tests run on a real Ray cluster on this machine (sao_live.testing.cluster)."""

from __future__ import annotations

import pytest

from ..needs import need


@pytest.fixture(scope="module")
def cluster():
    """A head (no CPUs) and two worker nodes of one CPU each: one cluster per test module."""
    need("the model pool tests (pip install -e '.[cluster]')", modules=["ray", "grpc"])
    from sao_live.testing.cluster import LocalCluster

    cluster = LocalCluster(nodes=2, cpus=1)
    yield cluster
    cluster.shutdown()
