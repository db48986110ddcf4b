"""The embeddings section: one validation path for both frameworks, files, provider
strings, round trips, and the example configs of docs/rag.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from embgemma_plugins import EmbeddingGemmaEmbedding, EmbeddingGemmaEmbeddings
from embgemma_plugins.config import EmbeddingGemmaSettings, load_embeddings
from embgemma_plugins.errors import InvalidArgumentError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

CLASSES = [EmbeddingGemmaEmbeddings, EmbeddingGemmaEmbedding]
FULL = {
    "provider": "embgemma",
    "model": "google/embeddinggemma-300m",
    "variant": "int8",
    "dimensions": 256,
    "query_task": "question answering",
    "document_prompt": "title: none | text: ",
    "title_key": "title",
    "long": "mean",
    "providers": ["cuda", "cpu"],
    "threads": 2,
    "max_length": 512,
    "batch_tokens": 4096,
    "variants_repo": "acme/embeddinggemma-variants",
    "revision": "v1",
}
DOCS_MD = Path(__file__).resolve().parents[1] / "docs" / "rag.md"


def test_both_frameworks_share_the_section_fields():
    keys = set(EmbeddingGemmaSettings.model_fields)
    assert keys == {k for k in FULL if k != "provider"} | {"query_prompt"}  # not with query_task
    for cls in CLASSES:
        assert keys <= set(cls.model_fields)
        assert issubclass(cls, EmbeddingGemmaSettings)


@pytest.mark.parametrize("cls", CLASSES)
def test_defaults(cls):
    obj = cls()
    assert (obj.model, obj.variant, obj.dimensions, obj.query_task) == (
        "google/embeddinggemma-300m",
        None,
        768,
        "query",
    )
    assert obj.to_config() == {"provider": "embgemma", "model": "google/embeddinggemma-300m"}


@pytest.mark.parametrize("cls", CLASSES)
def test_section_round_trip(cls):
    obj = cls.from_config(FULL)
    assert obj.to_config() == FULL
    assert cls.from_config(obj.to_config()) == obj
    assert cls.from_config({}) == cls()
    assert cls.from_config({"dimensions": 128}) != cls()


@pytest.mark.parametrize("cls", CLASSES)
def test_provider_string_round_trip(cls):
    spec = "embgemma:google/embeddinggemma-300m?variant=int8&dimensions=256"
    obj = cls.from_provider_string(spec)
    assert (obj.variant, obj.dimensions) == ("int8", 256)
    assert obj.to_provider_string() == spec
    full = cls.from_config(FULL)
    assert cls.from_provider_string(full.to_provider_string()) == full
    assert cls.from_provider_string("embgemma:") == cls()
    local = cls.from_provider_string("embgemma:/srv/models/eg?threads=1&providers=cpu")
    assert (local.model, local.threads, local.providers) == ("/srv/models/eg", 1, "cpu")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("openai:text-embedding-3", "must start with 'embgemma:'"),
        ("embgemma:?dimensions=256&dimensions=128", "'dimensions' given twice"),
        ("embgemma:?dimensions=300", r"\.dimensions: dimensions must be one of"),
        ("embgemma:?dims=256", r"\.dims: unknown key"),
        ("embgemma:?provider=embgemma", "'provider' given twice"),
    ],
)
def test_provider_string_errors(spec, message):
    with pytest.raises(InvalidArgumentError, match=message):
        EmbeddingGemmaEmbeddings.from_provider_string(spec)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"dimension": 256},
         r"embeddings.dimension: unknown key \(did you mean dimensions=\?\); valid keys: provider"),
        ({"dimensions": 300}, "embeddings.dimensions: dimensions must be one of 768, 512"),
        ({"dimensions": "many"}, "embeddings.dimensions: .*valid integer"),
        ({"variant": "fp16"}, "embeddings.variant: variant must be one of fp32, int8, int4"),
        ({"query_task": "document"}, "embeddings.query_task: 'document' is the document prompt"),
        ({"query_task": " "}, "embeddings.query_task: query_task must not be empty"),
        ({"threads": 0}, "embeddings.threads: .*greater than or equal to 1"),
        ({"max_length": 4096}, "embeddings.max_length: .*less than or equal to 2048"),
        ({"batch_tokens": -1}, "embeddings.batch_tokens: "),
        ({"model": ""}, "embeddings.model: model must be"),
        ({"providers": 3}, "embeddings.providers: "),
        ({"provider": "openai"}, "embeddings.provider: expected 'embgemma', got 'openai'"),
    ],
)
@pytest.mark.parametrize("cls", CLASSES)
def test_section_errors_name_the_key(cls, section, message):
    with pytest.raises(InvalidArgumentError, match=message):
        cls.from_config(section)


def test_section_must_be_a_mapping():
    with pytest.raises(InvalidArgumentError, match="embeddings: expected a mapping, got list"):
        EmbeddingGemmaEmbeddings.from_config([("dimensions", 256)])  # type: ignore[arg-type]


def test_values_from_strings_are_coerced():
    obj = EmbeddingGemmaEmbeddings.from_config({"dimensions": "256", "threads": "2"})
    assert (obj.dimensions, obj.threads) == (256, 2)


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    if name.endswith(".toml"):
        lines = []
        for table, section in data.items():
            lines.append(f"[{table}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in section.items()]
        path.write_text("\n".join(lines) + "\n")
    elif name.endswith(".json"):
        path.write_text(json.dumps(data))
    else:
        path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("name", ["rag.yaml", "rag.yml", "rag.toml", "rag.json"])
@pytest.mark.parametrize("cls", CLASSES)
def test_files_and_key_paths(tmp_path, name, cls):
    path = _write(tmp_path, name, {"embeddings": FULL})
    assert cls.from_config_file(path) == cls.from_config(FULL)
    assert cls.from_config_file(str(path), key=["embeddings"]) == cls.from_config(FULL)


def test_nested_key_path_and_whole_file(tmp_path):
    nested = tmp_path / "rag.yaml"
    nested.write_text(yaml.safe_dump({"rag": {"retriever": {"embeddings": {"dimensions": 128}}}}))
    obj = EmbeddingGemmaEmbedding.from_config_file(nested, key="rag.retriever.embeddings")
    assert obj.dimensions == 128
    whole = tmp_path / "embeddings.toml"
    whole.write_text('provider = "embgemma"\ndimensions = 512\n')
    assert EmbeddingGemmaEmbeddings.from_config_file(whole, key="").dimensions == 512


def test_file_errors(tmp_path):
    path = tmp_path / "rag.yaml"
    path.write_text(yaml.safe_dump({"rag": {"embeddings": {"dimensions": 300}}}))
    with pytest.raises(InvalidArgumentError, match=r"rag\.yaml: rag\.embeddings\.dimensions: "):
        EmbeddingGemmaEmbeddings.from_config_file(path, key="rag.embeddings")
    with pytest.raises(InvalidArgumentError, match=r"no key 'rag\.embedding'"):
        EmbeddingGemmaEmbeddings.from_config_file(path, key="rag.embedding")
    with pytest.raises(InvalidArgumentError, match="config file not found"):
        EmbeddingGemmaEmbeddings.from_config_file(tmp_path / "missing.yaml")
    ini = tmp_path / "rag.ini"
    ini.write_text("[embeddings]\n")
    with pytest.raises(InvalidArgumentError, match="unknown config format"):
        EmbeddingGemmaEmbeddings.from_config_file(ini)


def test_load_embeddings_one_call(tmp_path):
    path = _write(tmp_path, "rag.yaml", {"embeddings": FULL})
    assert load_embeddings(path, "langchain") == EmbeddingGemmaEmbeddings.from_config(FULL)
    assert load_embeddings(FULL, "llamaindex") == EmbeddingGemmaEmbedding.from_config(FULL)
    spec = "embgemma:?dimensions=256"
    assert isinstance(load_embeddings(spec, "llamaindex"), EmbeddingGemmaEmbedding)
    with pytest.raises(InvalidArgumentError, match="framework must be"):
        load_embeddings(FULL, "haystack")


def _doc_blocks() -> list[tuple[str, dict]]:
    text = DOCS_MD.read_text(encoding="utf-8")
    blocks = re.findall(r"```(yaml|toml)\n(.*?)```", text, flags=re.S)
    return [(lang, yaml.safe_load(b) if lang == "yaml" else tomllib.loads(b)) for lang, b in blocks]


def _section(data):
    if isinstance(data, dict):
        if data.get("provider") == "embgemma":
            return data
        return next((s for v in data.values() if (s := _section(v)) is not None), None)
    return None


def test_docs_example_configs_build_both_frameworks():
    blocks = _doc_blocks()
    assert {lang for lang, _ in blocks} == {"yaml", "toml"}
    assert len(blocks) >= 4
    for lang, data in blocks:
        section = _section(data)
        assert section is not None, f"a {lang} example without an embeddings section"
        for cls in CLASSES:
            obj = cls.from_config(section)
            assert (obj.variant, obj.dimensions, obj.query_task) == ("int8", 256, "query")
            assert cls.from_config(obj.to_config()) == obj
