"""`translator serve`: an HTTP JSON translation service that batches concurrent requests.

    translator serve --run runs/demo            # or --export runs/demo/export
    serving demo on http://127.0.0.1:8000 (beam sizes 1, 5; default 5)

- ``POST /v1/translate`` ``{"sentences": ["...", ...], "beam_size": 5}`` (beam size optional)
  returns ``{"translations": [...], "scores": [...]}``;
- ``POST /v1/models/NAME:predict``, the TensorFlow Serving REST form: ``{"instances": ["...",
  ...]}`` (or ``{"instances": [{"sentences": "..."}]}``) returns ``{"predictions":
  [{"translations": "...", "scores": ...}, ...]}``; ``{"inputs": [...]}`` returns
  ``{"outputs": {"translations": [...], "scores": [...]}}``; ``"signature_name"`` picks a
  signature of the export (``translate``, ``translate_beam_K``);
- ``GET /health``: ``{"status": "ready", ...}`` with the requests and batches translated so far
  (the server listens only once the model is loaded and its search compiled).

Requests waiting at the same time are translated together: the batcher takes what is queued,
waits up to ``--max-wait-ms`` for more until ``--max-batch-sentences`` are collected, sorts
their sentences by length and runs them in ``--batches-in-flight`` parts at once, each through
the export's signature in a worker thread, as `Translator` does (on the demo model, 32 clients:
about 0.9 of offline throughput with sorted parts, 0.7 with one unsorted batch). The translations are the export's, so equal to
`Translator.translate` with the same settings (`translator.export`).

A bad request gets a 4xx with ``{"error": "..."}`` that says what was wrong: a body that is
not JSON, a missing or unknown field, sentences that are not strings, more than
``--max-sentences`` sentences or one longer than ``--max-characters``, a body over
``--max-body-bytes``, an unknown beam size. An error inside the model is a 500 with its
message; the server goes on.

Built on aiohttp (server and client in one maintained library, no hand-written HTTP).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import queue
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

DEFAULTS = {"host": "127.0.0.1", "port": 8000, "max_batch_sentences": 64, "max_wait_ms": 5.0,
            "batches_in_flight": 2, "max_sentences": 256, "max_characters": 2000,
            "max_body_bytes": 4 * 1024 * 1024}


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    from translator import checks

    positive, non_negative, milliseconds = checks.POSITIVE_INT, checks.NON_NEGATIVE_INT, checks.NON_NEGATIVE_NUMBER
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="run directory of a translation model (exported in memory at start)")
    source.add_argument("--export", help="directory written by `translator export`")
    parser.add_argument("--name", default=None, help="model name in /v1/models/NAME:predict (default: the "
                                                     "directory's name)")
    parser.add_argument("--host", default=DEFAULTS["host"], help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=non_negative, default=DEFAULTS["port"],
                        help="port (default 8000; 0: any free one)")
    parser.add_argument("--beam-sizes", type=positive, nargs="*", default=[1], metavar="K",
                        help="with --run: beam sizes requests may ask for besides the run's (default: 1)")
    parser.add_argument("--max-batch-sentences", type=positive, default=DEFAULTS["max_batch_sentences"],
                        help="sentences of waiting requests translated together (default 64)")
    parser.add_argument("--max-wait-ms", type=milliseconds, default=DEFAULTS["max_wait_ms"],
                        help="how long a batch waits for more requests before it runs (default 5)")
    parser.add_argument("--batches-in-flight", type=positive, default=DEFAULTS["batches_in_flight"],
                        help="batches translated at once, each in its own thread (default 2)")
    parser.add_argument("--max-sentences", type=positive, default=DEFAULTS["max_sentences"],
                        help="most sentences in one request (default 256)")
    parser.add_argument("--max-characters", type=positive, default=DEFAULTS["max_characters"],
                        help="most characters in one sentence (default 2000)")
    parser.add_argument("--max-body-bytes", type=positive, default=DEFAULTS["max_body_bytes"],
                        help="largest request body (default 4 MiB)")


class RequestError(ValueError):
    """A request the server will not translate; the message says why (a 4xx)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------- the model

