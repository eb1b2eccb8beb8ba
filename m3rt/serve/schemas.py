"""Request and response models of every route (pydantic). Requests refuse unknown fields: a misspelt option is
a 422 naming it, never silently ignored. Responses are written by responses.py straight from the arrays; the
response models here document them in /openapi.json."""

from __future__ import annotations

from typing import Literal, Union

from pydantic import BaseModel, ConfigDict, Field

Inputs = Union[str, list[str]]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ------------------------------------------------------------------------------------------ TEI
class EmbedRequest(Strict):
    inputs: Inputs
    normalize: bool = True
    truncate: bool = True
    # text-embeddings-inference writes Right / Left (huggingface_hub sends those); only right is possible here.
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"
    prompt_name: str | None = Field(default=None, description="a name of --prompts (or 'query' with "
                                                              "--default-prompt): its text goes before each input")
    dimensions: int | None = Field(default=None, ge=1, description="cut to this many dimensions, re-normalised")


class EmbedSparseRequest(Strict):
    inputs: Inputs
    truncate: bool = True
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"
    prompt_name: str | None = None


class SparseValue(BaseModel):
    index: int
    value: float


class RerankRequest(Strict):
    query: str
    texts: list[str]
    return_text: bool = False
    raw_scores: bool = Field(default=False, description="ColBERT MaxSim has no activation to undo: the score is "
                                                        "the raw MaxSim either way")
    truncate: bool = True
    truncation_direction: Literal["right", "Right", "left", "Left"] = "right"


class Rank(BaseModel):
    index: int
    score: float
    text: str | None = None


class TokenizeRequest(Strict):
    inputs: Inputs
    add_special_tokens: bool = True
    prompt_name: str | None = None


class Token(BaseModel):
    id: int
    text: str
    special: bool


# ------------------------------------------------------------------------------------------ OpenAI
class OpenAIRequest(Strict):
    # Token ids are accepted by the schema only to be refused with a message saying what to send instead.
    input: Union[str, list[str], list[int], list[list[int]]]
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)
    user: str | None = None


class OpenAIEmbedding(BaseModel):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class OpenAIUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class OpenAIEmbeddings(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIEmbedding]
    model: str
    usage: OpenAIUsage


class OpenAIModel(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class OpenAIModels(BaseModel):
    object: Literal["list"] = "list"
    data: list[OpenAIModel]


# ------------------------------------------------------------------------------------------ M3-native
class EncodeRequest(Strict):
    inputs: Inputs
    return_dense: bool = True
    return_sparse: bool = False
    return_colbert_vecs: bool = False
    max_length: int | None = Field(default=None, description="tokens per text (2 .. the model's limit); "
                                                             "none: the server's passage default")
    sparse_tokens: bool = False
    colbert_format: Literal["float", "base64_fp16"] = Field(
        default="float", description="base64_fp16: each text's vectors as little-endian fp16 bytes, "
                                     "about 8x smaller than float JSON")
    prompt_name: str | None = None


class EncodeResponse(BaseModel):
    dense_vecs: list[list[float]] | None
    lexical_weights: list[dict[str, float]] | None
    colbert_vecs: list[Union[list[list[float]], str]] | None
    lexical_tokens: list[dict[str, float]] | None = None


class ScoreRequest(Strict):
    pairs: list[tuple[str, str]]
    weights_for_different_modes: list[float] | None = Field(
        default=None, description="[dense, sparse, colbert], finite and >= 0, dense + sparse > 0")
    max_query_length: int | None = None
    max_passage_length: int | None = None


class ScoreResponse(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    colbert: list[float]
    sparse: list[float]
    dense: list[float]
    sparse_dense: list[float] = Field(alias="sparse+dense")
    colbert_sparse_dense: list[float] = Field(alias="colbert+sparse+dense")


class Health(BaseModel):
    status: str
