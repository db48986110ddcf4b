"""The benchmark harness runs end to end in its quick form (no timed assertions).

Benchmarks are not tests: nothing here checks a speed.  These tests check that
every runtime is measured in its own process on the same texts, that a missing
variant is skipped with a reason instead of failing, that the vectors the
benchmark times are the right ones (cosine to sentence-transformers), and that the
report and the ``embgemma bench`` table come out.
"""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from embgemma_plugins.bench import corpus, harness, report, targets
from embgemma_plugins.bench.run import Plan, run


@pytest.fixture(scope="module")
def outcome(tiny_model, tiny_checkpoint):
    plan = Plan(
        model=str(tiny_model),
        st_model=str(tiny_checkpoint),
        variants=("fp32", "int8"),
        dims=(768, 256),
        docs=10,
        queries=4,
        threads=1,
        rss_rows=(30,),
        rss_variants=("fp32",),
    )
    return run(plan, log=lambda _s: None)


def test_every_runtime_is_measured_on_the_same_texts(outcome):
    labels = sorted(r.m.runtime.label for r in outcome.rows)
    assert labels == [
        "embgemma fp32 d256",
        "embgemma fp32 d768",
        "sentence-transformers fp32 d256",
        "sentence-transformers fp32 d768",
    ]
    for r in outcome.rows:
        assert r.m.docs == 10 and len(r.m.latencies_ms) == 4
        assert r.m.doc_tokens > 10 and r.m.docs_s > 0 and r.m.load_s > 0
        assert r.m.peak_rss_mb and r.m.peak_rss_mb > 10
    # Both runtimes count the same tokens: the ratio of tokens/s is the ratio of work.
    assert len({r.m.doc_tokens for r in outcome.rows}) == 1


def test_missing_variant_is_skipped_with_a_reason(outcome):
    assert any(s.startswith("int8: skipped") for s in outcome.skipped)


def test_benchmarked_vectors_match_sentence_transformers(outcome):
    mine = [r for r in outcome.rows if r.m.runtime.kind == harness.ONNX]
    for r in mine:
        assert r.cosine is not None and r.cosine[1] > 0.9999, r.cosine
        assert r.speedup and r.speedup > 0 and r.latency_ratio and r.memory_ratio


def test_cli_rss_and_report(outcome, tmp_path):
    assert [(r.variant, r.rows) for r in outcome.rss] == [("fp32", 30)]
    assert outcome.rss[0].peak_rss_mb > 10
    out = tmp_path / "benchmarks.md"
    report.write(outcome, out)
    text = out.read_text()
    assert "## Targets" in text and "int8 throughput >= 8x" in text and "not measured" in text
    assert "embgemma fp32" in text and "(reference)" in text and "int8: skipped" in text
    assert (tmp_path / "benchmarks.png").stat().st_size > 1000
    table = report.text_table(outcome)
    assert "sentence-transformers fp32" in table and "peak RSS" in table


def test_bench_command_prints_the_table(tiny_model, tiny_checkpoint):
    from embgemma_plugins.cli.main import cli

    args = [
        "bench",
        "--model",
        str(tiny_model),
        "--st-model",
        str(tiny_checkpoint),
        "--variant",
        "fp32",
        "--docs",
        "6",
        "--queries",
        "3",
        "--threads",
        "1",
    ]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert "embgemma fp32" in done.output and "x ST" in done.output


def test_spread_takes_items_across_the_whole_corpus():
    docs = corpus.documents()
    assert len(docs) == 660 and len(corpus.queries()) == 126
    picked = corpus.spread(docs, 10)
    assert len(picked) == 10 and picked[0] == docs[0] and picked[-1] == docs[594]
    assert corpus.spread(docs, None) == docs and corpus.spread(docs, 0) == []


def test_percentiles_ratios_and_verdicts():
    assert harness.percentile([1, 2, 3, 4], 50) == 2.5
    assert np.isnan(harness.percentile([], 50))

    def m(kind, variant, tps, p50, rss, dim=768):
        rt = harness.Runtime(kind, "m", variant, dim)
        return harness.Measurement(rt, 0.1, 1.0, 10, int(tps), 1.0, [p50] * 3, rss)

    rows = harness.rows(
        [m(harness.ST, "fp32", 100, 100, 1000), m(harness.ONNX, "int8", 900, 8, 400)]
    )
    assert rows[1].speedup == 9 and rows[1].latency_ratio == 12.5 and rows[1].memory_ratio == 0.4
    found = {v.target: v for v in targets.verdicts(rows, [])}
    assert found["int8 throughput >= 8x sentence-transformers"].status == "met"
    assert found["int8 single short query p50 <= 10 ms"].status == "met"
    assert found["fp32 throughput >= 3x sentence-transformers"].status == "not measured"
    # a second dimension (the same computation) that misses: not claimed on the better one
    rows = harness.rows(
        [
            m(harness.ST, "fp32", 100, 100, 1000),
            m(harness.ONNX, "int8", 900, 8, 400),
            m(harness.ST, "fp32", 120, 100, 1000, dim=256),
            m(harness.ONNX, "int8", 900, 11, 400, dim=256),
        ]
    )
    found = {v.target: v for v in targets.verdicts(rows, [])}
    speed = found["int8 throughput >= 8x sentence-transformers"]
    assert (speed.measured, speed.status) == ("9.00x / 7.50x at 768 / 256 dims", "missed")
    p50 = found["int8 single short query p50 <= 10 ms"]
    assert (p50.measured, p50.status) == ("8.0 ms / 11.0 ms at 768 / 256 dims", "missed")
    assert found["int8 load time <= 2 s"].status == "met"


def test_profile_summarises_kernel_time_by_operator(tiny_model):
    from benchmarks import profile

    found = profile.profile(str(tiny_model), None, docs=4, threads=1)
    assert found and abs(sum(share for _, share, _ in found) - 1) < 1e-6
    assert all(runs > 0 for _, _, runs in found)
    assert found == sorted(found, key=lambda x: -x[1])


@pytest.mark.parametrize("extra", [[], ["--long", "2"]])
def test_ab_throughput_compares_two_folders_on_the_same_documents(tiny_model, capsys, extra):
    from benchmarks import ab_throughput

    assert ab_throughput.main([str(tiny_model), str(tiny_model), "--rounds", "1", *extra]) == 0
    line = capsys.readouterr().out
    assert line.startswith("2 documents" if extra else f"{len(corpus.documents())} documents")
    assert "B/A" in line and line.rstrip().endswith("minimum cosine A to B 1.000000")
    assert all(len(text) >= 12_000 for text in ab_throughput.long_documents(2))


def test_attention_times_the_stored_node_and_its_split_form(capsys):
    from benchmarks import attention

    # either side of split_queries' threshold: the two graphs must agree bit for bit
    assert attention.main(["--shapes", "1x130", "1x129", "2x16"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["B", "x", "T"] and len(lines) == 4
    assert [line.split()[0] for line in lines[1:]] == ["1x130", "1x129", "2x16"]
