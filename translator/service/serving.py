"""`translator serve`: an HTTP JSON translation service that batches concurrent requests.

    translator serve --run runs/demo            # or --export runs/demo/export
    serving demo on http://127.0.0.1:8000 (beam sizes 1, 5; default 5)

- ``GET /``: the playground, a page to type sentences into and see their translations, n-best
  lists, unknown-piece warnings and attention (files of ``translator/playground/``);
- ``POST /v1/translate`` ``{"sentences": ["...", ...]}`` returns ``{"translations": [...],
  "scores": [...]}``; optional fields: ``"beam_size": K``, ``"n_best": N`` (adds ``"n_best"``,
  per sentence a list of ``{"translation", "score"}``, best first), ``"details": true`` (adds
  ``"unknown_shares"``, the share of each sentence's characters the source tokenizer does not
  know, and ``"truncated"``), ``"attention": true`` (adds ``"attention"``, per sentence its
  ``source_pieces``, ``target_pieces`` (ending with ``</s>``) and ``weights`` [target][source]),
  ``"scores": false`` (no ``"scores"``: greedy search then skips their softmax normalizer over
  the vocabulary at every step, with ``--run`` about 30% of its time);
- ``POST /v1/models/NAME:predict``, the TensorFlow Serving REST form: ``{"instances": ["...",
  ...]}`` (or ``{"instances": [{"sentences": "..."}]}``) returns ``{"predictions":
  [{"translations": "...", "scores": ...}, ...]}``; ``{"inputs": [...]}`` returns
  ``{"outputs": {"translations": [...], "scores": [...]}}``; ``"signature_name"`` picks a
  signature of the export (``translate``, ``translate_beam_K``);
- ``GET /health``: 200 while the process lives, ``{"status": "loading" | "ready" | "draining",
  ...}`` (with the model's beam sizes and the requests and batches translated so far once
  ready); ``GET /ready``: 200 only while requests are taken (503 while loading and draining);
- ``GET /metrics``: Prometheus text (prometheus_client): requests by endpoint and status, their
  latency, the sentences of each batch, the queue's depth, requests in progress, the process's
  memory and CPU.

The server listens at once and loads the model (and compiles its searches) in the background;
translation requests wait for nothing then: they get 503 with ``Retry-After`` until ``/ready``.
Requests waiting at the same time are translated together (`translator.service.dynamic_batching`); the
translations are the export's, so equal to `Translator.translate` with the same settings
(`translator.service.export`).

Under load and faults: more than ``--max-queue`` requests waiting gets a 503 with
``Retry-After``; a request not answered within ``--request-timeout`` seconds gets a 503 and its
sentences leave the queue; a client that goes away has its request dropped from the queue; a
slow client only holds its own connection (bodies are read before a request joins the queue).
SIGTERM (or Ctrl-C) stops accepting connections, answers the requests already taken (for at
most ``--drain-seconds``), then exits 0.

A bad request gets a 4xx with ``{"error": "..."}`` that says what was wrong: a body that is
not JSON, a missing or unknown field, a field of the wrong type, more than
``--max-sentences`` sentences or one longer than ``--max-characters``, a body over
``--max-body-bytes`` (413), an unknown beam size. An error inside the model is a 500 with its
message; the server goes on.

Built on aiohttp (server and client in one maintained library, no hand-written HTTP).
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

DEFAULTS = {"host": "127.0.0.1", "port": 8000, "max_batch_sentences": 128, "max_wait_ms": 5.0,
            "batches_in_flight": 2, "max_queue": 256, "request_timeout": 60.0, "drain_seconds": 30.0,
            "max_sentences": 256, "max_characters": 2000, "max_body_bytes": 4 * 1024 * 1024}
MAX_ATTENTION_SENTENCES = 32  # attention weights are a matrix a sentence: a request asks for few
RETRY_AFTER_SECONDS = 1  # what a 503 under load tells the client (a batch takes well under a second)


class RequestError(ValueError):
    """A request the server will not translate; the message says why (a 4xx, or a 503 with
    Retry-After when the server is busy)."""

    def __init__(self, message: str, status: int = 400, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.retry_after = status, retry_after


# ----------------------------------------------------------------------------- the model

class Backend:
    """The translation functions of an export, by beam size: ``translate(sentences, beam_size,
    n_best) -> [[(text, score), ...] per sentence]`` (best first; one hypothesis unless
    ``n_best`` and the beam size is in ``n_best_functions``), ``attention(sentences,
    translations)`` and ``details(sentences)``. From a directory (`from_export`) or built from a run in
    memory (`from_run`), the same functions either way."""

    def __init__(self, name: str, functions: dict, beam_size: int, n_best_functions: dict,
                 attention_function=None, source_tokenizer=None, max_source_length: int = 0,
                 unscored_functions: dict | None = None):
        self.name, self.functions, self.beam_size = name, functions, beam_size
        self.unscored_functions = unscored_functions or {}  # beam size -> a search without scores
        self.n_best_functions, self.attention_function = n_best_functions, attention_function
        self.source_tokenizer, self.max_source_length = source_tokenizer, max_source_length

    @classmethod
    def from_export(cls, directory, name: str | None = None) -> Backend:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the SentencePiece ops of the graph)

        from translator.data.tokenizers import load_tokenizers
        from translator.models.runs import EXPORT_FILE

        directory = Path(directory)
        if not (directory / EXPORT_FILE).is_file():
            raise FileNotFoundError(f"{directory / EXPORT_FILE} not found: write the export with "
                                    f"`translator export --run RUN --out {directory}`")
        description = json.loads((directory / EXPORT_FILE).read_text(encoding="utf-8"))
        _check_kind(description, directory)
        loaded = tf.saved_model.load(str(directory))
        beam_size = description["beam_size"]
        functions = {size: loaded.signatures["translate" if size == beam_size else f"translate_beam_{size}"]
                     for size in description["beam_sizes"]}
        backend = cls(name or directory.name, functions, beam_size,
                      {beam_size: loaded.signatures["translate_n_best"]}, loaded.signatures.get("attention"),
                      load_tokenizers(directory / "tokenizers")["source"], description["max_source_length"])
        backend.loaded = loaded  # the functions need the object that holds their constants
        return backend

    @classmethod
    def from_run(cls, run, beam_sizes=(1,), name: str | None = None, shortlist: bool | None = None) -> Backend:
        from translator.service.export import TranslationExport, exporter_of

        exporter = exporter_of(run, beam_sizes=beam_sizes, shortlist=shortlist)
        if not isinstance(exporter, TranslationExport):
            _check_kind(exporter.description(), run)
        # The n-best search of every beam size also gives the best translation (its first column).
        n_best = {size: exporter.n_best_function(size) for size in (exporter.beam_size, *exporter.beam_sizes)}
        unscored = {1: exporter.n_best_function(1, scores=False)} if 1 in n_best else {}
        return cls(name or Path(run).resolve().name, n_best, exporter.beam_size, n_best,
                   exporter.attention_function(), exporter.source_tokenizer, exporter.max_source_length, unscored)

    def translate(self, sentences: list[str], beam_size: int, n_best: bool = False,
                  scores: bool = True) -> list[list[tuple]]:
        import tensorflow as tf

        from translator.service.export import UNFINISHED_SCORE

        function = self.n_best_functions[beam_size] if n_best else \
            self.functions[beam_size] if scores else self.unscored_functions.get(beam_size, self.functions[beam_size])
        outputs = function(sentences=tf.constant(sentences, tf.string))
        texts, scores = outputs["translations"].numpy(), outputs["scores"].numpy()
        if texts.ndim == 1:
            texts, scores = texts[:, None], scores[:, None]
        width = texts.shape[1] if n_best else 1
        # The best first; the others as `Translator.translate_detailed` lists them (finished ones).
        return [[(text.decode("utf-8", errors="replace"), float(score))
                 for column, (text, score) in enumerate(zip(row_texts[:width], row_scores[:width]))
                 if column == 0 or score > UNFINISHED_SCORE / 10]
                for row_texts, row_scores in zip(texts, scores)]

    def attention(self, sentences: list[str], translations: list[str]) -> list[dict]:
        """Per sentence its source pieces, target pieces (with ``</s>``) and the weights
        [target][source] (the export's ``attention`` signature, `translator.service.export`)."""
        import tensorflow as tf

        outputs = self.attention_function(sentences=tf.constant(sentences, tf.string),
                                          translations=tf.constant(translations, tf.string))
        weights = outputs["weights"].numpy()
        results = []
        for row, (source_length, target_length) in enumerate(zip(outputs["source_lengths"].numpy(),
                                                                 outputs["target_lengths"].numpy())):
            if source_length == 0:  # an empty sentence: nothing was attended to
                results.append({"source_pieces": [], "target_pieces": [], "weights": []})
                continue
            pieces = [[piece.decode("utf-8", errors="replace") for piece in outputs[key].numpy()[row, :length]]
                      for key, length in (("source_pieces", source_length), ("target_pieces", target_length))]
            rows = weights[row, :target_length + 1, :source_length]
            results.append({"source_pieces": pieces[0], "target_pieces": pieces[1] + ["</s>"],
                            "weights": [[round(float(value), 4) for value in line] for line in rows]})
        return results

    def details(self, sentences: list[str]) -> dict:
        """``unknown_shares`` (of each sentence's characters, in pieces the source tokenizer does
        not know) and ``truncated`` (longer than the model's max_source_length pieces)."""
        encoded = self.source_tokenizer.encode(sentences)
        return {"unknown_shares": [round(float(share), 4)
                                   for share in self.source_tokenizer.unknown_shares(sentences, encoded)],
                "truncated": [len(ids) > self.max_source_length for ids in encoded]}

    def description(self) -> dict:
        return {"model": self.name, "beam_sizes": sorted(self.functions), "beam_size": self.beam_size,
                "n_best_beam_sizes": sorted(self.n_best_functions), "attention": self.attention_function is not None}


def _check_kind(description: dict, where) -> None:
    if description["kind"] != "translation":
        raise ValueError(f"{where} holds a {description['kind'].replace('_', ' ')}: `translator serve` serves "
                         f"translation models (load the export's signatures with tf.saved_model.load instead)")


# ----------------------------------------------------------------------------- requests

def sentences_of(body, field: str, settings: dict) -> list[str]:
    """The list of strings in ``body[field]``, checked against the limits."""
    sentences = body[field]
    if not isinstance(sentences, list):
        raise RequestError(f"'{field}' must be a list of strings; got {type(sentences).__name__}")
    if len(sentences) > settings["max_sentences"]:
        raise RequestError(f"'{field}' has {len(sentences)} sentences, more than the limit of "
                           f"{settings['max_sentences']}: split the request")
    for index, sentence in enumerate(sentences):
        if not isinstance(sentence, str):
            raise RequestError(f"'{field}'[{index}] must be a string; got {json.dumps(sentence)[:50]}")
        if len(sentence) > settings["max_characters"]:
            raise RequestError(f"'{field}'[{index}] has {len(sentence)} characters, more than the limit of "
                               f"{settings['max_characters']}: split the sentence")
    return sentences


def _check_fields(body, required: set, optional: set) -> None:
    if not isinstance(body, dict):
        raise RequestError(f"the body must be a JSON object with {' and '.join(sorted(required))}; "
                           f"got a JSON {type(body).__name__}")
    missing = [field for field in sorted(required) if field not in body]
    unknown = sorted(set(body) - required - optional)
    if missing:
        instead = f" (the body has {unknown})" if unknown else ""
        raise RequestError(f"missing field '{missing[0]}'{instead}")
    if unknown:
        raise RequestError(f"unknown field '{unknown[0]}'; allowed: {sorted(required | optional)}")


def beam_size_of(value, backend: Backend) -> int:
    if value is None:
        return backend.beam_size
    if isinstance(value, bool) or not isinstance(value, int) or value not in backend.functions:
        raise RequestError(f"'beam_size' must be one of {sorted(backend.functions)} (the beam sizes of this "
                           f"export); got {json.dumps(value)[:50]}")
    return value


def predict_request(body, backend: Backend, settings: dict):
    """The TensorFlow Serving REST body: (sentences, beam size, row format?)."""
    _check_fields(body, set(), {"instances", "inputs", "signature_name"})
    if ("instances" in body) == ("inputs" in body):
        raise RequestError("give either 'instances' (row format) or 'inputs' (columnar format)")
    signature = body.get("signature_name", "serving_default")
    names = {"serving_default": backend.beam_size, "translate": backend.beam_size,
             **{f"translate_beam_{size}": size for size in backend.functions}}
    if signature not in names:
        raise RequestError(f"'signature_name' must be one of {sorted(names)}; got {json.dumps(signature)[:50]}")
    field = "instances" if "instances" in body else "inputs"
    values = body[field]
    if isinstance(values, dict):  # {"inputs": {"sentences": [...]}}
        _check_fields(values, {"sentences"}, set())
        values = values["sentences"]
    if isinstance(values, list):  # rows may be {"sentences": "..."}
        values = [value["sentences"] if isinstance(value, dict) and set(value) == {"sentences"} else value
                  for value in values]
    return sentences_of({field: values}, field, settings), names[signature], field == "instances"


def translate_request(body, backend: Backend, settings: dict) -> dict:
    """The fields of a ``/v1/translate`` body, checked: sentences, beam_size, n_best (None:
    not asked), details, attention."""
    _check_fields(body, {"sentences"}, {"beam_size", "n_best", "details", "attention", "scores"})
    request = {"sentences": sentences_of(body, "sentences", settings),
               "beam_size": beam_size_of(body.get("beam_size"), backend), "n_best": body.get("n_best")}
    for flag, default in (("details", False), ("attention", False), ("scores", True)):
        value = body.get(flag, default)
        if not isinstance(value, bool):
            raise RequestError(f"'{flag}' must be true or false; got {json.dumps(value)[:50]}")
        request[flag] = value
    n_best, beam_size = request["n_best"], request["beam_size"]
    if n_best is not None:
        if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_size:
            raise RequestError(f"'n_best' must be an integer from 1 to the beam size ({beam_size}); "
                               f"got {json.dumps(n_best)[:50]}")
        if n_best > 1 and beam_size not in backend.n_best_functions:
            raise RequestError(f"'n_best' over 1 needs a beam size in {sorted(backend.n_best_functions)} with this "
                               f"export (its translate_n_best signature); serve the run (`translator serve --run "
                               f"RUN`) for n-best lists of every beam size")
    if request["attention"]:
        if backend.attention_function is None:
            raise RequestError("'attention': this model has no attention (or its export was made before "
                               "the attention signature: export it again)")
        if len(request["sentences"]) > MAX_ATTENTION_SENTENCES:
            raise RequestError(f"'attention' is given for at most {MAX_ATTENTION_SENTENCES} sentences a request; "
                               f"got {len(request['sentences'])}: split the request")
    return request


# ----------------------------------------------------------------------------- the application

class Metrics:
    """The Prometheus metrics of one server, in a registry of its own (GET /metrics)."""

    def __init__(self, queued, in_progress):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes, process_cpu_seconds_total
        self.requests = Counter("translator_requests", "HTTP requests answered, by endpoint and status",
                                ["endpoint", "status"], registry=self.registry)
        self.latency = Histogram("translator_request_seconds", "time to answer a translation request",
                                 ["endpoint"], registry=self.registry,
                                 buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.batch_sentences = Histogram("translator_batch_sentences", "sentences in each batch translated",
                                         registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
        Gauge("translator_queue_requests", "requests waiting for a batch",
              registry=self.registry).set_function(queued)
        Gauge("translator_requests_in_progress", "translation requests taken and not yet answered",
              registry=self.registry).set_function(in_progress)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class Service:
    """What the handlers share: the state ("loading", "ready", "draining"), the backend once
    loaded, the batcher and the metrics."""

    def __init__(self, settings: dict, name: str):
        from translator.service.dynamic_batching import Batcher

        self.settings, self.name = settings, name
        self.state, self.backend, self.in_progress = "loading", None, 0
        self.metrics = Metrics(lambda: self.batcher.queued(), lambda: self.in_progress)
        self.batcher = Batcher(self._translate_part, settings["max_batch_sentences"], settings["max_wait_ms"],
                               settings["batches_in_flight"], settings["max_queue"],
                               self.metrics.batch_sentences.observe)

    def _translate_part(self, sentences, beam_size, n_best, scores):
        return self.backend.translate(sentences, beam_size, n_best, scores)

    def ready(self, backend: Backend) -> None:
        self.backend, self.state = backend, "ready"

    def check_ready(self) -> Backend:
        if self.state == "loading":
            raise RequestError("the model is still loading; GET /ready answers 200 once it is", 503, 5)
        if self.state == "draining":
            raise RequestError("the server is shutting down; send the request to another one", 503,
                               RETRY_AFTER_SECONDS)
        return self.backend

    async def translate(self, sentences, beam_size, n_best=False, scores=True):
        from translator.service.dynamic_batching import Overloaded

        try:
            return await asyncio.wait_for(self.batcher.translate(sentences, beam_size, n_best, scores),
                                          self.settings["request_timeout"] or None)
        except Overloaded as error:
            raise RequestError(str(error), 503, RETRY_AFTER_SECONDS) from None
        except (asyncio.TimeoutError, TimeoutError):
            raise RequestError(f"not translated within {self.settings['request_timeout']:g} s (--request-timeout): "
                               f"the server is busy; retry later", 503, RETRY_AFTER_SECONDS) from None


PLAYGROUND = Path(__file__).with_name("playground")
TRANSLATION_ENDPOINTS = ("/v1/translate", "/v1/models/{name}:predict")


def _json_errors(service):
    """The middleware that makes every error a JSON ``{"error": ...}``, aiohttp's own included
    (404, 405, 413), and counts every answer in the service's metrics."""
    from aiohttp import web

    @web.middleware
    async def json_errors(request, handler):
        resource = request.match_info.route.resource
        endpoint = resource.canonical if resource is not None else "unknown"
        timed = endpoint in TRANSLATION_ENDPOINTS
        started = time.perf_counter()
        if timed:
            service.in_progress += 1
        try:
            response = await _answer(request, handler)
        finally:
            if timed:
                service.in_progress -= 1
        service.metrics.requests.labels(endpoint, str(response.status)).inc()
        if timed:
            service.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)
        return response

    return json_errors


async def _answer(request, handler):
    from aiohttp import web

    try:
        return await handler(request)
    except RequestError as error:
        headers = {} if error.retry_after is None else {"Retry-After": str(error.retry_after)}
        return web.json_response({"error": str(error)}, status=error.status, headers=headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return web.json_response({"error": error.text or error.reason}, status=error.status)
    except Exception as error:  # noqa: BLE001  (the server never dies on a request)
        print(f"translator serve: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
        return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=500)


async def _read_json(request):
    try:
        return json.loads(await request.read())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(f"the body is not JSON ({error}); send e.g. "
                           f'{{"sentences": ["Ein Hund läuft."]}}') from None


def make_application(settings: dict, name: str):
    """The aiohttp application; ``application["service"]`` is its `Service`, whose `ready`
    makes it translate."""
    from aiohttp import web

    service = Service(settings, name)

    async def translate(request):
        body = await _read_json(request)
        backend = service.check_ready()
        asked = translate_request(body, backend, service.settings)
        sentences, n_best = asked["sentences"], asked["n_best"]
        hypotheses = await service.translate(sentences, asked["beam_size"], bool(n_best and n_best > 1),
                                             asked["scores"] or bool(n_best))
        answer = {"translations": [best[0][0] for best in hypotheses]}
        if asked["scores"]:
            answer["scores"] = [best[0][1] for best in hypotheses]
        if n_best is not None:
            answer["n_best"] = [[{"translation": text, "score": score} for text, score in listed[:n_best]]
                                for listed in hypotheses]
        if asked["details"]:
            answer.update(backend.details(sentences) if sentences else {"unknown_shares": [], "truncated": []})
        if asked["attention"]:
            answer["attention"] = await asyncio.get_running_loop().run_in_executor(
                service.batcher.pool, backend.attention, sentences, answer["translations"]) if sentences else []
        return web.json_response(answer)

    async def predict(request):
        backend = service.check_ready()
        if request.match_info["name"] != backend.name:
            raise RequestError(f"no model '{request.match_info['name']}'; this server has '{backend.name}'", 404)
        sentences, beam_size, rows = predict_request(await _read_json(request), backend, service.settings)
        hypotheses = await service.translate(sentences, beam_size)
        texts, scores = [best[0][0] for best in hypotheses], [best[0][1] for best in hypotheses]
        if rows:
            return web.json_response({"predictions": [{"translations": text, "scores": score}
                                                      for text, score in zip(texts, scores)]})
        return web.json_response({"outputs": {"translations": texts, "scores": scores}})

    async def health(request):
        answer = {"status": service.state, "model": service.name}
        if service.backend is not None:
            answer.update(service.backend.description(), requests=service.batcher.requests,
                          batches=service.batcher.batches)
        return web.json_response(answer)

    async def ready(request):
        return web.json_response({"status": service.state}, status=200 if service.state == "ready" else 503)

    async def metrics(request):
        text, content_type = service.metrics.text()
        return web.Response(body=text, headers={"Content-Type": content_type})

    async def playground(request):
        return web.FileResponse(PLAYGROUND / "index.html")

    async def start_batcher(application):
        service.batcher.start()

    async def stop_batcher(application):
        await service.batcher.stop()

    application = web.Application(middlewares=[_json_errors(service)], client_max_size=settings["max_body_bytes"])
    application.add_routes([web.get("/", playground), web.static("/playground", PLAYGROUND),
                            web.post("/v1/translate", translate),
                            web.post("/v1/models/{name:[^/:]+}:predict", predict),
                            web.get("/health", health), web.get("/ready", ready), web.get("/metrics", metrics)])
    application.on_startup.append(start_batcher)
    application.on_cleanup.append(stop_batcher)
    application["service"] = service
    return application


def serve(args) -> None:
    """`translator serve`: listen, load and compile (one translation per beam size) in the
    background, print the address once ready, stop on SIGTERM or Ctrl-C after draining."""
    settings = {key: getattr(args, key) for key in DEFAULTS}  # checked by the option types
    source = args.export or args.run
    name = args.name or (Path(source).name if args.export else Path(source).resolve().name)

    def load() -> Backend:
        backend = Backend.from_export(args.export, args.name) if args.export else \
            Backend.from_run(args.run, args.beam_sizes, args.name, getattr(args, "shortlist", None))
        for beam_size in backend.functions:  # compile every search before the first request
            backend.translate(["", "."], beam_size)
        for beam_size in backend.unscored_functions:
            backend.translate(["", "."], beam_size, scores=False)
        return backend

    asyncio.run(_listen(settings, name, source, load))


def _in_a_thread(function) -> asyncio.Future:
    """`function()` in a daemon thread (one that does not keep a stopped server alive)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def settle(method, value):
        if not future.done():  # a stop cancelled it
            method(value)

    def run():
        try:
            result = function()
        except BaseException as error:  # noqa: BLE001  (handed to the loop, raised there)
            loop.call_soon_threadsafe(settle, future.set_exception, error)
        else:
            loop.call_soon_threadsafe(settle, future.set_result, result)

    threading.Thread(target=run, daemon=True, name="translator-serve-load").start()
    return future


async def _listen(settings: dict, name: str, source: str, load) -> None:
    from aiohttp import web

    application = make_application(settings, name)
    service = application["service"]
    # handler_cancellation: a client that goes away cancels its handler, so its request leaves
    # the queue; shutdown_timeout: how long cleanup waits for the requests in flight.
    runner = web.AppRunner(application, access_log=None, handler_cancellation=True,
                           shutdown_timeout=settings["drain_seconds"])
    await runner.setup()
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
    try:
        site = web.TCPSite(runner, settings["host"], settings["port"])
        await site.start()
        host, port = runner.addresses[0][:2]
        print(f"translator serve: loading {source} (http://{host}:{port}/health answers now, /ready once "
              f"loaded)", flush=True)
        loading, stopping = _in_a_thread(load), asyncio.ensure_future(stop.wait())
        await asyncio.wait([loading, stopping], return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            service.ready(loading.result())  # a model that failed to load raises here
            print(f"serving {service.name} on http://{host}:{port} (beam sizes "
                  f"{', '.join(map(str, sorted(service.backend.functions)))}; default {service.backend.beam_size})",
                  flush=True)
            await stopping
        else:
            loading.cancel()
    finally:
        service.state = "draining"
        await runner.cleanup()  # stops accepting, answers what was taken (--drain-seconds at most)
        print("translator serve: stopped", flush=True)


def launch(arguments: list[str], checks: int = 120):
    """`translator serve ARGUMENTS` in a new process (for the tests and `translator serve-bench`);
    returns (process, url) once it says it serves, checked every 5 s at most `checks` times."""
    process = subprocess.Popen([sys.executable, "-m", "translator", "serve", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    for _ in range(checks):
        try:
            found = re.match(r"serving .* on (http://[\d.]+:\d+)", lines.get(timeout=5))
        except queue.Empty:
            found = None
            if process.poll() is not None:
                break
        if found:
            return process, found.group(1)
    process.kill()
    raise RuntimeError(f"translator serve {' '.join(arguments)} did not start; run it to see why")
