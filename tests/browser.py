"""Headless Chromium for the test of the playground page of `translator serve` (tests/test_serving.py).

Chromium is Debian's `chromium` package: installed by `chromium_or_skip` when missing (root with
apt-get, as CI runs); the test is skipped, with the reason printed, only when it cannot be had.
The browser is driven over the Chrome DevTools Protocol with aiohttp's websocket client; every
address is on 127.0.0.1.
"""

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
import time

import pytest


def chromium_or_skip() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    why = None
    if not shutil.which("apt-get"):
        why = "no chromium and no apt-get to install it"
    elif os.geteuid() != 0:
        why = "no chromium, and installing Debian's package needs root (apt-get install chromium)"
    else:
        for command in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"],
                        ["apt-get", "update", "-q"],
                        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]):
            result = subprocess.run(command, capture_output=True, text=True, timeout=900)
            if command[1] == "install" and result.returncode == 0:
                break
        if shutil.which("chromium"):
            return shutil.which("chromium")
        why = f"apt-get install chromium failed: {(result.stderr or result.stdout)[-300:]}"
    print(f"skipping the playground test: {why}", file=sys.stderr)
    pytest.skip(why)


class DevTools:
    """One page of a headless Chromium, over its DevTools websocket."""

    def __init__(self, session, websocket):
        self.session, self.websocket, self.next_id, self.errors = session, websocket, 0, []

    async def call(self, method: str, **params):
        self.next_id += 1
        await self.websocket.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self.websocket.receive(), 60)).data)
            if message.get("method") == "Runtime.exceptionThrown":
                self.errors.append(message["params"]["exceptionDetails"].get("text"))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        text = await self.evaluate("document.body.innerText.slice(0, 500)")
        raise TimeoutError(f"{expression} not true within {timeout} s; the page says: {text}")


async def drive_playground(chromium: str, url: str, sentence: str, screenshot, profile) -> dict:
    import aiohttp

    browser = subprocess.Popen([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                                "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                f"--user-data-dir={profile}", "--window-size=1100,1000", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.is_file() and port_file.read_text().strip():
                break
            await asyncio.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                page = next(target for target in await response.json() if target["type"] == "page")
            async with session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0) as websocket:
                tools = DevTools(session, websocket)
                await tools.call("Runtime.enable")
                await tools.call("Page.enable")
                await tools.call("Page.navigate", url=url)
                await tools.wait_for("document.body && document.body.dataset.ready === 'true'")
                await tools.evaluate("document.getElementById('sentences').focus()")
                await tools.call("Input.insertText", text=sentence)  # typed, as from a keyboard
                await tools.evaluate("document.getElementById('translate').click()")
                translation = await tools.wait_for(
                    "document.querySelector('#results .translation')?.textContent")
                warning = await tools.evaluate("!!document.querySelector('#results .unknown-warning')")
                await tools.evaluate("document.querySelector('#results .show-attention').click()")
                cells = await tools.wait_for("document.querySelectorAll('#heatmap td').length")
                rows = await tools.evaluate("document.querySelectorAll('#heatmap tbody tr').length")
                shot = await tools.call("Page.captureScreenshot", format="png")
                screenshot.write_bytes(base64.b64decode(shot["data"]))
                return {"translation": translation, "warning": warning, "cells": cells, "rows": rows,
                        "errors": tools.errors}
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=10)
        except subprocess.TimeoutExpired:
            browser.kill()