class Backend:
    """The translation signatures of an export, by beam size: ``translate(sentences, beam_size)
    -> (texts, scores)``. From a directory (`from_export`) or built from a run in memory
    (`from_run`), the same functions either way."""

    def __init__(self, name: str, functions: dict, beam_size: int):
        self.name, self.functions, self.beam_size = name, functions, beam_size

    @classmethod
    def from_export(cls, directory, name: str | None = None) -> Backend:
        import tensorflow as tf
        import tensorflow_text  # noqa: F401  (the SentencePiece ops of the graph)

        from translator.runs import EXPORT_FILE

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
        return cls(name or directory.name, functions, beam_size)

    @classmethod
    def from_run(cls, run, beam_sizes=(1,), name: str | None = None) -> Backend:
        from translator.export import TranslationExport, exporter_of

        exporter = exporter_of(run, beam_sizes=beam_sizes)
        if not isinstance(exporter, TranslationExport):
            _check_kind(exporter.description(), run)
        return cls(name or Path(run).resolve().name, exporter.translate_functions(), exporter.beam_size)

    def translate(self, sentences: list[str], beam_size: int) -> tuple[list[str], list[float]]:
        import tensorflow as tf

        outputs = self.functions[beam_size](sentences=tf.constant(sentences, tf.string))
        texts = [text.decode("utf-8", errors="replace") for text in outputs["translations"].numpy().tolist()]
        return texts, [float(score) for score in outputs["scores"].numpy()]


def _check_kind(description: dict, where) -> None:
    if description["kind"] != "translation":
        raise ValueError(f"{where} holds a {description['kind'].replace('_', ' ')}: `translator serve` serves "
                         f"translation models (load the export's signatures with tf.saved_model.load instead)")


# ----------------------------------------------------------------------------- batching

@dataclass
class _Request:
    sentences: list[str]
    beam_size: int
    future: asyncio.Future


