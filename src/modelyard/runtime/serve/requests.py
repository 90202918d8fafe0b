"""Parsing and validating OpenAI completion / chat-completion bodies into one `GenerationRequest`.

Every field is honoured, accepted as a no-op because it cannot change our result (`user`,
`metadata`...; or a result-changing field sent at its neutral value, e.g. `logprobs: false`,
`presence_penalty: 0`), or refused with a 400 that names it. Nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .params import SamplingParams


class ApiError(Exception):
    """An OpenAI-shaped error: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type_: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type_

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


# Accepted and without effect on what we generate.
HARMLESS = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "prompt_cache_key",
            "safety_identifier"}
# Result-changing fields we do not implement: accepted only at their neutral value.
NEUTRAL = {"logprobs": (None, False, 0), "top_logprobs": (None, 0), "presence_penalty": (None, 0, 0.0),
           "frequency_penalty": (None, 0, 0.0), "logit_bias": (None, {}), "tools": (None, []),
           "tool_choice": (None, "none", "auto"), "functions": (None, []), "function_call": (None, "none", "auto"),
           "response_format": (None, {"type": "text"}), "echo": (None, False), "best_of": (None, 1),
           "suffix": (None, ""), "modalities": (None, ["text"]), "audio": (None,), "prediction": (None,),
           "reasoning_effort": (None,), "web_search_options": (None,)}
COMMON = {"model", "max_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed", "n", "stop",
          "stream", "stream_options"}
CHAT_ONLY = {"messages", "max_completion_tokens"}
COMPLETION_ONLY = {"prompt"}


@dataclass
class GenerationRequest:
    model: str
    prompt_ids: list[int]
    max_tokens: int | None
    params: SamplingParams
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False


def _number(body: dict, name: str, kind, lo: float, hi: float, default):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name,
                       code="invalid_type")
    if not lo <= value <= hi:
        raise ApiError(400, f"'{name}' must be between {lo} and {hi}, got {value}", param=name, code="invalid_value")
    return kind(value)


def _check_fields(body: dict, allowed: set[str]) -> None:
    for key, value in body.items():
        if key in allowed or key in HARMLESS:
            continue
        if key in NEUTRAL:
            if value in NEUTRAL[key] or (isinstance(value, dict) and value == {} and {} in NEUTRAL[key]):
                continue
            raise ApiError(400, f"'{key}' is not supported by this server (only its default value is accepted)",
                           param=key, code="unsupported_field")
        raise ApiError(400, f"unknown or unsupported field '{key}'", param=key, code="unsupported_field")


def parse_common(body: dict, *, chat: bool) -> tuple[SamplingParams, int | None, list[str], bool, bool]:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    _check_fields(body, COMMON | (CHAT_ONLY if chat else COMPLETION_ONLY))
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise ApiError(400, "'model' is required (a model name from /v1/models)", param="model", code="missing")
    n = _number(body, "n", int, -(2**31), 2**31, 1)
    if n != 1:
        raise ApiError(400, f"only n=1 is supported (got n={n}); send several requests instead", param="n",
                       code="unsupported_value")
    max_tokens = _number(body, "max_tokens", int, 1, 2**31, None)
    if chat and body.get("max_completion_tokens") is not None:
        max_tokens = _number(body, "max_completion_tokens", int, 1, 2**31, None)
    params = SamplingParams(
        temperature=_number(body, "temperature", float, 0.0, 2.0, 1.0),
        top_p=_number(body, "top_p", float, 0.0, 1.0, 1.0),
        top_k=_number(body, "top_k", int, -1, 2**31, 0),
        repetition_penalty=_number(body, "repetition_penalty", float, 0.01, 10.0, 1.0),
        seed=_number(body, "seed", int, -(2**63), 2**63 - 1, None),
    )
    if params.top_k < 0:  # vLLM's "-1 = off"
        params.top_k = 0
    if params.top_p == 0.0:
        raise ApiError(400, "'top_p' must be greater than 0", param="top_p", code="invalid_value")
    if params.seed is not None:
        params.seed %= 2**63  # torch.Generator takes a non-negative 64-bit seed
    stop = body.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        stops = list(stop)
    else:
        raise ApiError(400, "'stop' must be a string or a list of at most 4 strings", param="stop",
                       code="invalid_type")
    stops = [s for s in stops if s]
    stream = body.get("stream") or False
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be a boolean", param="stream", code="invalid_type")
    opts = body.get("stream_options")
    include_usage = False
    if opts is not None:
        if not isinstance(opts, dict) or set(opts) - {"include_usage", "continuous_usage_stats"}:
            raise ApiError(400, "'stream_options' supports only include_usage", param="stream_options",
                           code="unsupported_field")
        if not stream:
            raise ApiError(400, "'stream_options' is only allowed with stream: true", param="stream_options")
        if opts.get("continuous_usage_stats"):
            raise ApiError(400, "'stream_options.continuous_usage_stats' is not supported", param="stream_options",
                           code="unsupported_field")
        include_usage = bool(opts.get("include_usage"))
    return params, max_tokens, stops, stream, include_usage


def parse_completion(body: dict, tokenizer) -> GenerationRequest:
    params, max_tokens, stops, stream, usage = parse_common(body, chat=False)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    elif isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        if any(t < 0 or t >= len(tokenizer) for t in prompt):
            raise ApiError(400, "'prompt' holds a token id outside the vocabulary", param="prompt", code="invalid_value")
        ids = list(prompt)
    elif isinstance(prompt, list) and len(prompt) > 1:
        raise ApiError(400, "only one prompt per request is supported; send several requests instead",
                       param="prompt", code="unsupported_value")
    else:
        raise ApiError(400, "'prompt' must be a string or a list of token ids", param="prompt", code="invalid_type")
    if not ids:
        raise ApiError(400, "'prompt' is empty", param="prompt", code="invalid_value")
    return GenerationRequest(body["model"], ids, max_tokens, params, stops, stream, usage)


ROLES = {"system", "developer", "user", "assistant", "tool"}


def _message_text(content, i: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"messages[{i}].content: only text parts are supported", param="messages",
                               code="unsupported_value")
            parts.append(part["text"])
        return "".join(parts)
    raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts", param="messages",
                   code="invalid_type")


def parse_chat(body: dict, tokenizer) -> GenerationRequest:
    params, max_tokens, stops, stream, usage = parse_common(body, chat=True)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "'messages' must be a non-empty list", param="messages", code="invalid_type")
    clean = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ApiError(400, f"messages[{i}] needs a role among {sorted(ROLES)}", param="messages",
                           code="invalid_value")
        extra = set(m) - {"role", "content", "name"}
        if extra:
            raise ApiError(400, f"messages[{i}]: unsupported keys {sorted(extra)}", param="messages",
                           code="unsupported_field")
        role = "system" if m["role"] == "developer" else m["role"]
        clean.append({"role": role, "content": _message_text(m.get("content"), i)})
    if not getattr(tokenizer, "chat_template", None):
        raise ApiError(400, "this model has no chat template; use /v1/completions", param="messages",
                       code="no_chat_template")
    try:
        ids = tokenizer.apply_chat_template(clean, add_generation_prompt=True, tokenize=True, return_dict=False)
    except Exception as exc:  # a template may raise on a message order it does not accept
        raise ApiError(400, f"the chat template refused these messages: {exc}", param="messages") from exc
    if isinstance(ids, dict) or hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return GenerationRequest(body["model"], list(ids), max_tokens, params, stops, stream, usage)
