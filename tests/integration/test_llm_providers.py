"""The real ChatOpenAI and ChatGoogleGenerativeAI clients against a local stub of both APIs.

Nothing here reaches a real provider: keys are dummies, default endpoints point at a dead loopback
port, and every client under test is given the stub's URL.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator

import pytest
from pydantic import BaseModel, Field
from stubs import Reply, StubLLMServer, isolate_llm_env

from archsmith.errors import InputError
from archsmith.llm.failures import LLMAuthError, LLMConfigError, LLMUnavailableError
from archsmith.llm.providers import (
    PLACEHOLDER_API_KEY,
    check_llm,
    default_llm,
    describe_llm,
    make_llm,
    model_name,
    parse_llm,
)

pytestmark = pytest.mark.llm

OPENAI = "openai:gpt-4o-mini"
GEMINI = "gemini:gemini-2.5-flash"
KEY_ENV = {OPENAI: "OPENAI_API_KEY", GEMINI: "GOOGLE_API_KEY"}

CANDIDATE = """import torch.nn as nn


def build_model(input_shape, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))
"""


class PlanSketch(BaseModel):
    """A small stand-in for the planner's structured output."""

    dataset: str = Field(description="Dataset name.")
    num_classes: int = Field(ge=2)
    fps_threshold: float | None = None


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_llm_env(monkeypatch)


@pytest.fixture
def stub() -> Iterator[StubLLMServer]:
    with StubLLMServer() as server:
        yield server


@pytest.fixture(params=[OPENAI, GEMINI], ids=["openai", "gemini"])
def llm_value(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


def _url(stub: StubLLMServer, value: str) -> str:
    return stub.openai_base_url if value.startswith("openai:") else stub.gemini_base_url


def _temperature(value: str, body: dict[str, object]) -> object:
    if value.startswith("openai:"):
        return body["temperature"]
    config = body["generationConfig"]
    assert isinstance(config, dict)
    return config["temperature"]


# -- parsing and defaults ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("offline", ("offline", None)),
        ("openai:gpt-4o", ("openai", "gpt-4o")),
        ("gemini:gemini-2.5-pro", ("gemini", "gemini-2.5-pro")),
        (" openai:my-org/qwen2.5-coder:7b ", ("openai", "my-org/qwen2.5-coder:7b")),
    ],
)
def test_parse_llm_accepts_the_documented_forms(
    value: str, expected: tuple[str, str | None]
) -> None:
    assert parse_llm(value) == expected


@pytest.mark.parametrize(
    "value", ["", "openai", "openai:", "gpt-4o", "anthropic:claude", "gemini: ", "offline:x"]
)
def test_parse_llm_rejects_anything_else_naming_the_accepted_forms(value: str) -> None:
    with pytest.raises(InputError, match=r"'offline', 'openai:MODEL'.*'gemini:MODEL'"):
        parse_llm(value)


def test_default_llm_follows_the_keys_that_are_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_llm() == "openai:gpt-4o"
    monkeypatch.delenv("OPENAI_API_KEY")
    assert default_llm().startswith("gemini:")
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert default_llm() == "offline"
    monkeypatch.setenv("GEMINI_API_KEY", "alias")
    assert default_llm().startswith("gemini:")


def test_offline_builds_no_model() -> None:
    assert make_llm("offline") is None


def test_describe_llm_names_the_model_and_where_it_is_reached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL")
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL")
    assert describe_llm("openai:gpt-4o") == "openai:gpt-4o at https://api.openai.com/v1"
    assert describe_llm("gemini:gemini-2.5-pro").startswith(
        "gemini:gemini-2.5-pro at https://generativelanguage.googleapis.com"
    )
    assert (
        describe_llm("openai:qwen", base_url="http://gpu-box:8000/v1")
        == "openai:qwen at http://gpu-box:8000/v1"
    )
    assert describe_llm("offline") == "offline architect (chosen with --llm offline)"
    monkeypatch.delenv("OPENAI_API_KEY")
    monkeypatch.delenv("GOOGLE_API_KEY")
    assert describe_llm("offline") == "offline architect (no LLM key set)"


