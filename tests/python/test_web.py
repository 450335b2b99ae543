"""The web page of the HTTP gateway in a real browser: headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by Selenium; `make
test-py` installs them) uploads files through the page (file picker and drag
and drop), reads the key it shows, opens the key through the page and checks
the bytes, plays and seeks a video (recorded in the browser) through the
gateway's byte ranges, on a phone-sized window whose counters update live.
A screenshot is saved to build/test-artifacts/web-page.png. A page of another
site (attacker.example, which the browser resolves to 127.0.0.1, as after DNS
rebinding) can neither read the gateway nor upload to it."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

import cas
from conftest import wait_until

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
except ImportError:  # pragma: no cover (depends on the machine)
    webdriver = None  # type: ignore[assignment]

pytestmark = pytest.mark.skipif(
    webdriver is None or CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Selenium (pip) and Debian's chromium and chromium-driver; `make test-py` installs them as root "
    f"(found: selenium={webdriver is not None}, chromium={CHROMIUM}, chromedriver={CHROMEDRIVER})",
)


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=390,844",
        # A name of another site that resolves to this machine, as a rebound one does.
        "--host-resolver-rules=MAP attacker.example 127.0.0.1",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


def text_of(driver: Any, element_id: str) -> str:
    """The element's text, "" while the page has no such element."""
    found = driver.find_elements(By.ID, element_id)
    return found[0].text if found else ""


def counter(driver: Any, name: str) -> str:
    return driver.execute_script(
        "const d = document.querySelector(`[data-counter='${arguments[0]}']`); return d ? d.textContent : '';", name
    )


def sha256_in_page(driver: Any, href: str) -> str:
    """The SHA-256 of what the page's origin serves at `href`, computed in the browser."""
    return driver.execute_async_script(
        """const [href, done] = arguments;
        fetch(href).then((r) => r.arrayBuffer()).then((b) => crypto.subtle.digest("SHA-256", b))
          .then((h) => done(Array.from(new Uint8Array(h)).map((x) => x.toString(16).padStart(2, "0")).join("")))
          .catch((e) => done("failed: " + e));""",
        href,
    )


