"""Request and response models of every route (pydantic). Requests refuse unknown fields: a misspelt option is
a 422 naming it, never silently ignored. Responses are written by responses.py straight from the arrays; the
response models here document them in /openapi.json.

Lists are checked before pydantic validates their items, which would build one error object per bad item (a
small body of a million wrong items would cost gigabytes): a list longer than the request's limit is a 413, and
a wrong item a 422 naming the first one, each one error, found at C speed where the list is long.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Annotated, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from m3rt.serve.errors import Kind, ServeError

# The texts one request may send (--max-texts-per-request), set for each request by the Gate middleware.
MAX_TEXTS: ContextVar[int | None] = ContextVar("m3rt_max_texts", default=None)

TOKEN_IDS = ("token ids are not accepted. They come from another tokenizer than this model's "
             "(langchain-openai's OpenAIEmbeddings sends tiktoken ids by default) and would embed the wrong tokens; "
             "send the text itself (langchain-openai: OpenAIEmbeddings(..., check_embedding_ctx_length=False))")
JSON_TYPES = {str: "a string", int: "a number", float: "a number", bool: "true or false", type(None): "null",
              list: "a list", dict: "an object"}


def _counted(items: list, name: str) -> None:
    limit = MAX_TEXTS.get()
    if limit is not None and len(items) > limit:
        raise ServeError(Kind.TOO_LARGE, f"{name}: {len(items)} texts, over the limit of {limit} per request "
                                         "(--max-texts-per-request)", param=name)


def _first_not_string(items: list) -> int | None:
    if set(map(type, items)) <= {str}:
        return None
    return next(i for i, x in enumerate(items) if type(x) is not str)


def check_texts(value, info):
    """A text or a list of texts."""
    if isinstance(value, list):
        _counted(value, info.field_name)
        if (i := _first_not_string(value)) is not None:
            got = JSON_TYPES.get(type(value[i]), "a value")
            raise ServeError(Kind.VALIDATION, f"{info.field_name}[{i}]: expected a string, got {got}",
                             param=info.field_name)
    return value


def check_openai_input(value, info):
    """As check_texts; token ids (lists of them) get a message saying what to send instead."""
    if isinstance(value, list) and (i := _first_not_string(value)) is not None and type(value[i]) in (int, list):
        raise ServeError(Kind.VALIDATION, f"{info.field_name}: {TOKEN_IDS}", param=info.field_name)
    return check_texts(value, info)


def check_pairs(value, info):
    """(query, passage) pairs: lists of two strings."""
    if isinstance(value, list):
        _counted(value, info.field_name)
        for i, pair in enumerate(value):
            if not (type(pair) is list and len(pair) == 2 and type(pair[0]) is str and type(pair[1]) is str):
                raise ServeError(Kind.VALIDATION, f"{info.field_name}[{i}]: expected [query, passage], two strings",
                                 param=info.field_name)
    return value


def check_weights(value, info):
    if isinstance(value, list) and len(value) != 3:
        raise ServeError(Kind.VALIDATION, f"{info.field_name}: 3 finite weights >= 0 (dense, sparse, colbert), got "
                                          f"{len(value)} values", param=info.field_name)
    return value


Inputs = Annotated[Union[str, list[str]], BeforeValidator(check_texts)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data):
        """One error for unknown fields, however many there are."""
        if isinstance(data, dict) and not data.keys() <= cls.model_fields.keys():
            name = str(next(k for k in data if k not in cls.model_fields))
            name = name if len(name) <= 64 else name[:64] + "..."
            raise ServeError(Kind.VALIDATION, f"{name}: unknown field; this route takes "
                                              f"{', '.join(cls.model_fields)}", param=name)
        return data


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
    texts: Annotated[list[str], BeforeValidator(check_texts)]
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
    input: Annotated[Union[str, list[str], list[int], list[list[int]]], BeforeValidator(check_openai_input)]
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
    pairs: Annotated[list[tuple[str, str]], BeforeValidator(check_pairs)]
    weights_for_different_modes: Annotated[list[float] | None, BeforeValidator(check_weights)] = Field(
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