class Batcher:
    """Collects the sentences of concurrent requests into batches (see the module docstring)."""

    def __init__(self, backend: Backend, max_batch_sentences: int, max_wait_ms: float, batches_in_flight: int):
        self.backend = backend
        self.max_batch_sentences, self.max_wait = max_batch_sentences, max_wait_ms / 1000.0
        self.batches_in_flight = batches_in_flight
        self.pool = ThreadPoolExecutor(max_workers=batches_in_flight)
        self.slots = asyncio.Semaphore(batches_in_flight)
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task = None
        self.running = set()  # the parts being translated (asyncio keeps only weak references to tasks)
        self.requests = self.batches = 0  # served so far (GET /health reports them)

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def translate(self, sentences: list[str], beam_size: int):
        if not sentences:
            return [], []
        future = asyncio.get_running_loop().create_future()
        await self.queue.put(_Request(sentences, beam_size, future))
        return await future

    async def _collect(self) -> list[_Request]:
        """The queued requests, waiting up to max_wait for more while under max_batch_sentences."""
        loop = asyncio.get_running_loop()
        batch = [await self.queue.get()]
        count, deadline = len(batch[0].sentences), loop.time() + self.max_wait
        while count < self.max_batch_sentences:
            try:
                if self.queue.empty():
                    request = await asyncio.wait_for(self.queue.get(), max(deadline - loop.time(), 0))
                else:
                    request = self.queue.get_nowait()
            except (asyncio.TimeoutError, TimeoutError):
                break
            batch.append(request)
            count += len(request.sentences)
        return batch

    async def _run(self) -> None:
        while True:
            requests = await self._collect()
            for beam_size in sorted({request.beam_size for request in requests}):
                group = _Group([request for request in requests if request.beam_size == beam_size])
                self.requests += len(group.requests)
                # Sorted by length and cut into one part per batch in flight, as `Translator`
                # does: a part's search takes as many steps as its longest sentence needs.
                order = sorted(group.places(), key=lambda place: len(group.sentence(place)))
                size = -(-len(order) // self.batches_in_flight)  # rounded up
                for start in range(0, len(order), size):
                    await self.slots.acquire()  # at most batches_in_flight parts at once
                    self.batches += 1
                    task = asyncio.get_running_loop().create_task(
                        self._translate(group, order[start:start + size], beam_size))
                    self.running.add(task)
                    task.add_done_callback(self.running.discard)

    async def _translate(self, group: _Group, places: list, beam_size: int) -> None:
        try:
            sentences = [group.sentence(place) for place in places]
            try:
                texts, scores = await asyncio.get_running_loop().run_in_executor(
                    self.pool, self.backend.translate, sentences, beam_size)
            except Exception as error:  # the model failed: every request of the group hears why
                group.fail(error)
                return
            group.fill(places, texts, scores)
        finally:
            self.slots.release()


class _Group:
    """The requests of one batch (one beam size), whose sentences are translated in parts: a
    request is answered when all its sentences are."""

    def __init__(self, requests: list[_Request]):
        self.requests = requests
        self.texts = [[None] * len(request.sentences) for request in requests]
        self.scores = [[0.0] * len(request.sentences) for request in requests]
        self.missing = [len(request.sentences) for request in requests]

    def places(self) -> list[tuple[int, int]]:
        return [(row, column) for row, request in enumerate(self.requests) for column in range(len(request.sentences))]

    def sentence(self, place) -> str:
        return self.requests[place[0]].sentences[place[1]]

    def fill(self, places, texts, scores) -> None:
        for (row, column), text, score in zip(places, texts, scores):
            self.texts[row][column], self.scores[row][column] = text, score
            self.missing[row] -= 1
            future = self.requests[row].future
            if self.missing[row] == 0 and not future.done():  # a client that went away cancelled its future
                future.set_result((self.texts[row], self.scores[row]))

    def fail(self, error: Exception) -> None:
        for request in self.requests:
            if not request.future.done():
                request.future.set_exception(error)


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


# ----------------------------------------------------------------------------- the application

def make_application(backend: Backend, settings: dict):
    from aiohttp import web

    batcher = Batcher(backend, settings["max_batch_sentences"], settings["max_wait_ms"],
                      settings["batches_in_flight"])

    @web.middleware
    async def json_errors(request, handler):
        """Every error is a JSON ``{"error": ...}``, including aiohttp's own (404, 405, 413)."""
        try:
            return await handler(request)
        except RequestError as error:
            return web.json_response({"error": str(error)}, status=error.status)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return web.json_response({"error": error.text or error.reason}, status=error.status)
        except Exception as error:  # noqa: BLE001  (the server never dies on a request)
            print(f"translator serve: error: {type(error).__name__}: {error}", file=sys.stderr, flush=True)
            return web.json_response({"error": f"{type(error).__name__}: {error}"}, status=500)

    async def read_json(request):
        try:
            return json.loads(await request.read())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RequestError(f"the body is not JSON ({error}); send e.g. "
                               f'{{"sentences": ["Ein Hund läuft."]}}') from None

    async def translate(request):
        body = await read_json(request)
        _check_fields(body, {"sentences"}, {"beam_size"})
        sentences = sentences_of(body, "sentences", settings)
        texts, scores = await batcher.translate(sentences, beam_size_of(body.get("beam_size"), backend))
        return web.json_response({"translations": texts, "scores": scores})

    async def predict(request):
        if request.match_info["name"] != backend.name:
            raise RequestError(f"no model '{request.match_info['name']}'; this server has '{backend.name}'", 404)
        sentences, beam_size, rows = predict_request(await read_json(request), backend, settings)
        texts, scores = await batcher.translate(sentences, beam_size)
        if rows:
            return web.json_response({"predictions": [{"translations": text, "scores": score}
                                                      for text, score in zip(texts, scores)]})
        return web.json_response({"outputs": {"translations": texts, "scores": scores}})

    async def health(request):
        return web.json_response({"status": "ready", "model": backend.name,
                                  "beam_sizes": sorted(backend.functions), "beam_size": backend.beam_size,
                                  "requests": batcher.requests, "batches": batcher.batches})

    async def start_batcher(application):
        batcher.start()

    async def stop_batcher(application):
        await batcher.stop()

    application = web.Application(middlewares=[json_errors], client_max_size=settings["max_body_bytes"])
    application.add_routes([web.post("/v1/translate", translate),
                            web.post("/v1/models/{name:[^/:]+}:predict", predict),
                            web.get("/health", health)])
    application.on_startup.append(start_batcher)
    application.on_cleanup.append(stop_batcher)
    return application


def serve(args) -> None:
    """`translator serve`: load, compile (one translation per beam size), listen, print the address."""
    settings = {key: getattr(args, key) for key in DEFAULTS}  # checked by the option types
    backend = Backend.from_export(args.export, args.name) if args.export else \
        Backend.from_run(args.run, args.beam_sizes, args.name)
    for beam_size in backend.functions:  # compile every search before the first request
        backend.translate(["", "."], beam_size)
    asyncio.run(_listen(backend, settings))


async def _listen(backend: Backend, settings: dict) -> None:
    from aiohttp import web

    runner = web.AppRunner(make_application(backend, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, settings["host"], settings["port"])
    await site.start()
    host, port = runner.addresses[0][:2]
    print(f"serving {backend.name} on http://{host}:{port} (beam sizes "
          f"{', '.join(map(str, sorted(backend.functions)))}; default {backend.beam_size})", flush=True)
    stop = asyncio.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        print("translator serve: stopped", flush=True)


def launch(arguments: list[str], checks: int = 120):
    """`translator serve ARGUMENTS` in a new process (for the tests and `translator serve-bench`);
    returns (process, url) once it says where it listens, checked every 5 s at most `checks` times."""
    process = subprocess.Popen([sys.executable, "-m", "translator", "serve", *arguments], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    for _ in range(checks):
        try:
            found = re.search(r" on (http://[\d.]+:\d+)", lines.get(timeout=5))
        except queue.Empty:
            found = None
            if process.poll() is not None:
                break
        if found:
            return process, found.group(1)
    process.kill()
    raise RuntimeError(f"translator serve {' '.join(arguments)} did not start; run it to see why")
