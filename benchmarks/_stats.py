"""The offline benchmark's figures: medians, paired per-repeat ratios, targets, time breakdown."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks._baselines import MODEL_NODE

SMALL_ROWS = 1_000
TARGETS = {"throughput": 1.3, "fixed_cost": 0.8, "torch": 0.25}
SYSTEMS = ("graphops", "handwritten")


def median_of(runs: list[dict[str, Any]], key: str = "wall_s") -> float:
    """Median of one timing over repeated runs."""
    return statistics.median(r[key] for r in runs)


def paired(
    raw: dict[str, dict[str, list[dict[str, Any]]]], a: str, b: str, size: str
) -> list[float]:
    """Per repeat: ``a``'s wall time over ``b``'s, both measured in that repeat."""
    return [x["wall_s"] / y["wall_s"] for x, y in zip(raw[a][size], raw[b][size], strict=True)]


def summarize(
    raw: dict[str, dict[str, list[dict[str, Any]]]], rows: int, huge: int | None = None
) -> dict[str, Any]:
    """Medians, rows/s, ratios and targets from the raw timings.

    The headline ratios are medians of per-repeat ratios (each a pair of runs measured minutes
    apart, so slow drifts of the machine's load cancel); ratios of the medians are kept beside.
    """
    med: dict[str, dict[str, Any]] = {
        s: {
            size: {"wall_s": median_of(runs), "rows_per_s": int(size) / median_of(runs)}
            for size, runs in sizes.items()
        }
        for s, sizes in raw.items()
    }
    big, small = str(rows), str(SMALL_ROWS)
    for s in SYSTEMS:  # steady state: the extra rows over the extra time, fixed cost removed
        extra = med[s][big]["wall_s"] - med[s][small]["wall_s"]
        med[s]["marginal_rows_per_s"] = (rows - SMALL_ROWS) / extra if extra > 0 else None
    baselines = [
        b for b in raw if b != "graphops" and not b.startswith("graphops_") and big in raw[b]
    ]
    per_repeat = {  # graphops' throughput over b's = b's wall over graphops'
        f"graphops_vs_{b}": paired(raw, b, "graphops", big) for b in baselines
    }
    per_repeat["fixed_cost_graphops_vs_handwritten"] = paired(raw, "graphops", "handwritten", small)
    throughput = {
        k: statistics.median(v) for k, v in per_repeat.items() if k.startswith("graphops_vs")
    }
    fixed = statistics.median(per_repeat["fixed_cost_graphops_vs_handwritten"])
    of_medians = {
        **{
            f"graphops_vs_{b}": med["graphops"][big]["rows_per_s"] / med[b][big]["rows_per_s"]
            for b in baselines
        },
        "fixed_cost_graphops_vs_handwritten": med["graphops"][small]["wall_s"]
        / med["handwritten"][small]["wall_s"],
    }
    marginal = [med[s]["marginal_rows_per_s"] for s in SYSTEMS]
    targets = {
        "throughput_vs_handwritten": {
            "target": f">= {TARGETS['throughput']}",
            "value": throughput["graphops_vs_handwritten"],
            "ratio_of_medians": of_medians["graphops_vs_handwritten"],
            "met": throughput["graphops_vs_handwritten"] >= TARGETS["throughput"],
        },
        "fixed_cost_vs_handwritten": {
            "target": f"<= {TARGETS['fixed_cost']}",
            "value": fixed,
            "ratio_of_medians": of_medians["fixed_cost_graphops_vs_handwritten"],
            "met": fixed <= TARGETS["fixed_cost"],
        },
    }
    ratios = {
        "throughput": throughput,
        "fixed_cost_graphops_vs_handwritten": fixed,
        "per_repeat": per_repeat,
        "ratio_of_medians": of_medians,
        "marginal_throughput_graphops_vs_handwritten": marginal[0] / marginal[1]
        if all(marginal)
        else None,
    }
    if huge is not None:
        at = str(huge)
        others = [b for b in raw if b != "graphops" and at in raw[b]]
        per_huge = {f"graphops_vs_{b}": paired(raw, b, "graphops", at) for b in others}
        ratios["at_huge_rows"] = {
            "rows": huge,
            "throughput": {k: statistics.median(v) for k, v in per_huge.items()},
            "per_repeat": per_huge,
            "ratio_of_medians": {
                f"graphops_vs_{b}": med["graphops"][at]["rows_per_s"] / med[b][at]["rows_per_s"]
                for b in others
            },
        }
        value = ratios["at_huge_rows"]["throughput"]["graphops_vs_handwritten"]
        targets["throughput_vs_handwritten_at_huge_rows"] = {
            "target": f">= {TARGETS['throughput']}",
            "value": value,
            "ratio_of_medians": ratios["at_huge_rows"]["ratio_of_medians"][
                "graphops_vs_handwritten"
            ],
            "met": value >= TARGETS["throughput"],
        }
        for b in ("torch_b64", "torch_b1024"):
            value = ratios["at_huge_rows"]["throughput"][f"graphops_vs_{b}"]
            targets[f"throughput_vs_{b}_at_huge_rows"] = {
                "target": f">= {TARGETS['torch']}",
                "value": value,
                "ratio_of_medians": ratios["at_huge_rows"]["ratio_of_medians"][f"graphops_vs_{b}"],
                "met": value >= TARGETS["torch"],
            }
    levers = {}
    for s in raw:
        if s.startswith("graphops_") and big in raw[s]:
            # How much faster graphops is with the lever on: the lever-off run's wall over its.
            speedup = paired(raw, s, "graphops", big)
            levers[s.removeprefix("graphops_")] = {
                "speedup": statistics.median(speedup),
                "per_repeat": speedup,
                "wall_s_without": med[s][big]["wall_s"],
            }
    diagnostics: dict[str, Any] = {"levers": levers} if levers else {}
    old = "handwritten_default_reader"  # the diagnostics add to the former baseline
    for s in ("handwritten_timer", "handwritten_carry"):
        if s in raw and old in raw:
            slowdown = paired(raw, s, old, big)
            extra = [
                x["wall_s"] - y["wall_s"] for x, y in zip(raw[s][big], raw[old][big], strict=True)
            ]
            diagnostics[f"{s}_vs_{old}"] = {
                "throughput_ratio": statistics.median(1 / r for r in slowdown),
                "extra_wall_s": statistics.median(extra),
                "per_repeat_throughput_ratio": [1 / r for r in slowdown],
            }
    if "read_write_v2" in raw:
        v2_over_v1 = paired(raw, "read_write_v2", "read_write_v1", small)
        diagnostics["read_write_1k_v2_vs_v1"] = {
            "v2_wall_s": med["read_write_v2"][small]["wall_s"],
            "v1_wall_s": med["read_write_v1"][small]["wall_s"],
            "ratio": statistics.median(v2_over_v1),
        }
    return {"medians": med, "ratios": ratios, "targets": targets, "diagnostics": diagnostics}


def breakdown(result: dict[str, Any], rows: int) -> dict[str, Any]:
    """Where the time goes: setup, per-worker setup (probe), graphops' stage timer, torch phases."""
    raw, probed = result["raw"], result["probe"]
    runs = raw["graphops"][str(rows)]
    stage = {
        name: statistics.median(r["stage_seconds"][name] for r in runs)
        for name in runs[0]["stage_seconds"]
    }
    wall = median_of(runs)
    steps = probed["steps_s"]
    model_batch = result["parameters"]["model_batch_size"]
    batches = {"model_stage": -(-rows // model_batch), "cpu_stages": 2 * -(-rows // 1024)}
    trip = probed["timer_round_trip_ms"]["median"] / 1e3
    torch_runs = raw["torch_b64"][str(rows)]
    return {
        "ray_init_s": result["setup_s"]["ray_init"],
        "train_and_register_s": result["setup_s"]["train_and_register"],
        "actor_start_s": probed["actor_start_s"],
        "timer_actor_ready_s": probed["timer_actor_ready_s"],
        "model_stage_setup_s": {
            "handwritten": steps["import_torch"] + steps["handwritten_model_load"],
            "graphops_extra_over_handwritten": steps["import_graphops_offline"]
            + steps["graphops_load_graph"]
            + steps["graphops_plan"]
            + steps["graphops_model_load"],
        },
        "graphops": {
            "wall_s": wall,
            "pipeline_s": median_of(runs, "pipeline_s"),
            "stage_compute_s": stage,
            "model_stage_compute_share_of_wall": stage.get(MODEL_NODE, 0.0) / wall,
            "reported_rows": {
                "warmup": result["warmup"]["graphops"]["reported_rows"],
                "timed": [r["reported_rows"] for r in runs],
                "expected": rows,
            },
        },
        "timer_round_trips_estimated_s": {
            "batches": batches,
            "model_stage": batches["model_stage"] * trip,
            "cpu_stages": batches["cpu_stages"] * trip,
        },
        "torch_b64_phases_s": {
            k: statistics.median(r["phases_s"][k] for r in torch_runs)
            for k in torch_runs[0]["phases_s"]
        },
    }
