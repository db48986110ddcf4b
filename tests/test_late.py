"""Late chunking: the `token_states` output, window rules, pooled vectors (tiny model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from embgemma_plugins.errors import InvalidArgumentError
from embgemma_plugins.late import late_vectors, prepare
from embgemma_plugins.onnx_models.recipe import load_recipes
from embgemma_plugins.session import TOKEN_STATES
from embgemma_plugins.windows import assign, context, plan_windows
from tests.conftest import cosines

PROMPT = "title: none | text: "
SENTENCES = [
    "Readability counts. ",
    "Errors should never pass silently. ",
    "東京は日本の首都です。",
    "def add(a: int, b: int) -> int:\n    return a + b\n",
    "Der schnelle braune Fuchs springt über den faulen Hund. ",
]


def long_text(pieces: int) -> str:
    return "".join(SENTENCES[i % len(SENTENCES)] for i in range(pieces))


@pytest.fixture(scope="module")
def late_folder(tiny_model: Path) -> Path:
    """The tiny fp32 variant: its recipe lists the `token_states` output."""
    assert TOKEN_STATES in load_recipes()["fp32"].outputs
    return tiny_model


@pytest.fixture(scope="module")
def late_model(tiny_gemma):  # type: ignore[no-untyped-def]
    return tiny_gemma


@pytest.fixture(scope="module")
def plain_model(tiny_model: Path, tmp_path_factory):  # type: ignore[no-untyped-def]
    """The same variant with `token_states` pruned away (a folder without a manifest)."""
    from embgemma_plugins import EmbeddingGemma
    from embgemma_plugins.onnx_models import graph as G

    folder = tmp_path_factory.mktemp("plain") / "fp32"
    shutil.copytree(tiny_model, folder)
    (folder / "manifest.json").unlink()
    graph = G.load(folder / "model.onnx")
    G.keep_outputs(graph, [G.SENTENCE_OUTPUT])
    G.save(graph, folder / "model.onnx")
    return EmbeddingGemma(folder, threads=1)


def test_token_states_are_sentence_transformers_tokens_through_its_dense_head(
    late_folder, tiny_st, tokenize
):
    import torch

    texts = [PROMPT + s for s in SENTENCES]
    ids = tokenize(texts)
    session = ort.InferenceSession(str(late_folder / "model.onnx"))
    for text, row in zip(texts, ids, strict=True):
        feeds = {"input_ids": np.array([row]), "attention_mask": np.ones((1, len(row)), np.int64)}
        states, sentence = session.run([TOKEN_STATES, "sentence_embedding"], feeds)
        with torch.no_grad():
            features = tiny_st.tokenize([text])
            tokens = tiny_st[0](features)["token_embeddings"]
            reference = tiny_st[3](tiny_st[2]({"sentence_embedding": tokens[0]}))
        reference = reference["sentence_embedding"].numpy()
        assert cosines(states[0], reference).min() >= 0.99999
        pooled = states[0].mean(axis=0, keepdims=True)
        assert cosines(pooled, sentence).min() >= 0.999999


def test_the_extra_output_leaves_the_sentence_vectors_unchanged(late_model, plain_model):
    assert TOKEN_STATES not in [o.name for o in plain_model.session.get_outputs()]
    texts = [long_text(n) for n in (1, 7, 30)]
    np.testing.assert_allclose(
        late_model.embed_documents(texts), plain_model.embed_documents(texts), atol=2e-6
    )


def test_late_vector_of_a_text_that_fits_is_its_sentence_vector(late_model):
    texts = [long_text(n) for n in (0, 1, 4, 12)]
    spans = [[(0, len(t))] for t in texts]
    late = np.concatenate(late_vectors(late_model, texts, [PROMPT] * len(texts), spans))
    assert cosines(late, late_model.embed_documents(texts)).min() >= 0.9999


def test_window_plan_and_the_rule_at_a_boundary():
    windows = plan_windows(5000, 2030, 512)
    assert windows[0] == (0, 2030) and windows[-1] == (2970, 5000) and len(windows) == 3
    assert all(b - a == 2030 for a, b in windows)
    owner = assign(windows, 5000)
    (_, b1), (a2, _) = windows[0], windows[1]
    cut = (b1 - 1 + a2) // 2 + 1  # the overlap's middle: the documented rule
    assert owner[cut - 1] == 0 and owner[cut] == 1
    assert (owner[:cut] == 0).all() and (np.diff(owner) >= 0).all()
    ctx = context(windows, 5000)
    picked = ctx[owner, np.arange(5000)]
    assert (picked == ctx.max(axis=0)).all()  # every token: the window with the most context
    assert picked[owner == 1].min() >= 512 // 2  # at least half the overlap on a cut side
    assert plan_windows(10, 2030, 512) == [(0, 10)]
    with pytest.raises(InvalidArgumentError, match="half a window"):
        plan_windows(5000, 100, 60)


@pytest.mark.parametrize("window", [64, 2048])
def test_a_span_over_a_window_boundary_pools_each_token_from_its_window(late_model, window):
    """Late vectors of spans over a boundary equal the documented rule applied by hand:
    states from two separate runs, cut in the overlap's middle, frames weighted."""
    text = long_text(40 if window == 64 else 1200)
    doc = prepare(late_model.tokenizer, text, PROMPT, [(0, 1)], window, 16 if window == 64 else 512)
    assert len(doc.windows) >= 2
    (a1, b1), (a2, _) = doc.windows[:2]
    cut = (b1 - 1 + a2) // 2 + 1
    runs = []
    for w in (0, 1):
        ids = doc.window_ids(w, late_model.tokenizer.eos_id)
        feeds = {"input_ids": ids[None, :], "attention_mask": np.ones((1, len(ids)), np.int64)}
        runs.append(late_model.session.run([TOKEN_STATES], feeds)[0][0].astype(np.float64))
    head = len(doc.head)
    frames = [r[:head].sum(axis=0) + r[-1] for r in runs]
    for lo, hi in [(cut - 5, cut + 3), (a2, b1), (cut - 1, cut + 1)]:
        left, right = max(cut - lo, 0), max(hi - cut, 0)
        tokens = runs[0][head + lo - a1 : head + cut - a1].sum(axis=0) + runs[1][
            head + cut - a2 : head + hi - a2
        ].sum(axis=0)
        frame = (left * frames[0] + right * frames[1]) / (left + right)
        expected = (frame + tokens) / (doc.frame_size + hi - lo)
        start, end = int(doc.begins[lo]), int(doc.begins[hi])
        (got,) = late_vectors(late_model, [text], [PROMPT], [[(start, end)]], window,
                              16 if window == 64 else 512)  # fmt: skip
        assert cosines(got, expected[None, :])[0] >= 0.99999
    wrong = runs[1][head + lo - a2 : head + hi - a2].sum(axis=0)  # all from the later window
    assert cosines(got, ((frames[1] + wrong) / (doc.frame_size + hi - lo))[None, :])[0] < 0.99999


def test_a_variant_without_token_states_is_named(plain_model):
    with pytest.raises(InvalidArgumentError, match="needs a variant with the 'token_states'"):
        late_vectors(plain_model, ["text"], [PROMPT], [[(0, 4)]])
