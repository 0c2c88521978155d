#!/usr/bin/env python3
"""Opens a gallery page in headless Chromium and reports what a person would see, as JSON.

Driven by the Swift test GalleryBrowserTests. Talks to Chromium over the DevTools protocol on
--remote-debugging-pipe (file descriptors 3 and 4, NUL-separated JSON), so it needs neither a
network port nor a websocket library.

usage: check_gallery.py PAGE.html [SCREENSHOT.png]
prints {"loaded", "images": [{src, naturalWidth, complete}], "videos": [{src, readyState, error}],
        "duplicates": [{from, href, kind, visible, target}], "articles": [ids], "console_errors": [...], "title",
        "live": [{id, badge, hover: {playing, paused, currentTime, shown}, left: {...}, focus: {...}, blur: {...}}]}

Each Live Photo tile ([data-live]) is hovered with a real pointer move (Input.dispatchMouseEvent,
so the page sees mouseenter), left, focused from the keyboard's point of view (focus() on its
link) and blurred; after each step the motion video's state is recorded once it settles.
"""
import base64, json, os, subprocess, sys, tempfile, time

CHECK = r"""
(() => ({
  title: document.title,
  loaded: document.readyState === 'complete',
  images: [...document.images].map(i => ({src: i.getAttribute('src'), alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth})),
  videos: [...document.querySelectorAll('video')].map(v => ({src: v.currentSrc, readyState: v.readyState, error: v.error ? v.error.code : null})),
  duplicates: [...document.querySelectorAll('.duplicate a')].map(a => ({from: a.closest('article').id, href: a.getAttribute('href'),
    kind: a.closest('.duplicate').classList.contains('exact') ? 'exact' : 'similar',
    visible: a.getBoundingClientRect().width > 0, target: !!document.getElementById(a.getAttribute('href').slice(1))})),
  articles: [...document.querySelectorAll('article')].map(a => a.id),
}))()
"""

# The state of the motion video of Live Photo tile number N (document order).
LIVE_STATE = r"""
((n) => {
  const tile = document.querySelectorAll('[data-live]')[n], video = tile.querySelector('video.motion');
  return {id: tile.closest('article').id, playing: tile.classList.contains('playing'), paused: video.paused,
          currentTime: video.currentTime, shown: getComputedStyle(video).opacity, readyState: video.readyState,
          badge: (tile.querySelector('.live-badge') || {}).textContent || ''};
})(%d)
"""

# Scrolls tile N to the middle of the viewport and returns its centre.
LIVE_CENTRE = r"""
((n) => {
  const tile = document.querySelectorAll('[data-live]')[n];
  tile.scrollIntoView({block: 'center'});
  const r = tile.getBoundingClientRect();
  return {x: r.left + r.width / 2, y: r.top + r.height / 2};
})(%d)
"""

def main():
    page = os.path.abspath(sys.argv[1])
    shot = sys.argv[2] if len(sys.argv) > 2 else None
    browser = os.environ.get("CHROMIUM", "chromium")
    profile = tempfile.mkdtemp(prefix="medianest-chromium-")
    to_chrome_r, to_chrome_w = os.pipe()
    from_chrome_r, from_chrome_w = os.pipe()

    def wire():
        os.dup2(to_chrome_r, 3)
        os.dup2(from_chrome_w, 4)

    proc = subprocess.Popen(
        [browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
         "--allow-file-access-from-files", "--autoplay-policy=no-user-gesture-required", "--mute-audio",
         "--no-first-run", "--no-default-browser-check", "--disable-extensions", "--hide-scrollbars",
         "--user-data-dir=" + profile, "about:blank"],
        pass_fds=(3, 4, to_chrome_r, from_chrome_w), preexec_fn=wire,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_chrome_r)
    os.close(from_chrome_w)
    out = os.fdopen(to_chrome_w, "wb", buffering=0)
    inp = os.fdopen(from_chrome_r, "rb", buffering=0)
    buffer = b""
    events = []
    next_id = [0]

    def read_message(deadline):
        nonlocal buffer
        import select
        while b"\0" not in buffer:
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError("no answer from chromium")
            ready, _, _ = select.select([inp], [], [], left)
            if ready:
                chunk = inp.read(1 << 16)
                if not chunk:
                    raise EOFError("chromium closed the pipe")
                buffer += chunk
        message, buffer = buffer.split(b"\0", 1)
        return json.loads(message)

    def call(method, params=None, session=None, timeout=30):
        next_id[0] += 1
        message = {"id": next_id[0], "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        out.write(json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while True:
            reply = read_message(deadline)
            if reply.get("id") == next_id[0]:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            events.append(reply)

    def pump(seconds):
        deadline = time.time() + seconds
        try:
            while True:
                events.append(read_message(deadline))
        except TimeoutError:
            pass

    try:
        target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime.enable", "Log.enable", "Page.enable"):
            call(domain, session=session)
        call("Emulation.setDeviceMetricsOverride", {"width": 1180, "height": 860, "deviceScaleFactor": 1, "mobile": False}, session=session)
        call("Page.navigate", {"url": "file://" + page}, session=session)
        result = None
        deadline = time.time() + 40
        while time.time() < deadline:
            pump(0.5)
            value = call("Runtime.evaluate", {"expression": CHECK, "returnByValue": True}, session=session)["result"].get("value")
            if value and value["loaded"] and all(i["complete"] for i in value["images"]) and all(v["readyState"] >= 2 or v["error"] for v in value["videos"]):
                result = value
                break
            result = value
        pump(0.5)

        def evaluate(expression):
            return call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)["result"].get("value")

        def settle(n, wanted, seconds=15):
            """The tile's state once `wanted(state)` holds, or the last state seen."""
            deadline = time.time() + seconds
            state = evaluate(LIVE_STATE % n)
            while not wanted(state) and time.time() < deadline:
                pump(0.2)
                state = evaluate(LIVE_STATE % n)
            return state

        def moving(state):
            return state["playing"] and not state["paused"] and state["currentTime"] > 0.3

        def resting(state):
            return not state["playing"] and state["paused"] and state["currentTime"] == 0

        live = []
        for n in range(evaluate("document.querySelectorAll('[data-live]').length") or 0):
            centre = evaluate(LIVE_CENTRE % n)
            pump(0.3)
            before = evaluate(LIVE_STATE % n)
            call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": centre["x"], "y": centre["y"]}, session=session)
            hover = settle(n, moving)
            # (1, 1) is in the page's left margin, outside every card.
            call("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": 1, "y": 1}, session=session)
            left = settle(n, resting)
            evaluate("document.querySelectorAll('[data-live]')[%d].querySelector('a').focus()" % n)
            focus = settle(n, moving)
            evaluate("document.activeElement.blur()")
            blur = settle(n, resting)
            live.append({"id": before["id"], "badge": before["badge"], "before": before, "hover": hover, "left": left, "focus": focus, "blur": blur})
        errors = []
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Runtime.exceptionThrown":
                errors.append(params.get("exceptionDetails", {}).get("text", "exception"))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('source')}: {entry.get('text')} {entry.get('url', '')}".strip())
        result = result or {"loaded": False, "images": [], "videos": []}
        result["console_errors"] = errors
        result["live"] = live
        if shot:
            png = call("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png))
        print(json.dumps(result))
    finally:
        try:
            call("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        subprocess.run(["rm", "-rf", profile])

if __name__ == "__main__":
    main()