def partial_responses(address: str) -> int:
    """The gateway's count of 206 answers (from /metrics)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith("cas_http_partial_responses_total "):
                return int(line.split()[1])
    raise AssertionError("no cas_http_partial_responses_total in /metrics")


# Records 3 s of a changing canvas as WebM and drops it on the page's drop
# zone as film.webm; answers the video's size.
RECORD_AND_DROP_A_VIDEO = """
const done = arguments[arguments.length - 1];
const canvas = document.createElement("canvas");
canvas.width = 160; canvas.height = 120;
const ctx = canvas.getContext("2d");
const recorder = new MediaRecorder(canvas.captureStream(25), {mimeType: "video/webm"});
const pieces = [];
recorder.ondataavailable = (e) => pieces.push(e.data);
recorder.onstop = () => {
  const blob = new Blob(pieces, {type: "video/webm"});
  const dt = new DataTransfer();
  dt.items.add(new File([blob], "film.webm", {type: "video/webm"}));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));
  done(blob.size);
};
let frame = 0;
const timer = setInterval(() => {
  ctx.fillStyle = `hsl(${(frame * 17) % 360}, 80%, 50%)`;
  ctx.fillRect(0, 0, 160, 120);
  ctx.fillStyle = "#000";
  ctx.fillText(String(frame++), 10, 60);
}, 40);
recorder.start(200);
setTimeout(() => { clearInterval(timer); recorder.stop(); }, 3000);
"""

# Waits for the opened video's metadata, learns its duration (a recorded
# WebM does not say it: seeking far past the end makes the player find it),
# then seeks to the middle; answers "seeked at T" or what went wrong.
SEEK_THE_VIDEO = """
const done = arguments[arguments.length - 1];
const video = document.getElementById("opened-view");
video.muted = true;
const fail = (why) => done(why + " (readyState " + video.readyState + ", error " + (video.error && video.error.message) + ")");
video.onerror = () => fail("error");
const seekMiddle = () => {
  video.onseeked = () => done("seeked at " + video.currentTime);
  video.currentTime = Math.min(1.5, video.duration / 2);
};
const whenDurationKnown = () => {
  if (Number.isFinite(video.duration)) return seekMiddle();
  video.ondurationchange = () => { if (Number.isFinite(video.duration)) { video.ondurationchange = null; seekMiddle(); } };
  video.currentTime = 1e6;
};
if (video.readyState >= 1) whenDurationKnown(); else video.onloadedmetadata = whenDurationKnown;
setTimeout(() => fail("no seek within 40 s"), 40000);
"""


def test_upload_open_and_live_counters_in_a_browser(browser: Any, tmp_path: Path) -> None:
    node = cas.Node(tmp_path / "node", fsync=False)
    try:
        address = node.serve_http()
        browser.get(f"http://{address}/")
        wait_until(lambda: text_of(browser, "node-id") == node.id[:16], timeout=30, what="the page to show the node")
        wait_until(lambda: counter(browser, "stored").startswith("stored0 blobs"), timeout=30, what="the counters")

        # Upload through the file picker: the page shows the key when done.
        data = os.urandom(3 * 1024 * 1024 + 11)
        picked = tmp_path / "picked file.bin"
        picked.write_bytes(data)
        browser.find_element(By.ID, "picker").send_keys(str(picked))
        key = wait_until(
            lambda: text_of(browser, "uploaded-key"),
            timeout=60,
            what="the page to show the uploaded key",
        )
        assert node.get_bytes(key) == data
        assert [(f.key, f.name) for f in node.files()] == [(key, "picked file.bin")]
        assert browser.find_element(By.ID, "upload-progress").get_attribute("value") == "1"

        # The counters follow the node without a reload.
        wait_until(
            lambda: counter(browser, "stored").startswith(f"stored{node.stats().blobs_stored} blobs"),
            timeout=30,
            what="the stored counter to update live",
        )
        # The files table links the upload by its name.
        wait_until(lambda: "picked file.bin" in text_of(browser, "files"), timeout=30, what="the files list")

        # Drag and drop: a file dropped on the drop zone is uploaded too.
        browser.execute_script(
            """const dt = new DataTransfer();
            dt.items.add(new File(["dropped through the page\\n"], "dropped.txt", {type: "text/plain"}));
            document.getElementById("drop").dispatchEvent(new DragEvent("drop", {dataTransfer: dt, bubbles: true}));"""
        )
        dropped = wait_until(
            lambda: (lambda k: k if k and k != key else None)(text_of(browser, "uploaded-key")),
            timeout=60,
            what="the dropped file's key",
        )
        assert node.get_bytes(dropped) == b"dropped through the page\n"

        # Paste a key to open it: the link the page makes serves the same bytes.
        box = browser.find_element(By.ID, "open-key")
        box.clear()
        box.send_keys(key)
        browser.find_element(By.ID, "open-name").send_keys("picked file.bin")
        browser.find_element(By.ID, "open").click()
        link = wait_until(
            lambda: browser.find_elements(By.ID, "opened-link") and browser.find_element(By.ID, "opened-link"),
            timeout=30,
            what="the opened key's link",
        )
        href = link.get_attribute("href")
        assert sha256_in_page(browser, href) == hashlib.sha256(data).hexdigest()
        # A byte range from the browser (what a video element asks for when it seeks).
        status, content_range, part = browser.execute_async_script(
            """const [href, done] = arguments;
            fetch(href, {headers: {Range: "bytes=1000000-1000099"}})
              .then(async (r) => done([r.status, r.headers.get("Content-Range"),
                                       Array.from(new Uint8Array(await r.arrayBuffer()))]))
              .catch((e) => done([0, String(e), []]));""",
            href,
        )
        assert (status, content_range) == (206, f"bytes 1000000-1000099/{len(data)}")
        assert bytes(part) == data[1000000:1000100]

        # A bad key is refused in words, not with a broken page.
        box.clear()
        box.send_keys("cas1-not-a-key")
        browser.find_element(By.ID, "open").click()
        wait_until(lambda: "not a valid key" in text_of(browser, "open-result"), timeout=30, what="the refusal")

        # A video recorded in the browser (MediaRecorder, WebM) and dropped on
        # the page plays from the gateway and seeks: its element asks for
        # byte ranges, which the gateway answers 206.
        size = browser.execute_async_script(RECORD_AND_DROP_A_VIDEO)
        assert isinstance(size, int) and size > 0, size
        film = wait_until(
            lambda: (lambda k: k if k and k not in (key, dropped) else None)(text_of(browser, "uploaded-key")),
            timeout=60,
            what="the recorded video's key",
        )
        assert len(node.get_bytes(film)) == size
        ranges_before = partial_responses(address)
        box.clear()
        box.send_keys(film)
        name = browser.find_element(By.ID, "open-name")
        name.clear()
        name.send_keys("film.webm")
        browser.find_element(By.ID, "open").click()
        wait_until(lambda: browser.find_elements(By.ID, "opened-view"), timeout=30, what="the video element")
        seeked = browser.execute_async_script(SEEK_THE_VIDEO)
        assert seeked.startswith("seeked"), seeked
        assert partial_responses(address) > ranges_before, "the video element asked for byte ranges"

        # Phone-sized: nothing wider than the window.
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        artifacts = ROOT / "build" / "test-artifacts"
        artifacts.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(artifacts / "web-page.png"))
    finally:
        node.close()


def test_a_page_of_another_site_can_neither_read_nor_upload(browser: Any, tmp_path: Path) -> None:
    node = cas.Node(tmp_path / "node", fsync=False)
    try:
        address = node.serve_http()
        port = address.rsplit(":", 1)[1]
        key = node.put_bytes(b"private", name="private.txt")
        blobs = node.stats().blobs_stored
        # DNS rebinding: the attacker's page, at attacker.example on the
        # gateway's port, now reaches the gateway; its own-origin reads are refused.
        browser.get(f"http://attacker.example:{port}/")
        assert "attacker.example" in browser.page_source and "--http-host" in browser.page_source
        status, body = browser.execute_async_script(
            """const done = arguments[0];
            fetch("/api/files").then(async (r) => done([r.status, await r.text()]))
              .catch((e) => done([0, String(e)]));"""
        )
        assert status == 403 and key not in body, (status, body)

        # A cross-origin read of the real address is blocked by the browser (no CORS header).
        read = browser.execute_async_script(
            """const [url, done] = arguments;
            fetch(url).then(async (r) => done("read: " + await r.text())).catch((e) => done("blocked: " + e));""",
            f"http://{address}/api/files",
        )
        assert read.startswith("blocked"), read

        # A cross-site upload (a simple request: no preflight) is refused:
        # the browser sends it, the gateway stores nothing.
        sent = browser.execute_async_script(
            """const [url, done] = arguments;
            fetch(url, {method: "POST", mode: "no-cors", body: "planted"})
              .then((r) => done("answered " + r.type)).catch((e) => done("failed: " + e));""",
            f"http://{address}/cas?name=planted",
        )
        assert sent == "answered opaque", sent
        assert [f.key for f in node.files()] == [key]
        assert node.stats().blobs_stored == blobs

        # The gateway's own page, at localhost, still reads and uploads.
        browser.get(f"http://localhost:{port}/")
        wait_until(lambda: "private.txt" in text_of(browser, "files"), timeout=30, what="the files list")
        status = browser.execute_async_script(
            """const done = arguments[0];
            fetch("/cas?name=mine", {method: "POST", body: "mine"})
              .then((r) => done(r.status)).catch((e) => done(String(e)));"""
        )
        assert status == 200
        assert len(node.files()) == 2
    finally:
        node.close()