def test_model_name_round_trips_to_the_llm_value(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    assert model_name(llm) == llm_value
    assert parse_llm(model_name(llm)) == parse_llm(llm_value)


# -- configuration errors, before any request -----------------------------------------------------


def test_missing_key_fails_before_any_request(
    stub: StubLLMServer, llm_value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(KEY_ENV[llm_value])
    with pytest.raises(LLMConfigError) as err:
        make_llm(llm_value)
    assert f"set {KEY_ENV[llm_value]} or use --llm offline" in str(err.value)
    assert isinstance(err.value, InputError)
    assert stub.requests == []


@pytest.mark.parametrize("base_url", ["localhost:8000/v1", "ftp://x"])
def test_malformed_base_url_is_a_config_error(base_url: str) -> None:
    with pytest.raises(LLMConfigError, match="http:// or https://"):
        make_llm(OPENAI, base_url=base_url)


def test_malformed_retry_base_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHSMITH_LLM_RETRY_BASE_S", "soon")
    with pytest.raises(LLMConfigError, match="ARCHSMITH_LLM_RETRY_BASE_S"):
        make_llm(GEMINI)


# -- completions ---------------------------------------------------------------------------------


def test_plain_text_completion_sends_the_papers_temperature(
    stub: StubLLMServer, llm_value: str
) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply(text=CANDIDATE))

    answer = llm.invoke("Write build_model for CIFAR-10.")

    assert answer.text.strip() == CANDIDATE.strip()  # Gemini's client strips the final newline
    (req,) = stub.requests
    assert _temperature(llm_value, req.json) == 0.5
    assert req.sent_key("sk-test-not-a-real-key" if llm_value == OPENAI else "test-not-a-real-key")
    assert "not-a-real-key" not in json.dumps(req.headers)
    # The model went where the stub serves that provider; the URL layout (the API version in a
    # Gemini path, v1beta then v1) is the client's choice, not the point.
    model = parse_llm(llm_value)[1]
    if llm_value == OPENAI:
        assert req.protocol == "openai"
        assert req.json["model"] == model
    else:
        assert req.protocol == "gemini"
        assert req.gemini_model == model


def test_temperature_can_be_changed(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value), temperature=0.0)
    assert llm is not None
    llm.invoke("hi")
    assert _temperature(llm_value, stub.requests[0].json) == 0.0


def test_structured_output_parses_into_a_pydantic_model(
    stub: StubLLMServer, llm_value: str
) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply(text=json.dumps({"dataset": "malaria", "num_classes": 2})))

    plan = llm.with_structured_output(PlanSketch).invoke("a 1000-FPS malaria classifier")

    assert plan == PlanSketch(dataset="malaria", num_classes=2)
    body = stub.requests[0].json
    if llm_value == OPENAI:
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "PlanSketch"
        assert set(fmt["json_schema"]["schema"]["properties"]) >= {"dataset", "num_classes"}
    else:
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert "num_classes" in config["responseJsonSchema"]["properties"]


def test_structured_output_by_function_calling(stub: StubLLMServer, llm_value: str) -> None:
    """The fallback for OpenAI-compatible servers without JSON-schema support."""
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply(tool_call=("PlanSketch", {"dataset": "cifar10", "num_classes": 10})))

    plan = llm.with_structured_output(PlanSketch, method="function_calling").invoke("cifar")

    assert plan == PlanSketch(dataset="cifar10", num_classes=10)
    body = stub.requests[0].json
    if llm_value == OPENAI:
        assert body["tools"][0]["function"]["name"] == "PlanSketch"
    else:
        assert body["tools"][0]["functionDeclarations"][0]["name"] == "PlanSketch"


def test_openai_compatible_server_needs_no_key(
    stub: StubLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    llm = make_llm("openai:qwen2.5-coder:7b", base_url=stub.openai_base_url)
    assert llm is not None
    stub.script(Reply(text=CANDIDATE))

    assert llm.invoke("code please").text == CANDIDATE
    check_llm(llm)

    first = stub.requests[0]
    assert first.json["model"] == "qwen2.5-coder:7b"
    assert first.sent_key(PLACEHOLDER_API_KEY)


# -- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 503])
def test_transient_error_is_retried_then_succeeds(
    stub: StubLLMServer, llm_value: str, status: int
) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply.error(status), Reply(text="second time lucky"))

    assert llm.invoke("hi").text == "second time lucky"
    assert len(stub.requests) == 2


def test_server_retry_after_is_honoured_by_openai(stub: StubLLMServer) -> None:
    llm = make_llm(OPENAI, base_url=stub.openai_base_url)
    assert llm is not None
    stub.script(Reply.error(429, retry_after_ms="1200"), Reply(text="ok"))
    start = time.monotonic()
    llm.invoke("hi")
    assert time.monotonic() - start >= 1.1  # the SDK's own first wait would be 0.375-0.5 s
    assert len(stub.requests) == 2


