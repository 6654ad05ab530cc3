"""`translator serve`: the HTTP service, its request batching and its answers to bad requests (localhost only)."""

import asyncio
import json
import random
import signal
import subprocess
import sys
import warnings

import pytest
from test_export import exported_reversal_run

LIMITS = {"max_sentences": 40, "max_characters": 600, "max_body_bytes": 100_000}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`translator serve --export` of a weak reversal run, on a free port; yields (url, run, sentences)."""
    from translator.service.serving import launch

    run, exported, sentences = exported_reversal_run(tmp_path_factory.mktemp("serving"), 21, "reverser")
    process, url = launch(["--export", str(exported), "--port", "0", "--max-wait-ms", "3"]
                          + [f"--{key.replace('_', '-')}={value}" for key, value in LIMITS.items()])
    try:
        yield url, run, sentences, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


async def _post(session, url, body):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(url, data=data) as response:
        return response.status, await response.json(content_type=None)


def _run(coroutine_function, *args):
    """Run an aiohttp client coroutine with a session bounded by a total timeout."""
    import aiohttp

    async def main():
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
            return await coroutine_function(session, *args)

    return asyncio.run(main())


def test_concurrent_clients_get_the_offline_translations_of_their_sentences(server):
    from translator import Translator

    url, run, sentences, _ = server
    generator = random.Random(5)
    clients = [[generator.sample(sentences, generator.randint(1, 8)) for _ in range(25)] for _ in range(16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the over-long edge case
        offline = dict(zip(sentences, Translator.load(run).translate(sentences)))

    async def client(session, requests):
        return [await _post(session, f"{url}/v1/translate", {"sentences": request}) for request in requests]

    async def all_clients(session):
        return await asyncio.gather(*(client(session, requests) for requests in clients))

    async def health(session):
        async with session.get(f"{url}/health") as response:
            return await response.json()

    before = _run(health)
    answers = _run(all_clients)
    after = _run(health)
    assert after["requests"] - before["requests"] == 16 * 25
    assert after["batches"] - before["batches"] < 16 * 25  # requests waiting together were batched together
    for requests, responses in zip(clients, answers):
        assert len(responses) == 25
        for request, (status, body) in zip(requests, responses):
            assert status == 200, body
            assert body["translations"] == [offline[sentence] for sentence in request]
            assert len(body["scores"]) == len(request)


def test_the_tensorflow_serving_rest_form_and_beam_size_and_health(server):
    from translator import Translator

    url, run, sentences, _ = server
    translator = Translator.load(run)
    some = sentences[:6]

    async def requests(session):
        async with session.get(f"{url}/health") as response:
            health = response.status, await response.json()
        return (health,
                await _post(session, f"{url}/v1/models/reverser:predict", {"instances": some}),
                await _post(session, f"{url}/v1/models/reverser:predict",
                            {"instances": [{"sentences": sentence} for sentence in some]}),
                await _post(session, f"{url}/v1/models/reverser:predict",
                            {"inputs": {"sentences": some}, "signature_name": "translate_beam_1"}),
                await _post(session, f"{url}/v1/translate", {"sentences": some, "beam_size": 1}))

    health, rows, named_rows, columns, greedy = _run(requests)
    assert health[0] == 200
    assert {key: health[1][key] for key in ("status", "model", "beam_sizes", "beam_size")} == \
        {"status": "ready", "model": "reverser", "beam_sizes": [1, 5], "beam_size": 5}
    expected = translator.translate(some)
    assert rows[0] == named_rows[0] == 200
    assert [row["translations"] for row in rows[1]["predictions"]] == expected
    assert named_rows[1] == rows[1]
    assert columns[1]["outputs"]["translations"] == greedy[1]["translations"] == translator.translate(some, beam_size=1)


BAD_REQUESTS = [  # body, status, words the error must contain
    (b"not json", 400, "not JSON"),
    (b"\xff\xfe", 400, "not JSON"),
    ([1, 2], 400, "JSON object"),
    ({"sentence": ["a"]}, 400, "missing field 'sentences'"),
    ({"sentences": ["a"], "beam": 2}, 400, "unknown field 'beam'"),
    ({"sentences": "a b c"}, 400, "list of strings"),
    ({"sentences": ["a", 3]}, 400, "'sentences'[1] must be a string"),
    ({"sentences": [None]}, 400, "'sentences'[0] must be a string"),
    ({"sentences": ["a"] * 41}, 400, "more than the limit of 40"),
    ({"sentences": ["a " * 301]}, 400, "more than the limit of 600"),
    ({"sentences": ["a"], "beam_size": 3}, 400, "must be one of [1, 5]"),
    ({"sentences": ["a"], "beam_size": True}, 400, "must be one of [1, 5]"),
    ({"sentences": ["a " * 299] * 1700}, 413, "body size"),  # 1 MB
    ({"sentences": ["a"] * 10_000}, 400, "'sentences' has 10000 sentences, more than the limit of 40"),
    ({"sentences": ["a"], "n_best": 6}, 400, "'n_best' must be an integer from 1 to the beam size (5)"),
    ({"sentences": ["a"], "n_best": "2"}, 400, "'n_best' must be an integer"),
    ({"sentences": ["a"], "beam_size": 1, "n_best": 2}, 400, "'n_best' must be an integer from 1 to the beam size (1)"),
    ({"sentences": ["a"], "details": "yes"}, 400, "'details' must be true or false"),
    ({"sentences": ["a"], "attention": 1}, 400, "'attention' must be true or false"),
    ({"sentences": ["a"] * 33, "attention": True}, 400, "'attention' is given for at most 32 sentences"),
]


def test_bad_requests_get_a_4xx_with_a_json_error_and_the_server_goes_on(server):
    url, _, _, process = server

    async def requests(session):
        answers = [await _post(session, f"{url}/v1/translate", body) for body, _, _ in BAD_REQUESTS]
        answers.append(await _post(session, f"{url}/v1/models/other:predict", {"instances": ["a"]}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict", {"instances": ["a"], "inputs": []}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict",
                                   {"instances": ["a"], "signature_name": "classify"}))
        answers.append(await _post(session, f"{url}/v1/models/reverser:predict", {"instances": [{"text": "a"}]}))
        answers.append(await _post(session, f"{url}/nowhere", {}))
        answers.append(await _post(session, f"{url}/v1/translate", {"sentences": ["a b"]}))
        answers.append(await _post(session, f"{url}/v1/translate", {"sentences": []}))
        return answers

    answers = _run(requests)
    for (body, status, words), (got_status, got) in zip(BAD_REQUESTS, answers):
        assert got_status == status and words in got["error"], (body, got_status, got)
    other, both, signature, row, nowhere, fine, empty = answers[len(BAD_REQUESTS):]
    assert other[0] == 404 and "no model 'other'" in other[1]["error"]
    assert both[0] == 400 and "either 'instances'" in both[1]["error"]
    assert signature[0] == 400 and "'signature_name' must be one of" in signature[1]["error"]
    assert row[0] == 400 and "'instances'[0] must be a string" in row[1]["error"]
    assert nowhere[0] == 404 and "error" in nowhere[1]
    assert fine[0] == 200 and len(fine[1]["translations"]) == 1
    assert empty == (200, {"translations": [], "scores": []})
    assert process.poll() is None


def test_a_backend_built_from_the_run_translates_as_the_export(server):
    from translator.service.serving import Backend

    url, run, sentences, _ = server
    backend = Backend.from_run(run)
    assert backend.name == "weak" and sorted(backend.functions) == [1, 5]
    texts = [hypotheses[0][0] for hypotheses in backend.translate(sentences[:20], 5)]

    async def request(session):
        return await _post(session, f"{url}/v1/translate", {"sentences": sentences[:20]})

    assert _run(request)[1]["translations"] == texts


def test_serve_refuses_bad_settings_and_non_translation_exports(tmp_path):
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path), "--port", "0"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "export.json not found" in result.stderr
    (tmp_path / "export.json").write_text(json.dumps({"kind": "classifier"}))
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "holds a classifier" in result.stderr
    result = subprocess.run([sys.executable, "-m", "translator", "serve", "--export", str(tmp_path),
                             "--max-batch-sentences", "0"], capture_output=True, text=True)
    assert result.returncode == 2 and "--max-batch-sentences" in result.stderr and "positive integer" in result.stderr


def test_serve_bench_reports_every_client_count_and_no_difference_from_offline(server, tmp_path):
    from translator.studies.serve_bench import run

    _, trained_run, _, _ = server
    results = run(trained_run, "test", clients=(1, 4), sentences_per_request=5, output_dir=tmp_path,
                  log=lambda *a: None, passes=2)
    assert [row["clients"] for row in results["server"]] == [1, 4]
    assert all(row["different_from_offline"] == 0 and row["requests"] == 60 for row in results["server"])
    assert results["beam_size"] == 5 and len(results["offline"]["before_and_after"]) == 2
    assert results.pop("files") == [str(tmp_path / "serve.json"), str(tmp_path / "serve.md")]
    assert json.loads((tmp_path / "serve.json").read_text()) == results
    assert "| 4 |" in (tmp_path / "serve.md").read_text()


def test_n_best_lists_details_and_attention_are_those_of_translate_detailed(server):
    import numpy as np

    from translator import Translator

    url, run, sentences, _ = server
    some = sentences[:8] + ["", "a b c zz qq"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        details = Translator.load(run).translate_detailed(some, n_best=3, attention=True)

    async def request(session):
        return await _post(session, f"{url}/v1/translate",
                           {"sentences": some, "n_best": 3, "details": True, "attention": True})

    status, body = _run(request)
    assert status == 200, body
    assert body["translations"] == [detail.text for detail in details]
    assert body["scores"] == pytest.approx([detail.score for detail in details], abs=1e-5)
    assert [[(entry["translation"], entry["score"]) for entry in listed] for listed in body["n_best"]] == \
        [[(text, pytest.approx(score, abs=1e-5)) for text, score in detail.n_best] for detail in details]
    assert body["unknown_shares"] == pytest.approx([detail.unknown_share for detail in details], abs=1e-4)
    assert body["unknown_shares"][-1] > 0 and body["truncated"] == [detail.truncated for detail in details]
    for detail, attention in zip(details, body["attention"]):
        if not detail.text:
            assert attention["weights"] == [] or detail.attention is None
            continue
        assert attention["source_pieces"] == detail.source_pieces
        assert attention["target_pieces"] == detail.pieces + ["</s>"]
        # Teacher-forced on the translation's pieces: the weights the search computed.
        np.testing.assert_allclose(np.array(attention["weights"]), detail.attention, atol=1e-3)


def _memory_of(process) -> int:
    """Resident memory of a process in bytes (Linux /proc)."""
    for line in open(f"/proc/{process.pid}/status", encoding="utf-8"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def small_queue_server(server):
    """A second server of the same export whose queue holds 4 requests, one batch of at most
    8 sentences at a time (so that a burst overflows it)."""
    from translator.service.serving import launch

    _, run, sentences, _ = server
    exported = run.parent / "reverser"
    process, url = launch(["--export", str(exported), "--port", "0", "--max-queue", "4", "--batches-in-flight", "1",
                           "--max-batch-sentences", "8", "--name", "reverser"])
    try:
        yield url, run, sentences, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def test_a_burst_of_four_queues_worth_gets_only_200s_and_503s_and_no_wrong_answer(small_queue_server):
    from translator import Translator

    url, run, sentences, process = small_queue_server
    generator = random.Random(7)
    requests = [generator.sample(sentences[:150], 8) for _ in range(16)]  # 4 x the queue, all at once
    offline = dict(zip(sentences[:150], Translator.load(run).translate(sentences[:150])))

    async def one(session, request):
        async with session.post(f"{url}/v1/translate", json={"sentences": request}) as response:
            return response.status, response.headers.get("Retry-After"), await response.json()

    async def burst(session):
        return await asyncio.gather(*(one(session, request) for request in requests))

    memory_before = _memory_of(process)
    rounds = [_run(burst) for _ in range(5)]
    memory_growth = _memory_of(process) - memory_before
    statuses = [status for answers in rounds for status, _, _ in answers]
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) >= 5 * 4
    for answers in rounds:
        for request, (status, retry_after, body) in zip(requests, answers):
            if status == 200:
                assert body["translations"] == [offline[sentence] for sentence in request]
            else:
                assert retry_after == "1" and "--max-queue" in body["error"]
    assert memory_growth < 200 * 1024 * 1024, memory_growth

    async def metrics(session):
        async with session.get(f"{url}/metrics") as response:
            return response.status, response.headers["Content-Type"], await response.text()

    status, content_type, text = _run(metrics)
    assert status == 200 and content_type.startswith("text/plain")
    assert f'translator_requests_total{{endpoint="/v1/translate",status="503"}} {statuses.count(503)}.0' in text
    assert f'translator_requests_total{{endpoint="/v1/translate",status="200"}} {statuses.count(200)}.0' in text
    assert "translator_queue_requests 0.0" in text and "process_resident_memory_bytes" in text
    # Every batch held at most --max-batch-sentences sentences.
    assert 'translator_batch_sentences_bucket{le="8.0"}' in text
    batches = [line for line in text.splitlines() if line.startswith("translator_batch_sentences_")]
    count = float(next(line for line in batches if line.startswith("translator_batch_sentences_count")).split()[1])
    assert f'translator_batch_sentences_bucket{{le="8.0"}} {count}' in text


def test_slow_and_vanishing_clients_hold_no_batch(small_queue_server):
    import socket

    url, run, sentences, process = small_queue_server
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"sentences": sentences[:4]}).encode()
    head = (f"POST /v1/translate HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    slow = socket.create_connection((host, int(port)), timeout=30)
    slow.sendall(head + body[:10])  # ... and the rest never comes while we wait
    for _ in range(3):  # clients that send a whole request and go away at once
        vanishing = socket.create_connection((host, int(port)), timeout=30)
        vanishing.sendall(head + body)
        vanishing.close()

    async def request(session):
        return await _post(session, f"{url}/v1/translate", {"sentences": sentences[4:12]})

    status, answer = _run(request)
    assert status == 200 and len(answer["translations"]) == 8
    slow.sendall(body[10:])  # the slow client finishes: it is answered too
    reply = slow.recv(65536).decode()
    slow.close()
    assert reply.startswith("HTTP/1.1 200")
    assert process.poll() is None


def _read_line(process, timeout=120):
    import queue
    import threading

    lines = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    return lines.get(timeout=timeout)


def test_health_and_ready_differ_while_loading_and_sigterm_answers_every_request_taken(server):
    import re
    import time

    import aiohttp

    from translator import Translator

    _, run, sentences, _ = server
    exported = run.parent / "reverser"
    # Batches wait 3 s for more sentences than will come: the requests are still queued at SIGTERM.
    process = subprocess.Popen([sys.executable, "-m", "translator", "serve", "--export", str(exported), "--port", "0",
                                "--max-wait-ms", "3000", "--max-batch-sentences", "1000"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = _read_line(process)
        url = re.search(r"\((http://[\d.]+:\d+)/health answers now", first).group(1)

        async def loading(session):
            answers = []
            for path in ("/health", "/ready"):
                async with session.get(url + path) as response:
                    answers.append((response.status, await response.json()))
            async with session.post(f"{url}/v1/translate", json={"sentences": ["a b"]}) as response:
                answers.append((response.status, response.headers.get("Retry-After"), await response.json()))
            return answers

        health, ready, early = _run(loading)
        assert health == (200, {"status": "loading", "model": "reverser"})
        assert ready == (503, {"status": "loading"})
        assert early[:2] == (503, "5") and "still loading" in early[2]["error"]
        assert _read_line(process).startswith("serving reverser on ")

        requests = [sentences[index:index + 5] for index in range(0, 60, 5)]
        offline = Translator.load(run).translate(sentences[:60])

        async def load_then_sigterm(session):
            async def one(request):
                async with session.post(f"{url}/v1/translate", json={"sentences": request}) as response:
                    return response.status, await response.json()

            tasks = [asyncio.ensure_future(one(request)) for request in requests]
            for _ in range(200):  # until the server holds every request
                async with aiohttp.ClientSession() as probe, probe.get(f"{url}/metrics") as response:
                    text = await response.text()
                if f"translator_requests_in_progress {len(requests)}.0" in text:
                    break
                await asyncio.sleep(0.02)
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            answers = await asyncio.gather(*tasks)
            refused = None
            try:
                async with aiohttp.ClientSession() as late, late.get(f"{url}/health") as response:
                    refused = response.status
            except aiohttp.ClientConnectionError as error:
                refused = type(error).__name__
            return answers, refused, time.monotonic() - started

        answers, refused, _ = _run(load_then_sigterm)
        assert [status for status, _ in answers] == [200] * len(requests)
        assert [text for _, body in answers for text in body["translations"]] == offline
        assert process.wait(timeout=60) == 0
        assert refused != 200  # no new connection once it stopped accepting
        assert process.stdout.read().strip().endswith("translator serve: stopped")
    finally:
        if process.poll() is None:
            process.kill()


def test_an_n_best_list_of_one_is_the_translation_and_its_score(server):
    url, _, _, _ = server

    async def request(session):
        return await _post(session, f"{url}/v1/translate", {"sentences": ["a b"], "beam_size": 1, "n_best": 1})

    status, body = _run(request)
    assert status == 200 and body["n_best"] == [[{"translation": body["translations"][0], "score": body["scores"][0]}]]


def test_the_playground_translates_a_typed_sentence_as_translator_and_shows_the_heat_map(server, tmp_path):
    """GET / in headless Chromium, as a person would use it: type, translate, open the heat map."""
    from browser import chromium_or_skip, drive_playground

    from translator import Translator

    url, run, sentences, _ = server
    chromium = chromium_or_skip()
    sentence = sentences[0]
    seen = asyncio.run(drive_playground(chromium, url + "/", sentence, tmp_path / "playground.png",
                                        tmp_path / "profile"))
    detail = Translator.load(run).translate_detailed(sentence, attention=True)
    assert seen["translation"] == detail.text
    assert seen["warning"] is False  # every piece of the sentence is known
    assert seen["rows"] == len(detail.pieces) + 1 and seen["cells"] == detail.attention.size
    assert seen["errors"] == []
    png = (tmp_path / "playground.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
