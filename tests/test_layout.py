"""The result layout and the record shapes: one definition each, used by the writers and the report."""

import pytest

from rdd import layout, records
from rdd.report.manifest import KINDS
from rdd.report.render import study_tables
from rdd.report.study import Study


def test_companion_files_keep_the_wildcards_of_a_pattern():
    assert layout.training_record(layout.TEACHER) == "results/{study}/models/teacher/teacher_{T}.json"
    assert layout.curves(layout.STUDENT) == "results/{study}/models/{method}/{variant}/student_{T}.curves.csv"
    assert layout.log(layout.METRIC) == "logs/results/{study}/metrics/{method}/{variant}/steps{steps}/seed{seed}.log"
    assert layout.samples_record(layout.SAMPLES).endswith("/seed{seed}.json")
    assert layout.resume_dir("results/s/models/pd/chain/student_4.pt") == "resume/results/s/models/pd/chain/student_4"
    assert layout.summary(layout.path(layout.REPORT, study="s")) == "reports/s.summary.json"
    with pytest.raises(ValueError, match="not a model file"):
        layout.training_record("results/s/samples/x.npz")


def test_every_companion_differs_from_its_model_and_from_each_other():
    model = layout.path(layout.STUDENT, study="s", method="rdd", variant="default", T=1)
    files = {layout.training_record(model), layout.curves(model), layout.settings_file(model), model}
    assert len(files) == 4


def test_the_report_writes_exactly_the_tables_the_layout_names():
    assert set(study_tables(Study({}, []))) == set(layout.TABLES)


def test_each_record_kind_is_a_manifest_kind_and_each_builder_stamps_its_own():
    env = {"code": {}, "packages": {}, "machine": {}}
    built = [
        records.training("distill", {}, started_unix=0.0, train_seconds=1.0, world_size=1, final_terms=None,
                         details={}, environment=env),
        records.samples(model="m.pt", steps=2, T=2, seeds=range(4), batch_size=2, net_batch=2, precision="fp32",
                        latencies=[(2, 0.5), (2, 1.5)], wall_seconds=2.0, environment=env),
        records.reference(stats_path="s.npz", stats_sha256="x", stats_record={}, dataset={}, split="train",
                          limit=None, inception={}),
        records.memory_benchmark(device="cpu", measure="m", channels=1, num_anchors=1, batch_sweep={},
                                 map_sweep=None, environment=env),
        records.speed_benchmark(results=[], batch_size=2, net_batch=2, precision="fp32", repeats=1,
                                min_seconds=0.0, threads=1, device="cpu", wall_seconds=1.0, environment=env),
    ]
    assert [r["kind"] for r in built] == [k for k in records.KINDS if k != "metric"]
    assert set(records.KINDS) <= set(KINDS)
    speed = built[1]["speed"]
    assert speed["images_per_second"] == pytest.approx(4 / 2.0) and speed["median_latency_per_full_batch_s"] == 1.0
    assert (built[1]["seed_first"], built[1]["seed_last"], built[1]["num_images"]) == (0, 3, 4)


def test_training_replicates_have_folders_of_their_own_that_no_other_line_can_take():
    assert layout.run_dir("rdd", "default", 0) == "rdd/default"
    assert layout.run_dir("rdd", "default", 2) == "rdd/replicate2"
    assert layout.run_dir("rdd", "losses-full", 0) == "rdd/losses-full"
    assert layout.run_dir("rdd", "losses-full", 1) == "rdd/losses-full-replicate1"
    # Names are [a-z0-9_]: a main replicate's folder has no hyphen, an ablation's one, its replicate's two.
    hyphens = [layout.run_dir("rdd", v, r).split("/")[1].count("-")
               for v, r in (("default", 0), ("default", 1), ("losses-full", 0), ("losses-full", 1))]
    assert hyphens == [0, 0, 1, 2]