def test_gemini_backoff_follows_the_retry_base(stub: StubLLMServer) -> None:
    """Without our retry options the SDK would wait 1-2 s before the second attempt."""
    llm = make_llm(GEMINI, base_url=stub.gemini_base_url, retry_base_s=0.05)
    assert llm is not None
    stub.script(Reply.error(429), Reply.error(503), Reply(text="ok"))
    start = time.monotonic()
    llm.invoke("hi")
    assert time.monotonic() - start < 1.5  # the SDK's defaults would wait at least 1 s + 2 s
    assert len(stub.requests) == 3


def test_retries_are_bounded(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value), max_retries=2)
    assert llm is not None
    stub.script(*[Reply.error(500)] * 3, Reply(text="too late"))

    with pytest.raises(LLMUnavailableError, match=llm_value) as err:
        check_llm(llm)
    assert err.value.__cause__ is not None
    assert len(stub.requests) == 3
    assert stub.pending == 1


def test_timeout_is_retried(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value), timeout_s=0.3)
    assert llm is not None
    stub.script(Reply(text="slow", delay_s=1.5), Reply(text="fast"))

    assert llm.invoke("hi").text == "fast"
    assert len(stub.requests) == 2


def test_async_calls_retry_too(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply.error(429), Reply(text="async ok"))

    answer = asyncio.run(llm.ainvoke("hi"))

    assert answer.text == "async ok"
    assert len(stub.requests) == 2


# -- preflight -----------------------------------------------------------------------------------


def test_check_llm_passes_on_a_working_endpoint(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    check_llm(llm)
    (req,) = stub.requests
    body = req.json
    if llm_value == OPENAI:
        assert body["max_completion_tokens"] <= 16
    else:
        assert body["generationConfig"]["maxOutputTokens"] <= 16


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_key_is_not_retried_and_names_the_variable(
    stub: StubLLMServer, llm_value: str, status: int
) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply.error(status, "Incorrect API key provided"), Reply(text="never served"))

    with pytest.raises(LLMAuthError) as err:
        check_llm(llm)

    assert f"set {KEY_ENV[llm_value]}" in str(err.value)
    assert "--llm offline" in str(err.value)
    assert isinstance(err.value, InputError)
    assert err.value.__cause__ is not None
    assert len(stub.requests) == 1
    assert stub.pending == 1


def test_gemini_invalid_key_400_is_an_auth_error(stub: StubLLMServer) -> None:
    """The Gemini API answers a bad key with 400 INVALID_ARGUMENT, not 401."""
    llm = make_llm(GEMINI, base_url=stub.gemini_base_url)
    assert llm is not None
    stub.script(
        Reply(
            status=400,
            body={
                "error": {
                    "code": 400,
                    "message": "API key not valid. Please pass a valid API key.",
                    "status": "INVALID_ARGUMENT",
                    "details": [
                        {
                            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "API_KEY_INVALID",
                        }
                    ],
                }
            },
        )
    )
    with pytest.raises(LLMAuthError, match="GOOGLE_API_KEY"):
        check_llm(llm)
    assert len(stub.requests) == 1


def test_other_client_errors_are_unavailable_not_auth(stub: StubLLMServer, llm_value: str) -> None:
    llm = make_llm(llm_value, base_url=_url(stub, llm_value))
    assert llm is not None
    stub.script(Reply.error(404, "model not found"))
    with pytest.raises(LLMUnavailableError, match="model not found"):
        check_llm(llm)
    assert len(stub.requests) == 1


def test_unreachable_server_is_unavailable(llm_value: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}" + ("/v1" if llm_value == OPENAI else "")
    llm = make_llm(llm_value, base_url=base, max_retries=1)
    assert llm is not None
    with pytest.raises(LLMUnavailableError, match=llm_value):
        check_llm(llm)


def test_default_endpoints_are_never_reached_in_tests(llm_value: str) -> None:
    """A client built without base_url follows the isolated environment to the dead port."""
    assert "127.0.0.1:9" in describe_llm(llm_value)
    llm = make_llm(llm_value, max_retries=0)
    assert llm is not None
    with pytest.raises(LLMUnavailableError):
        check_llm(llm)
