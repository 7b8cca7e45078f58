"""The peak of a rollout (`graphops.controller.capacity`): what `graphops diff` warns about."""

from __future__ import annotations

from graphops.controller.capacity import GIB, Amount, node_totals, peak, reserved


def test_a_version_swap_costs_nothing_after_and_the_new_version_at_the_peak() -> None:
    # 0.3 CPUs new, 0.1 + 0.2 removed: float sums give -5.55e-17 without cleaning.
    changes = [
        ("new", Amount(cpus=0.3, memory=GIB), True),
        ("removed", Amount(cpus=-0.1, memory=-GIB / 2), True),
        ("removed", Amount(cpus=-0.2, memory=-GIB / 2), True),
    ]
    result = peak(changes)
    assert result.after == Amount()
    assert result.after.describe(signed=True) == "+0 CPUs, +0 GPUs, +0 GiB memory"
    assert result.extra == Amount(cpus=0.3, memory=GIB)
    assert result.free is None and result.short == []  # the cluster was not read


def test_restarts_hold_the_larger_size_and_removals_free_only_after() -> None:
    changes = [
        ("replica restart", Amount(cpus=0.5, gpus=1), False),  # grows: the growth at the peak
        ("in place", Amount(cpus=-1.0), True),  # shrinks: nothing at the peak
        ("removed", Amount(cpus=-4.0, gpus=-1), False),
        ("unchanged", Amount(), True),
    ]
    result = peak(changes)
    assert result.extra == Amount(cpus=0.5, gpus=1)
    assert result.after == Amount(cpus=-4.5)


def test_a_peak_that_needs_a_second_gpu_does_not_fit() -> None:
    # A blue/green of a GPU graph on a cluster with one GPU, held by the running version.
    result = peak(
        [("new", Amount(cpus=1, gpus=1), False), ("removed", Amount(cpus=-1, gpus=-1), False)],
        in_use=Amount(cpus=1, gpus=1),
        capacity=Amount(cpus=8, gpus=1, memory=16 * GIB),
    )
    assert result.after == Amount()
    assert result.free == Amount(cpus=7, gpus=0, memory=16 * GIB)
    assert result.short == ["GPUs: needs 1 more, 0 free"]


def test_cpu_only_work_must_fit_on_the_cpu_nodes_not_just_anywhere() -> None:
    # 3 CPUs free in all, but only 0.5 on the labelled CPU nodes CPU-only replicas must use.
    changes = [("new", Amount(cpus=1), True), ("new", Amount(cpus=1, gpus=1), False)]
    ruled = peak(
        changes,
        in_use=Amount(cpus=5, gpus=1),
        capacity=Amount(cpus=10, gpus=2),
        cpu_node_free=0.5,
    )
    assert ruled.cpu_only_extra == 1
    assert ruled.short == [
        "CPUs on CPU nodes (CPU-only work runs only there): needs 1 more, 0.5 free"
    ]
    assert (
        peak(changes, in_use=Amount(cpus=5, gpus=1), capacity=Amount(cpus=10, gpus=2)).short == []
    )


def test_memory_is_checked_only_when_nodes_report_it() -> None:
    tight = peak(
        [("new", Amount(cpus=0.1, memory=4 * GIB), True)],
        in_use=Amount(memory=14 * GIB),
        capacity=Amount(cpus=2, memory=16 * GIB),
    )
    assert tight.short == ["memory: needs 4 GiB more, 2 GiB free"]
    unknown = peak(
        [("new", Amount(cpus=0.1, memory=4 * GIB), True)], in_use=Amount(), capacity=Amount(cpus=2)
    )
    assert unknown.short == []


def test_reserved_and_node_totals_read_serve_and_ray_records() -> None:
    details = {
        "deployments": {
            "ingress": {
                "deployment_config": {"ray_actor_options": {"num_cpus": 0.25}, "num_replicas": 2},
                "replicas": [{"state": "RUNNING"}, {"state": "RUNNING"}],
            },
            "logits": {
                "deployment_config": {
                    "ray_actor_options": {"num_cpus": 1, "num_gpus": 1, "memory": GIB},
                    "num_replicas": 1,
                },
                "replicas": [],  # starting: counted by its configured replicas
            },
        }
    }
    assert reserved(details) == {
        "ingress": Amount(cpus=0.5),
        "logits": Amount(cpus=1, gpus=1, memory=GIB),
    }
    nodes = [
        {"state": "ALIVE", "resources_total": {"CPU": 2.0, "memory": 8 * GIB}},
        {"state": "ALIVE", "resources_total": {"CPU": 1.0, "GPU": 2.0, "memory": 4 * GIB}},
        {"state": "DEAD", "resources_total": {"CPU": 16.0, "GPU": 8.0}},
    ]
    assert node_totals(nodes) == Amount(cpus=3, gpus=2, memory=12 * GIB)
